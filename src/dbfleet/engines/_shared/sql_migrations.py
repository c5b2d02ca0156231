"""What the SQL engines' migrations share: the history table, statement
splitting with sqlglot, and running a :class:`~dbfleet.migrate.model.Step`
in transaction groups with statement-level progress.

An engine subclasses :class:`SqlMigrations` and supplies an autocommit
DB-API connection (``_open``), its error classes, the table's DDL, and a
lease. Transactions are explicit ``BEGIN``/``COMMIT``/``ROLLBACK`` on that
connection, so the same code drives psycopg, sqlite3 and PyMySQL.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlglot
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import TokenType

from dbfleet.config import DatabaseConfig
from dbfleet.errors import ConfigError, UsageError, one_line
from dbfleet.migrate.model import HISTORY_TABLE, Applied, Step, StepFailed

COLUMNS = (
    "version", "name", "checksum", "applied_at", "duration_seconds", "applied_by",
    "statements_done", "status", "statement_checksums", "error",
)  # fmt: skip


def split_sql(text: str, dialect: str) -> list[str]:
    """Statements of ``text`` as written (not regenerated), split at the
    semicolons sqlglot's tokenizer sees outside strings and comments; pieces
    that hold only comments are dropped."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(text)
    except TokenError as exc:
        raise ConfigError(f"cannot split the SQL into statements: {one_line(str(exc))}") from None
    pieces, begin, seen = [], 0, False
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            if seen:
                pieces.append(text[begin : token.start].strip())
            begin, seen = token.end + 1, False
        else:
            seen = True
    if seen:
        pieces.append(text[begin:].strip())
    return pieces


def first_words(statement: str, dialect: str, count: int = 2) -> list[str]:
    """The first ``count`` keywords/identifiers of a statement, upper case."""
    tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(statement)
    return [t.text.upper() for t in tokens[:count]]


class SqlMigrations:
    """Base of the SQL engines' :class:`dbfleet.engines.base.Migrations`."""

    transactional_ddl: ClassVar[bool] = True
    dialect: ClassVar[str] = ""
    param: ClassVar[str] = "%s"

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self._connection: Any = None

    # -- hooks -------------------------------------------------------------

    def _open(self) -> Any:
        """A new autocommit DB-API connection to the location."""
        raise NotImplementedError

    def _errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def _table_exists(self) -> bool:
        raise NotImplementedError

    def _create_table(self) -> str:
        raise NotImplementedError

    def _time_value(self, when: datetime) -> Any:
        return when

    def _time_text(self, value: Any) -> str:
        if isinstance(value, datetime):
            when = value if value.tzinfo else value.replace(tzinfo=UTC)
            return when.astimezone(UTC).isoformat(timespec="seconds")
        return str(value)

    # -- connection --------------------------------------------------------

    @property
    def connection(self) -> Any:
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, args) if args else cursor.execute(sql)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            cursor.close()

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    # -- statements --------------------------------------------------------

    def split(self, text: str) -> list[str]:
        return split_sql(text, self.dialect)

    def non_transactional(self, statement: str) -> bool:
        return not self.transactional_ddl or first_words(statement, self.dialect, 1) == ["VACUUM"]

    def leftovers(self) -> list[str]:
        return []

    # -- history -------------------------------------------------------------

    def history(self) -> list[Applied]:
        if not self._table_exists():
            return []
        rows = self._run(f"SELECT {', '.join(COLUMNS)} FROM {HISTORY_TABLE} ORDER BY version")
        return [self._applied(row) for row in rows]

    def _applied(self, row: tuple[Any, ...]) -> Applied:
        values = dict(zip(COLUMNS, row, strict=True))
        return Applied(
            version=int(values["version"]),
            name=str(values["name"]),
            checksum=str(values["checksum"]),
            applied_at=self._time_text(values["applied_at"]),
            duration_seconds=float(values["duration_seconds"] or 0),
            applied_by=str(values["applied_by"] or ""),
            statements_done=int(values["statements_done"]),
            status=str(values["status"]),
            statement_checksums=json.loads(values["statement_checksums"] or "[]"),
            error=values["error"],
        )

    def _ensure_table(self) -> None:
        if not self._table_exists():
            self._run(self._create_table())

    def _write(self, row: Applied) -> None:
        """Replace the row of ``row.version`` (inside the caller's transaction)."""
        p = self.param
        self._run(f"DELETE FROM {HISTORY_TABLE} WHERE version = {p}", (row.version,))
        self._run(
            f"INSERT INTO {HISTORY_TABLE} ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join([p] * len(COLUMNS))})",
            (
                row.version, row.name, row.checksum,
                self._time_value(datetime.fromisoformat(row.applied_at)),
                row.duration_seconds, row.applied_by, row.statements_done, row.status,
                json.dumps(row.statement_checksums), row.error,
            ),
        )  # fmt: skip

    def record(self, row: Applied) -> None:
        self._ensure_table()
        self._in_transaction(lambda: self._write(row))

    def forget(self, version: int) -> None:
        if self._table_exists():
            self._in_transaction(
                lambda: self._run(
                    f"DELETE FROM {HISTORY_TABLE} WHERE version = {self.param}", (version,)
                )
            )

    def _in_transaction(self, action: Any) -> None:
        self._run("BEGIN")
        try:
            action()
        except BaseException:
            self._run("ROLLBACK")
            raise
        self._run("COMMIT")

    # -- applying ------------------------------------------------------------

    def _groups(self, step: Step) -> list[tuple[int, int, bool]]:
        """``(first, end, in_transaction)`` runs of statements from ``step.start``:
        consecutive transactional statements share one transaction; every
        other statement runs alone."""
        groups: list[tuple[int, int, bool]] = []
        for index in range(step.start, len(step.statements)):
            tx = self.transactional_ddl and not self.non_transactional(step.statements[index])
            if tx and groups and groups[-1][2] and groups[-1][1] == index:
                groups[-1] = (groups[-1][0], index + 1, True)
            else:
                groups.append((index, index + 1, tx))
        return groups

    def apply(self, step: Step) -> None:
        self._ensure_table()
        began, started = time.monotonic(), datetime.now(UTC)
        checksums = step.statement_checksums
        total = len(step.statements)

        def row(done: int, status: str, error: str | None = None) -> Applied:
            return Applied(
                version=step.version, name=step.name, checksum=step.checksum,
                applied_at=started.isoformat(), applied_by=step.applied_by,
                duration_seconds=round(time.monotonic() - began, 3), statements_done=done,
                status=status, statement_checksums=checksums[:done], error=error,
            )  # fmt: skip

        def progress(done: int) -> None:
            if step.direction == "down":
                if done == total:
                    self._run(f"DELETE FROM {HISTORY_TABLE} WHERE version = {self.param}",
                              (step.version,))  # fmt: skip
            else:
                self._write(row(done, "applied" if done == total else "running"))

        groups = self._groups(step) or [(total, total, True)]
        for first, end, tx in groups:
            current = first
            try:
                if tx:
                    self._run("BEGIN")
                for current in range(first, end):
                    self._run(step.statements[current])
                if tx:
                    progress(end)
                    self._run("COMMIT")
                else:
                    self._in_transaction(lambda end=end: progress(end))
            except self._errors() as exc:
                if tx:
                    self._rollback()
                self._failed(step, first, current, one_line(str(exc)), row)

    def _rollback(self) -> None:
        try:
            self._run("ROLLBACK")
        except self._errors():
            self.close()  # a broken session: the next call opens a new one

    def _failed(self, step: Step, done: int, current: int, message: str, row: Any) -> None:
        """Record the failure (when anything stayed in effect) and raise."""
        where = f"{step.database} {step.version}_{step.name} {step.direction}"
        leftovers = self.leftovers()
        if step.direction == "up" and done == 0:
            self.forget(step.version)
        elif step.direction == "up":
            self._in_transaction(lambda: self._write(row(done, "failed", message)))
        elif done > step.start:
            failed = row(0, "failed", f"down failed at statement {current + 1}: {message}")
            self._in_transaction(lambda: self._write(failed))
        rolled_back = done == step.start
        kept = "nothing of it stays" if done == 0 else f"statements 1-{done} stay in effect"
        extra = f"; left behind: {', '.join(leftovers)}" if leftovers else ""
        raise StepFailed(
            f"{where}: statement {current + 1} of {len(step.statements)} failed: {message} "
            f"({'rolled back, ' if rolled_back and done == 0 else ''}{kept}){extra}",
            database=step.database, version=step.version, statement=current, done=done,
            rolled_back=rolled_back and done == 0, leftovers=leftovers,
        )  # fmt: skip

    def trial(self, steps: list[Step]) -> list[tuple[int, int]]:
        if not self.transactional_ddl:
            raise UsageError(
                f"{self.config.engine} cannot run a migration in a rolled-back "
                "transaction (no transactional DDL)"
            )
        skipped: list[tuple[int, int]] = []
        self._run("BEGIN")
        for step in steps:
            current = step.start
            try:
                for current in range(step.start, len(step.statements)):
                    if self.non_transactional(step.statements[current]):
                        skipped.append((step.version, current))
                    else:
                        self._run(step.statements[current])
            except self._errors() as exc:
                self._rollback()
                raise StepFailed(
                    f"{step.database} {step.version}_{step.name} (dry run): statement "
                    f"{current + 1} failed: {one_line(str(exc))} (rolled back)",
                    database=step.database, version=step.version, statement=current, done=0,
                    rolled_back=True,
                ) from None  # fmt: skip
        self._rollback()
        return skipped


class SessionLeasedMigrations(SqlMigrations):
    """SQL migrations whose lease is a lock held by a session of its own
    (PostgreSQL's advisory lock, MySQL's ``GET_LOCK``): the lock dies with
    that session, so releasing it -- or a ``kill -9`` of its holder -- is
    the session ending. Subclasses set ``_lease`` to the session in
    ``lease``."""

    def __init__(self, config: DatabaseConfig) -> None:
        super().__init__(config)
        self._lease: Any = None

    def release(self, holder: str) -> None:
        if self._lease is not None:
            try:
                self._lease.close()  # ends the session, and the lock with it
            finally:
                self._lease = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release("")
