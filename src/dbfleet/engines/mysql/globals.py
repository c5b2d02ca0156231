"""MySQL/MariaDB accounts, roles and grants: the ``globals`` stream.

Read with ``SHOW CREATE USER`` and ``SHOW GRANTS`` per account, which works
on MySQL and MariaDB alike and needs no particular dump tool. MariaDB's
``mariadb-dump --system=users`` was not used: it repeats each account's
authentication in its GRANT statements (``IDENTIFIED BY PASSWORD ...``), so
replaying it would reset the password of an account that exists on the
target, and it includes built-in accounts such as ``root@localhost``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import pymysql

from dbfleet.engines.mysql.server import Connection, ServerInfo
from dbfleet.errors import EngineError

log = logging.getLogger(__name__)

BUILTIN_ACCOUNTS = {
    ("root", "localhost"), ("mariadb.sys", "localhost"), ("mysql", "localhost"),
    ("mysql.sys", "localhost"), ("mysql.session", "localhost"), ("mysql.infoschema", "localhost"),
    ("debian-sys-maint", "localhost"),
}  # fmt: skip
_STRING = r"'(?:[^'\\]|\\.)*'"
_AUTH_PART = rf"(?:\s+(?:USING|AS|BY)\s+(?:PASSWORD\s*\(\s*)?{_STRING}\)?)?"
_IDENTIFIED = re.compile(
    rf"\s+IDENTIFIED\s+(?:BY\s+PASSWORD\s+{_STRING}|BY\s+{_STRING}"
    rf"|(?:VIA|WITH)\s+\w+{_AUTH_PART}(?:\s+OR\s+\w+{_AUTH_PART})*)"
)


ACCOUNT_MARK = "-- account "


def _account(user: str, host: str | None) -> str:
    name = "`" + user.replace("`", "``") + "`"
    return name if host is None else name + "@`" + host.replace("`", "``") + "`"


def account_grants(cur: Any, account: str) -> list[str]:
    """``SHOW GRANTS`` of an account without ``IDENTIFIED`` clauses (MariaDB
    repeats the authentication there; replaying it would reset a password)."""
    cur.execute(f"SHOW GRANTS FOR {account}")
    return [_IDENTIFIED.sub("", str(grant)) for (grant,) in cur.fetchall()]


def read_globals(conn: Connection, info: ServerInfo) -> str:
    """Accounts, roles and their grants as SQL statements, one per line: all
    ``CREATE`` statements, then each account's grants after a comment line
    ``-- account `user`@`host```."""
    with conn.cursor() as cur:
        try:
            if info.flavor == "mariadb":
                cur.execute(
                    "SELECT User, Host, is_role FROM mysql.user ORDER BY is_role DESC, User, Host"
                )
            else:
                cur.execute("SELECT User, Host, 'N' FROM mysql.user ORDER BY User, Host")
            rows = [(str(u), str(h), str(r) == "Y") for u, h, r in cur.fetchall()]
        except pymysql.Error as exc:
            raise EngineError(
                f"globals: cannot list accounts: {exc.args[-1]}",
                hint="globals: true needs SELECT on mysql.user (or set globals: false)",
            ) from None
        if info.flavor == "mysql":
            with contextlib.suppress(pymysql.Error):
                cur.execute("SET SESSION print_identified_with_as_hex = ON")
        creates: list[str] = []
        grants: list[str] = []
        for user, host, is_role in rows:
            if (user, host) in BUILTIN_ACCOUNTS or not user or user == "PUBLIC":
                continue
            account = _account(user, None if is_role else host)
            try:
                if is_role:
                    creates.append(f"CREATE ROLE IF NOT EXISTS {account};")
                else:
                    cur.execute(f"SHOW CREATE USER {account}")
                    statement = str((cur.fetchone() or ("",))[0])
                    creates.append(
                        re.sub(r"^CREATE USER ", "CREATE USER IF NOT EXISTS ", statement) + ";"
                    )
                grants.append(f"{ACCOUNT_MARK}{account}")
                grants += [g + ";" for g in account_grants(cur, account)]
            except pymysql.Error as exc:
                raise EngineError(
                    f"globals: cannot read account {user}@{host}: {exc.args[-1]}",
                    hint="globals: true needs SELECT on mysql.* to read other accounts' grants",
                ) from None
    header = f"-- dbfleet globals: accounts and grants of {info.flavor} {info.version}"
    return "\n".join([header, *creates, *grants]) + "\n"


def replay_globals(cur: Any, script: str) -> None:
    """Replay a ``globals`` stream statement by statement: accounts that
    exist keep their authentication (``IF NOT EXISTS``), grants already in
    place are skipped (granting a role needs its ADMIN OPTION even when
    nothing changes); any error fails, without showing the statement (it
    may hold a password hash)."""
    account, current = "", set()
    for line in script.splitlines():
        if line.startswith(ACCOUNT_MARK):
            account = line[len(ACCOUNT_MARK) :]
            try:
                current = set(account_grants(cur, account))
            except pymysql.Error:
                current = set()  # no such account (yet)
            continue
        statement = line.strip().removesuffix(";")
        if not statement or statement.startswith("--") or statement in current:
            continue
        created = re.match(r"CREATE (?:USER|ROLE) IF NOT EXISTS (\S+)", statement)
        subject = created[1] if created else account
        try:
            cur.execute(statement)
            if created and cur.connection.show_warnings():
                log.info("globals: %s exists already; its authentication is kept", subject)
        except pymysql.Error as exc:
            raise EngineError(
                f"globals: {statement.split(' ', 2)[0]} for {subject} failed: {exc.args[-1]}",
                hint="replaying accounts needs CREATE USER and GRANT OPTION "
                "(and ADMIN OPTION on granted roles)",
            ) from None
