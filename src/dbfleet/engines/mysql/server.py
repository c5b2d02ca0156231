"""MySQL/MariaDB plumbing: URLs, client tools, server facts, accounts.

Used by :mod:`dbfleet.engines.mysql`: the URL and the option file the
client tools read, which dump tool is installed and how it is called,
what the server is (flavour, binary log, character set), health
indicators, conflict checks and the ``globals`` SQL (accounts and grants).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import pymysql

from dbfleet.config import DatabaseConfig
from dbfleet.engines._shared.process import find_tool, run_tool
from dbfleet.engines.mysql.dump import quote as quote_name
from dbfleet.errors import EngineError, ToolMissingError, UsageError

PACKAGE_HINT = "mariadb-client (Debian; provides mariadb-dump/mysqldump and mariadb/mysql)"
URL_PARAMS = {"socket", "ssl_ca", "ssl_cert", "ssl_key"}
DEFAULT_PORT = 3306
Connection: TypeAlias = "pymysql.connections.Connection[Any]"


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(dbname, safe=""), parts.query, ""))


def _option_value(value: str) -> str:
    """A value for a MySQL option file: double-quoted, escapes the client understands."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        .replace("\r", "\\r").replace("\t", "\\t")
    )  # fmt: skip
    return f'"{escaped}"'


@dataclass(frozen=True)
class Location:
    host: str
    port: int
    user: str | None
    dbname: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> Location:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise UsageError(f"MySQL url must start with mysql://, got {parts.scheme}://")
        params = dict(parse_qsl(parts.query))
        unknown = set(params) - URL_PARAMS
        if unknown:
            raise UsageError(
                f"unsupported url parameter(s) {', '.join(sorted(unknown))} "
                f"(supported: {', '.join(sorted(URL_PARAMS))})"
            )
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise UsageError("url has an invalid port") from None
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise UsageError("MySQL url must name a database: mysql://user@host:3306/db")
        return cls(
            host=unquote(parts.hostname or "") or "localhost",
            port=port,
            user=unquote(parts.username) if parts.username else None,
            dbname=dbname,
            params=params,
        )

    def describe(self, dbname: str | None = None) -> str:
        user = f"{self.user}@" if self.user else ""
        where = f"{self.host}:{self.port}"
        if "socket" in self.params:
            where = self.params["socket"]
        return f"{user}{where}/{dbname if dbname is not None else self.dbname}"

    def pymysql_args(
        self, *, password: str | None, database: str | None, timeout: int
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "password": password or "",
            "database": database, "charset": "utf8mb4", "autocommit": True,
            "connect_timeout": timeout, "program_name": "dbfleet",
        }  # fmt: skip
        if "socket" in self.params:
            args["unix_socket"] = self.params["socket"]
        ssl = {k[4:]: v for k, v in self.params.items() if k.startswith("ssl_")}
        if ssl:
            args["ssl"] = ssl
        return args

    def option_file(self, password: str | None, timeout: int) -> str:
        """``[client]`` settings so the tools connect exactly where PyMySQL does
        (over TCP also for ``localhost``, unless the url names a socket)."""
        lines = ["[client]", f"host={_option_value(self.host)}", f"port={self.port}"]
        if "socket" in self.params:
            lines += [f"socket={_option_value(self.params['socket'])}", "protocol=socket"]
        else:
            lines.append("protocol=tcp")
        if self.user:
            lines.append(f"user={_option_value(self.user)}")
        if password is not None:
            lines.append(f"password={_option_value(password)}")
        for key in ("ssl_ca", "ssl_cert", "ssl_key"):
            if key in self.params:
                lines.append(f"{key.replace('_', '-')}={_option_value(self.params[key])}")
        # mysqldump knows no connect-timeout; the interactive client's own group does
        lines += ["[mysql]", f"connect-timeout={timeout}"]
        # MariaDB's client echoes a failing statement (rows included) into the error.
        lines += ["[mariadb-client]", "loose-skip-print-query-on-error"]
        return "\n".join(lines) + "\n"


def connect_error(
    exc: BaseException, config: DatabaseConfig, loc: Location, password: str | None, with_db: bool
) -> EngineError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    reason = str(exc.args[-1]) if exc.args else type(exc).__name__
    reason = " ".join(reason.split())
    if password:
        reason = reason.replace(password, "***")
    if code == 1045:
        where = [f"${config.password_env}"] if config.password_env else []
        where += [str(config.password_file)] if config.password_file else []
        hint = (
            f"check the user in url and the password in {' / '.join(where)}"
            if where
            else "no password configured: set password_env or password_file"
        )
    elif code == 1049:
        hint = "check the database name in url"
    elif code == 1044:
        hint = "the account has no privileges on this database"
    elif code in (2002, 2003, 2005, 2013):
        hint = "check that the server is running and the url's host and port"
    else:
        hint = None
    where_to = loc.describe(None if with_db else "")
    return EngineError(f"cannot connect to MySQL {where_to}: {reason}", hint=hint)


@dataclass(frozen=True)
class ServerInfo:
    version: str
    flavor: str  # "mariadb" or "mysql"
    numeric: tuple[int, int, int]
    log_bin: bool
    server_id: int
    charset: str | None
    collation: str | None
    size: int | None


def server_info(conn: Connection, dbname: str) -> ServerInfo:
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION(), @@version_comment, @@log_bin, @@server_id")
        version, comment, log_bin, server_id = cur.fetchone() or ("", "", 0, 0)
        cur.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM"
            " information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (dbname,),
        )
        charset, collation = cur.fetchone() or (None, None)
        cur.execute(
            "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s",
            (dbname,),
        )
        (size,) = cur.fetchone() or (None,)
    flavor = "mariadb" if "mariadb" in f"{version} {comment}".lower() else "mysql"
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", str(version))
    numeric = (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)
    return ServerInfo(
        version=str(version), flavor=flavor, numeric=numeric, log_bin=bool(log_bin),
        server_id=int(server_id or 0), charset=charset, collation=collation,
        size=int(size) if size is not None else 0,
    )  # fmt: skip


@dataclass(frozen=True)
class Tool:
    """An installed client tool and what it is."""

    kind: str  # "dump" or "client"
    path: str
    flavor: str
    numeric: tuple[int, int, int]
    version_text: str

    NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "dump": ("mariadb-dump", "mysqldump"),
        "client": ("mariadb", "mysql"),
    }
    CLIENT_ARGS: ClassVar[tuple[str, ...]] = (
        "--binary-mode", "--batch", "--default-character-set=utf8mb4", "--max-allowed-packet=1G",
    )  # fmt: skip

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @classmethod
    def find(cls, kind: str, bin_dir: Any = None) -> Tool:
        names = cls.NAMES[kind]
        path = None
        if bin_dir:
            path = next(
                (os.path.join(str(bin_dir), n) for n in names
                 if os.access(os.path.join(str(bin_dir), n), os.X_OK)),
                None,
            )  # fmt: skip
            if path is None:
                raise ToolMissingError(
                    f"none of {', '.join(names)} in bin_dir {bin_dir}",
                    hint=f"install {PACKAGE_HINT}",
                )
        if path is None:
            for name in names[:-1]:
                try:
                    path = find_tool(name, PACKAGE_HINT)
                    break
                except ToolMissingError:
                    continue
            else:
                try:
                    path = find_tool(names[-1], PACKAGE_HINT)
                except ToolMissingError as exc:
                    exc.message = f"neither {' nor '.join(names)} found on PATH"
                    raise
        text = run_tool([path, "--version"]).strip()
        flavor = "mariadb" if "mariadb" in text.lower() else "mysql"
        match = re.search(r"(\d+\.\d+\.\d+)-MariaDB", text) if flavor == "mariadb" else None
        match = (
            match
            or re.search(r"Distrib (\d+\.\d+\.\d+)", text)
            or re.search(r"Ver (\d+\.\d+\.\d+)", text)
        )
        numeric = tuple(int(p) for p in match[1].split(".")) if match else (0, 0, 0)
        return cls(kind, path, flavor, numeric[:3], text)  # type: ignore[arg-type]

    def dump_args(self, server: ServerInfo, *, binlog: bool, programs: bool = True) -> list[str]:
        """Options of every dump (backups and fingerprints must format rows alike)."""
        args = [
            "--single-transaction", "--quick", "--hex-blob", "--default-character-set=utf8mb4",
            "--tz-utc", "--comments", "--skip-dump-date", "--skip-add-locks", "--no-tablespaces",
            # One INSERT per row: a changed row changes only its own line, so the
            # chunks after it stay the same (extended INSERTs are cut by length,
            # and every cut after a change would move); restores join them again.
            "--skip-extended-insert",
            "--max-allowed-packet=1G",
        ]  # fmt: skip
        args += ["--routines", "--events", "--triggers"] if programs else ["--skip-triggers"]
        if self.flavor == "mysql":
            if self.numeric >= (8, 0, 0) and server.flavor == "mariadb":
                args.append("--column-statistics=0")
            if server.flavor == "mysql" and self.numeric >= (8, 0, 17):
                args.append("--set-gtid-purged=COMMENTED" if binlog else "--set-gtid-purged=OFF")
            elif self.numeric >= (5, 6, 9):
                args.append("--set-gtid-purged=OFF")
        if binlog:
            if self.flavor == "mysql" and self.numeric >= (8, 0, 26):
                args.append("--source-data=2")
            else:
                args.append("--master-data=2")
            if self.flavor == "mariadb":
                args.append("--gtid")
        return args


def health_details(conn: Connection, info: ServerInfo) -> dict[str, Any]:
    details: dict[str, Any] = {"flavor": info.flavor, "log_bin": info.log_bin}
    with conn.cursor() as cur:
        cur.execute("SELECT @@max_connections, @@read_only")
        max_connections, read_only = cur.fetchone() or (None, None)
        details.update(max_connections=max_connections, read_only=bool(read_only))
        cur.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Threads_running',"
            " 'Uptime', 'Innodb_buffer_pool_reads', 'Innodb_buffer_pool_read_requests',"
            " 'Questions', 'Slow_queries', 'Slaves_connected')"
        )
        status = {str(k): int(v) for k, v in cur.fetchall() if str(v).isdigit()}
        details.update(
            threads_connected=status.get("Threads_connected"),
            threads_running=status.get("Threads_running"),
            uptime_seconds=status.get("Uptime"),
            questions=status.get("Questions"),
            slow_queries=status.get("Slow_queries"),
        )
        requests = status.get("Innodb_buffer_pool_read_requests")
        reads = status.get("Innodb_buffer_pool_reads", 0)
        details["buffer_pool_hit_ratio"] = round(1 - reads / requests, 4) if requests else None
        if "Slaves_connected" in status:
            details["replicas_connected"] = status["Slaves_connected"]
        gtid_var = "@@gtid_current_pos" if info.flavor == "mariadb" else "@@gtid_executed"
        try:
            cur.execute(f"SELECT {gtid_var}")
            details["gtid"] = (cur.fetchone() or (None,))[0] or None
        except pymysql.Error:
            details["gtid"] = None
        details["replication"] = _replication(cur, info)
    return details


def _replication(cur: Any, info: ServerInfo) -> dict[str, Any]:
    """This server as a replica: threads and lag (``role: none`` if it is none)."""
    statement = (
        "SHOW REPLICA STATUS"
        if info.flavor == "mysql" and info.numeric >= (8, 0, 22)
        else "SHOW SLAVE STATUS"
    )
    try:
        cur.execute(statement)
        row = cur.fetchone()
        columns = [d[0] for d in cur.description or ()]
    except pymysql.Error as exc:
        return {"role": "unknown", "error": str(exc.args[-1])}
    if not row:
        return {"role": "none"}
    status = dict(zip(columns, row, strict=False))

    def pick(*names: str) -> Any:
        return next((status[n] for n in names if n in status), None)

    return {
        "role": "replica",
        "source_host": pick("Source_Host", "Master_Host"),
        "io_running": pick("Replica_IO_Running", "Slave_IO_Running"),
        "sql_running": pick("Replica_SQL_Running", "Slave_SQL_Running"),
        "seconds_behind": pick("Seconds_Behind_Source", "Seconds_Behind_Master"),
        "last_error": pick("Last_Error") or None,
    }


def existing_objects(conn: Connection, dbname: str) -> dict[str, set[str]]:
    """What a database holds, by kind; ``relations`` are tables, sequences and views."""
    queries = {
        "relations": "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        "functions": "SELECT ROUTINE_NAME FROM information_schema.ROUTINES"
        " WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE = 'FUNCTION'",
        "procedures": "SELECT ROUTINE_NAME FROM information_schema.ROUTINES"
        " WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE = 'PROCEDURE'",
        "events": "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
    }
    found: dict[str, set[str]] = {}
    with conn.cursor() as cur:
        for kind, query in queries.items():
            cur.execute(query, (dbname,))
            found[kind] = {str(r[0]) for r in cur.fetchall()}
    return found


FLOAT_ROUNDED = "FLOAT values with more than the 6 significant digits the dump tool writes"
MEMBER_LOST = "ENUM/SET members with 4-byte characters, which the table definition shows as '?'"
# Per kind of column: the condition on its information_schema row, and an
# expression true for a stored value that the dump does not restore as it is.
_LOSSY = {
    FLOAT_ROUNDED: ("c.DATA_TYPE = 'float'", "{c} <> CAST(CONCAT({c}, '') AS FLOAT)"),
    MEMBER_LOST: (
        "c.DATA_TYPE IN ('enum', 'set') AND c.CHARACTER_SET_NAME = 'utf8mb4'"
        " AND c.COLUMN_TYPE LIKE '%%?%%'",  # (%% for the query's parameters)
        "HEX({c}) REGEXP '^(..)*F[0-4]'",  # a 4-byte UTF-8 sequence
    ),
}


def lossy_columns(conn: Connection, dbname: str) -> dict[str, dict[str, str]]:
    """Columns holding values that a dump with mysqldump/mariadb-dump does
    not bring back as they are, by table: column -> why.

    * FLOAT: the tools write a FLOAT as the server shows it, with 6
      significant digits (``16777216`` as ``16777200``, ``1.0000001`` as
      ``1``); a value is lost when that text read back is another number.
    * ENUM/SET of utf8mb4 columns: ``SHOW CREATE TABLE`` writes 4-byte
      characters of the members as ``?`` (MariaDB 10.11), so a restored
      table lacks those members and the dump's values of them become ``''``.

    A fingerprint of the dump cannot notice the first (both dumps say the
    same); ``verify`` notices the second only afterwards. One scan of each
    table that has such columns; generated columns are recomputed on restore."""
    found: dict[str, dict[str, str]] = {}
    with conn.cursor() as cur:
        for why, (condition, lost) in _LOSSY.items():
            cur.execute(
                "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c"
                " JOIN information_schema.TABLES t USING (TABLE_SCHEMA, TABLE_NAME)"
                f" WHERE c.TABLE_SCHEMA = %s AND t.TABLE_TYPE = 'BASE TABLE' AND {condition}"
                " AND c.GENERATION_EXPRESSION IS NULL ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
                (dbname,),
            )
            by_table: dict[str, list[str]] = {}
            for table, column in cur.fetchall():
                by_table.setdefault(str(table), []).append(str(column))
            for table, columns in by_table.items():
                checks = ", ".join(f"MAX({lost.format(c=quote_name(c))})" for c in columns)
                cur.execute(f"SELECT {checks} FROM {quote_name(dbname)}.{quote_name(table)}")
                flags = cur.fetchone() or ()
                for column, flag in zip(columns, flags, strict=True):
                    if flag:
                        found.setdefault(table, {})[column] = why
    return found


def names_with_line_breaks(conn: Connection, dbname: str) -> list[str]:
    """Tables and views whose names hold a line break: the dump tools write
    such names unescaped across lines, where the dump's line-based reading
    (fingerprint, ``--table``) cannot follow them."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
            " AND (TABLE_NAME LIKE %s OR TABLE_NAME LIKE %s) ORDER BY 1",
            (dbname, "%\n%", "%\r%"),
        )
        return [str(row[0]) for row in cur.fetchall()]


def restore_hint(message: str) -> str | None:
    if "ERROR 1419" in message:
        return (
            "with the binary log on, creating functions needs SUPER: restore as such an "
            "account or set log_bin_trust_function_creators = 1 on the server"
        )
    if "ERROR 1227" in message and ("SET USER" in message or "SUPER" in message):
        return (
            "objects keep their DEFINER: restore as an account with SET USER (or SUPER), "
            "or set option no_definer: true"
        )
    return None


def can_set_definer(conn: Connection) -> bool:
    """May the account create objects with another account as DEFINER?"""
    with conn.cursor() as cur:
        cur.execute("SHOW GRANTS FOR CURRENT_USER()")
        grants = [str(row[0]) for row in cur.fetchall()]
    return any(
        re.match(r"GRANT (ALL PRIVILEGES|.*\b(SUPER|SET USER|SET_USER_ID)\b.*) ON \*\.\* TO", g)
        for g in grants
    )
