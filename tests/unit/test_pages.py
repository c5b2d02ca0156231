"""The dashboard pages through HTTP (Starlette's TestClient over the real
app) on a real catalog and repository written by real SQLite backups: the
log-in cookie, roles, CSRF, compliance order and stale marking, the
database page, jobs, exports. The browser tests drive the same pages in
Chromium against a running serve (tests/integration/test_dashboard_browser.py)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_drill import Estate as Kit
from test_estate import drill

from dbfleet.schedule.inventory import load
from dbfleet.web.app import create_app
from dbfleet.web.config import HttpConfig
from dbfleet.web.render import sparkline
from dbfleet.web.session import COOKIE
from dbfleet.web.state import WebState
from dbfleet.web.tokens import TokenStore

ORIGIN = "http://testserver"


class Site:
    def __init__(self, root: Path) -> None:
        self.kit = Kit(root)
        self.kit.write(notes={"rpo": "1h"}, wiki={"rpo": "26h"})
        self.tokens = TokenStore(root / "tokens.yaml")
        self.viewer = self.tokens.add("auditor", "viewer")
        self.operator = self.tokens.add("ops", "operator")
        self.submitted: list[tuple[str, str, str]] = []
        inventory, scheduling = load(self.kit.config)
        state = WebState(
            inventory, scheduling, self.kit.catalog, self.tokens, HttpConfig(),
            submit=self.submit,
        )  # fmt: skip
        self.client = TestClient(create_app(state), follow_redirects=False)

    def submit(self, kind: str, database: str, actor: str) -> int:
        """Runs the job for real, in the request's thread (serve would queue it)."""
        self.submitted.append((kind, database, actor))
        if kind == "backup":
            self.kit.backup(database)
        else:
            drill(self.kit, database)
        from dbfleet.catalog import Catalog

        with Catalog(self.kit.catalog) as cat:
            return cat.runs(limit=1)[0].id if cat.runs(limit=1) else 0

    def login(self, token: str) -> None:
        r = self.client.post(
            "/login", data={"token": token, "next": "/"}, headers={"Origin": ORIGIN}
        )
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_pages_need_a_token(site: Site) -> None:
    for path in ("/", "/databases/notes", "/jobs", "/jobs/fragment", "/export/drills.csv"):
        r = site.client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/"), path
    assert site.client.get("/login").status_code == 200
    bad = site.client.post("/login", data={"token": "nope"}, headers={"Origin": ORIGIN})
    assert bad.status_code == 401 and "Unknown or revoked token" in bad.text
    assert COOKIE not in bad.headers.get("set-cookie", "")
    r = site.client.get("/", headers={"Authorization": f"Bearer {site.viewer}"})
    assert r.status_code == 200  # scripts may use the bearer header


def test_compliance_worst_first_and_stale_marked(site: Site) -> None:
    site.kit.backup("notes")
    site.login(site.viewer)
    r = site.client.get("/")
    assert r.status_code == 200
    rows = re.findall(r'<tr class="status-(\w+)" data-database="(\w+)">', r.text)
    assert rows == [("stale", "wiki"), ("warning", "notes")]
    wiki_row = r.text.split('data-database="wiki"')[1].split("</tr>")[0]
    assert '<span class="state status">stale</span>' in wiki_row and "never backed up" in wiki_row
    assert "1 stale" in r.text


def test_viewer_sees_no_buttons_and_cannot_post(site: Site) -> None:
    site.kit.backup("notes")
    site.login(site.viewer)
    page = site.client.get("/databases/notes")
    assert page.status_code == 200 and "Back up now" not in page.text
    r = site.client.post("/databases/notes/backup", headers={"Origin": ORIGIN})
    assert r.status_code == 403 and site.submitted == []
    api = site.client.post("/api/v1/databases/notes/backup", headers={"Origin": ORIGIN})
    assert api.status_code == 403 and site.submitted == []  # the API takes the cookie too


def test_operator_backs_up_from_the_page(site: Site) -> None:
    site.login(site.operator)
    page = site.client.get("/databases/notes")
    assert 'id="backup-now"' in page.text and 'id="drill-now"' in page.text
    assert "No snapshots." in page.text
    r = site.client.post("/databases/notes/backup", headers={"Origin": ORIGIN})
    assert r.status_code == 303, r.text
    assert site.submitted == [("backup", "notes", "api:ops")]
    assert r.headers["location"].startswith("/jobs/")
    page = site.client.get("/databases/notes")
    assert "No snapshots." not in page.text and page.text.count('class="spark"') == 3
    drilled = site.client.post("/databases/notes/drill", headers={"Origin": ORIGIN})
    assert drilled.status_code == 303
    job = site.client.get(drilled.headers["location"])
    assert job.status_code == 200 and "drill:notes" in job.text and "hx-trigger" not in job.text
    page = site.client.get("/databases/notes")
    drills = page.text.split('id="drills"')[1].split("</table>")[0]
    assert ">pass<" in drills and "match (3 tables)" in drills and "dbfleet-drill_" in drills


def test_cross_site_posts_are_refused(site: Site) -> None:
    site.login(site.operator)
    for headers in ({"Origin": "http://evil.example"}, {}, {"Referer": "http://evil.example/x"}):
        r = site.client.post("/databases/notes/backup", headers=headers)
        assert r.status_code == 403, headers
        assert "cross-site" in r.json()["detail"]
    assert site.submitted == []
    api = site.client.post(
        "/api/v1/databases/notes/backup", headers={"Origin": "http://evil.example"}
    )
    assert api.status_code == 403 and "cross-site" in api.json()["detail"]
    assert site.submitted == []
    ok = site.client.post("/databases/notes/backup", headers={"Referer": f"{ORIGIN}/x"})
    assert ok.status_code == 303
    bearer = site.client.post(  # a script with the header needs no Origin
        "/api/v1/databases/wiki/backup",
        headers={"Authorization": f"Bearer {site.operator}"},
    )
    assert bearer.status_code == 202, bearer.text


def test_jobs_page_polls_a_fragment(site: Site) -> None:
    site.kit.backup("notes")
    drill(site.kit, "wiki")  # fails: never backed up
    site.login(site.viewer)
    r = site.client.get("/jobs")
    assert 'hx-get="/jobs/fragment" hx-trigger="every 2s"' in r.text
    assert '<script src="/static/htmx.min.js"' in r.text
    fragment = site.client.get("/jobs/fragment")
    assert fragment.text.lstrip().startswith('<div id="jobs"')
    assert "drill:wiki" in fragment.text and "no snapshot" in fragment.text
    js = site.client.get("/static/htmx.min.js")
    assert js.status_code == 200 and b"htmx" in js.content[:2000]
    assert site.client.get("/static/../pages.py").status_code == 404
    for run_id in ("0", "3270627874333851123712", "99999"):
        assert site.client.get(f"/jobs/{run_id}").status_code == 404, run_id


def test_exports(site: Site) -> None:
    site.kit.backup("notes")
    drill(site.kit, "notes")
    site.login(site.viewer)
    r = site.client.get("/export/compliance.csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="compliance.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["database"] for x in rows] == ["wiki", "notes"]
    body = site.client.get("/export/drills.json").json()
    (row,) = body["rows"]
    assert row["database"] == "notes" and row["fingerprint"] == "match"
    assert datetime.fromisoformat(body["generated_at"]) <= datetime.now(UTC)
    assert site.client.get("/export/drills.xml").status_code == 404
    json.dumps(body)


def test_escaping(site: Site) -> None:
    from dbfleet.catalog import Catalog

    with Catalog(site.kit.catalog) as cat:
        cat.record_run(
            job="backup:notes", kind="backup", target="notes", database="notes",
            trigger="manual", scheduled_at=None, started_at=datetime.now(UTC), status="failed",
            error="<script>alert(1)</script>",
        )  # fmt: skip
    site.login(site.viewer)
    for path in ("/jobs", "/databases/notes"):
        r = site.client.get(path)
        assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)" in r.text, path
    missing = site.client.get("/databases/nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
    svg = sparkline([1, 2, 3], "<b>size</b>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "points=" in svg


def test_logout_clears_the_cookie(site: Site) -> None:
    site.login(site.viewer)
    r = site.client.post("/logout", headers={"Origin": ORIGIN})
    assert r.status_code == 303 and f'{COOKIE}=""' in r.headers["set-cookie"]


def test_docs_list_every_export_column() -> None:
    from dbfleet.observe.estate import COMPLIANCE_COLUMNS
    from dbfleet.observe.evidence import DRILL_COLUMNS

    text = (Path(__file__).parents[2] / "docs" / "dashboard.md").read_text()
    words = set(re.findall(r"[a-z_0-9]+", text))
    missing = [c for c in [*COMPLIANCE_COLUMNS, *DRILL_COLUMNS] if c not in words]
    assert missing == []


def test_database_page_shows_the_forecast(site: Site) -> None:
    from datetime import timedelta

    from test_estate import store_sample

    from dbfleet.engines.base import HealthSample

    site.kit.backup("notes")
    start = datetime.now(UTC) - timedelta(days=2, minutes=1)
    for day in range(3):
        at = start + timedelta(days=day)
        store_sample(site.kit, HealthSample("notes", "sqlite", at, True, 0.01,
                                            size_bytes=(10 + day) * 2**20))  # fmt: skip
    site.login(site.viewer)
    body = site.client.get("/databases/notes").text.split('id="forecast"')[1]
    assert "1.0 MiB per day (3 samples" in body and "no capacity_bytes set" in body
    assert "No forecast" in site.client.get("/databases/wiki").text
