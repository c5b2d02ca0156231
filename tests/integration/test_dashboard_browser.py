"""The dashboard in a real browser: Debian's Chromium driven by Playwright
for Python, against a running ``dbfleet serve --http`` subprocess with real
databases (SQLite files, a PostgreSQL database and a Redis database on the
test servers) and a real file:// repository.

Chromium is never downloaded: ``/usr/bin/chromium`` (scripts/servers/
chromium.sh installs Debian's package). Without it, or without the
playwright package, the tests fail under CI and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dbfleet.config import load_inventory
from dbfleet.operations.backup import backup_many
from dbfleet.operations.common import Repositories
from dbfleet.operations.demo import create_sample_database
from dbfleet.operations.repository import init_repository
from dbfleet.web.tokens import TokenStore
from tests.integration.conftest import PgServer, _unavailable
from tests.integration.fixtures_redis import REDIS_PASSWORD_ENV, RedisServer, populate

CHROMIUM = os.environ.get("DBFLEET_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PASSPHRASE_ENV = "DBFLEET_TEST_DASH_PW"
PASSPHRASE = "dash-Passphrase-7c1e42-never-printed"
FAST_KDF = {"n": 2**10, "r": 8, "p": 1}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed", "pip install -e '.[test]'")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}", "scripts/test-servers.sh start chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An inventory of four real databases, tokens, and a running serve."""

    def __init__(self, root: Path, pg: PgServer, pg_name: str, redis: RedisServer, db: int):
        self.root, self.config = root, root / "dbfleet.yaml"
        self.notes, self.wiki = root / "notes.db", root / "wiki.db"
        create_sample_database(self.notes, notes=400)
        create_sample_database(self.wiki, notes=50, seed=5)
        with pg.connect() as conn:
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        with pg.connect(pg_name) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
            conn.execute("INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g")
        populate(redis.client(db), users=50)
        base = redis.url.rsplit("/", 1)[0]
        document = {
            "repositories": {
                "local": {"url": f"file://{root / 'repo'}", "passphrase_env": PASSPHRASE_ENV}
            },
            "databases": {
                "notes": {"engine": "sqlite", "path": str(self.notes), "rpo": "1h", "rto": "5m"},
                "wiki": {"engine": "sqlite", "path": str(self.wiki), "rpo": "1h"},
                "orders": {**pg.config(pg_name).model_dump(exclude_defaults=True), "rpo": "1d"},
                "cache": {"engine": "redis", "url": f"{base}/{db}",
                          "password_env": REDIS_PASSWORD_ENV, "rpo": "1d"},
            },
        }  # fmt: skip
        self.config.write_text(yaml.safe_dump(document, sort_keys=False))
        os.environ[PASSPHRASE_ENV] = PASSPHRASE
        inventory = load_inventory(self.config)
        init_repository(inventory, "local", kdf=FAST_KDF)
        # wiki is never backed up: stale, and first on the page
        assert all(r.ok for r in backup_many(Repositories(inventory), ["notes", "orders", "cache"]))
        tokens = TokenStore(root / "dbfleet.tokens.yaml")
        self.operator, self.viewer = tokens.add("ops", "operator"), tokens.add("auditor", "viewer")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (root / "serve.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbfleet", "--config", str(self.config), "serve",
             "--http", self.url.removeprefix("http://")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=self.env(),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (root / "serve.log").read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /healthz in 60 s"
            time.sleep(0.2)

    def env(self) -> dict[str, str]:
        return {**os.environ, PASSPHRASE_ENV: PASSPHRASE, "COLUMNS": "200"}

    def snapshots(self, database: str) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-m", "dbfleet", "--config", str(self.config), "snapshots",
             database, "--json"],
            capture_output=True, text=True, env=self.env(), timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return list(json.loads(proc.stdout))

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        text = (self.root / "serve.log").read_text()
        assert PASSPHRASE not in text and self.operator not in text and self.viewer not in text
        assert "Traceback" not in text, text
        return text


@pytest.fixture
def served(
    tmp_path: Path,
    pg_server: PgServer,
    pg_databases: Callable[[str], str],
    redis_server: RedisServer,
    redis_dbs: Callable[[], int],
) -> Iterator[Served]:
    site = Served(tmp_path, pg_server, pg_databases("dash"), redis_server, redis_dbs())
    try:
        yield site
    finally:
        site.stop()


def login(browser: Any, site: Served, token: str) -> Any:
    page = browser.new_context(base_url=site.url).new_page()
    page.goto("/")
    assert "/login" in page.url  # no cookie yet: sent to log in
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return page


def test_compliance_lists_every_database_stale_first_and_operator_backs_up(
    browser: Any, served: Served
) -> None:
    page = login(browser, served, served.operator)
    rows = page.locator("#compliance tbody tr")
    names = [rows.nth(i).get_attribute("data-database") for i in range(rows.count())]
    assert sorted(names) == ["cache", "notes", "orders", "wiki"]  # type: ignore[type-var]
    assert names[0] == "wiki"
    first = rows.nth(0)
    assert first.get_attribute("class") == "status-stale"
    assert first.locator(".state").first.inner_text().strip().lower() == "stale"
    assert "never backed up" in first.inner_text()
    for i in range(1, 4):
        assert rows.nth(i).get_attribute("class") != "status-stale"
    cookies = page.context.cookies()
    (cookie,) = [c for c in cookies if c["name"] == "dbfleet_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    before = {s["id"] for s in served.snapshots("notes")}
    assert len(before) == 1
    page.click("a[href='/databases/notes']")
    page.wait_for_url(f"{served.url}/databases/notes")
    assert page.locator("svg.spark").count() == 3
    page.click("#backup-now")
    page.wait_for_url(f"{served.url}/jobs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    row = page.locator(f"tr[data-run='{run_id}']")
    assert "backup:notes" in row.inner_text()
    # the fragment polls every 2 s until the job is done: no reload here
    row.locator(".state.ok").wait_for(timeout=90_000)
    assert "api:ops" in row.inner_text()
    after = served.snapshots("notes")
    new = [s for s in after if s["id"] not in before]
    assert len(new) == 1 and new[0]["database"] == "notes"
    page.goto("/jobs")
    assert page.locator(f"tr[data-run='{run_id}'] .state.ok").count() == 1
    page.goto("/")
    assert page.locator("#compliance tbody tr").nth(0).get_attribute("data-database") == "wiki"


def test_a_viewer_sees_no_buttons(browser: Any, served: Served) -> None:
    page = login(browser, served, served.viewer)
    page.goto("/databases/notes")
    assert page.locator("h2", has_text="Snapshots").count() == 1
    assert page.locator("#backup-now").count() == 0 and page.locator("#drill-now").count() == 0
    assert page.get_by_text("Back up now").count() == 0
    # and a POST made anyway (same origin, with the cookie) is refused
    status = page.evaluate(
        "async () => (await fetch('/databases/notes/backup', {method: 'POST'})).status"
    )
    assert status == 403
    export = page.request.get("/export/compliance.csv")
    assert export.status == 200 and export.text().splitlines()[1].startswith("wiki,")
