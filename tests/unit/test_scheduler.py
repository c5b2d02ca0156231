"""The scheduler's rules, to the second, with an injected clock: cron parsing
and time zones, the inventory fields, which jobs exist, which are due (on
time, coalesced, missed), what may start (concurrency, one job per database,
exclusive repositories), retry delays and alert transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from dbfleet.config import parse_inventory
from dbfleet.errors import ConfigError
from dbfleet.schedule.config import Scheduling, format_span, parse_span
from dbfleet.schedule.core import (
    AlertState,
    Due,
    History,
    Job,
    Pending,
    alert_transition,
    build_jobs,
    due_jobs,
    interrupted_jobs,
    merge_due,
    next_runs,
    retry_delay,
    startable,
)
from dbfleet.schedule.cron import Cron
from dbfleet.schedule.inventory import parse_scheduling, split_document


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- cron ----------------------------------------------------------------------


def test_cron_next_and_latest() -> None:
    cron = Cron("0 2 * * *")
    assert cron.next_after(at("2024-01-01T02:00:00")) == at("2024-01-02T02:00:00")
    assert cron.next_after(at("2024-01-01T01:59:59")) == at("2024-01-01T02:00:00")
    assert cron.latest_at_or_before(at("2024-01-01T02:00:00")) == at("2024-01-01T02:00:00")
    assert cron.latest_at_or_before(at("2024-01-01T01:59:59.999999")) == at("2023-12-31T02:00:00")
    assert cron.fires_between(at("2024-01-01T02:00:00"), at("2024-01-03T02:00:00")) == [
        at("2024-01-02T02:00:00"),
        at("2024-01-03T02:00:00"),
    ]
    assert cron.fires_between(at("2024-01-01T03:00:00"), at("2024-01-01T04:00:00")) == []


def test_cron_aliases_and_errors() -> None:
    assert Cron("@daily").expression == "0 0 * * *"
    assert Cron("  */15   *  * * MON-FRI ").expression == "*/15 * * * MON-FRI"
    for bad in ("61 * * * *", "* * *", "0 2 * * * *", "@fortnightly", "0 25 * * *"):
        with pytest.raises(ValueError, match="invalid cron expression"):
            Cron(bad)
    with pytest.raises(ValueError, match="unknown time zone"):
        Cron("0 2 * * *", "Mars/Olympus")


def test_cron_time_zone_and_daylight_saving() -> None:
    berlin = Cron("30 2 * * *", "Europe/Berlin")
    # winter: 02:30 CET is 01:30 UTC
    assert berlin.next_after(at("2024-01-10T00:00:00")) == at("2024-01-10T01:30:00")
    # 2024-03-31 02:30 does not exist in Berlin: runs at the first instant after the gap
    assert berlin.next_after(at("2024-03-30T12:00:00")) == at("2024-03-31T01:00:00")
    # 2024-10-27 02:30 happens twice: runs once
    fires = berlin.fires_between(at("2024-10-26T12:00:00"), at("2024-10-27T12:00:00"))
    assert len(fires) == 1


def test_fires_between_is_bounded() -> None:
    every_minute = Cron("* * * * *")
    fires = every_minute.fires_between(at("2020-01-01T00:00:00"), at("2024-01-01T00:00:00"))
    assert len(fires) == 1000 and fires[-1] == at("2024-01-01T00:00:00")


# -- inventory fields ------------------------------------------------------------

INVENTORY = """\
repositories:
  local: {url: "file:///tmp/dbfleet-test-repo"}
  offsite: {url: "file:///tmp/dbfleet-test-offsite"}
schedule:
  timezone: Europe/Berlin
  backup: "0 2 * * *"
  verify: "0 5 * * 0"
  prune: "0 4 * * 0"
  copy: "0 6 * * *"
serve:
  concurrency: 1
  job_timeout: 2h
  backoff: 30s
  missed_runs: skip
notifications:
  - type: webhook
    url: http://127.0.0.1:9/hook
  - type: slack
    url_env: SLACK_URL
  - type: email
    host: 127.0.0.1
    from: dbfleet@example.org
    to: [ops@example.org]
databases:
  notes:
    engine: sqlite
    path: /tmp/notes.db
    repository: local
    copy_to: [offsite]
    rpo: 26h
    rto: 30m
    schedule: {backup: "*/30 * * * *", verify: off, timeout: 90m, retries: 0}
  wiki:
    engine: sqlite
    path: /tmp/wiki.db
    repository: local
    schedule: {timezone: UTC}
"""


def load(text: str = INVENTORY) -> tuple[Any, Scheduling]:
    rest, taken = split_document(yaml.safe_load(text))
    return parse_inventory(rest), parse_scheduling(taken)


def test_scheduling_fields_parse() -> None:
    _inventory, scheduling = load()
    notes = scheduling.database("notes")
    assert notes.rpo == timedelta(hours=26) and notes.rto == timedelta(minutes=30)
    assert scheduling.serve.job_timeout == timedelta(hours=2)
    assert scheduling.serve.missed_runs == "skip"
    assert scheduling.effective_cron("notes", "backup") == ("*/30 * * * *", "Europe/Berlin")
    assert scheduling.effective_cron("notes", "verify") == (None, "Europe/Berlin")
    assert scheduling.effective_cron("wiki", "verify") == ("0 5 * * 0", "UTC")
    assert [c.type for c in scheduling.notifications] == ["webhook", "slack", "email"]
    assert scheduling.model_dump(by_alias=True)["serve"]["job_timeout"] == "2h"
    assert scheduling.serve.alert_repeat == timedelta(hours=24)
    assert parse_scheduling({"serve": {"alert_repeat": False}}).serve.alert_repeat is None


def test_build_jobs_resources_and_overrides() -> None:
    inventory, scheduling = load()
    jobs = {job.key: job for job in build_jobs(inventory, scheduling)}
    assert sorted(jobs) == [
        "backup:notes",
        "backup:wiki",
        "copy:notes",  # wiki has no copy_to: the default copy schedule does not apply
        "prune:local",
        "prune:offsite",
        "verify:wiki",
    ]
    backup = jobs["backup:notes"]
    assert backup.timeout == timedelta(minutes=90) and backup.retries == 0
    assert set(backup.resources) == {
        ("database:notes", True),
        ("repository:local", False),
        ("repository:offsite", False),
    }
    assert jobs["prune:local"].resources == (("repository:local", True),)
    assert jobs["backup:wiki"].timeout == timedelta(hours=2)
    assert jobs["backup:wiki"].retries == 3


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"schedule": {"backup": "0 2 * *"}}, "schedule.backup: invalid cron expression"),
        ({"serve": {"job_timeout": "soon"}}, "serve.job_timeout: invalid duration"),
        ({"serve": {"backoff": "0s"}}, "serve.backoff: must be longer than zero"),
        ({"serve": {"missed_runs": "all"}}, "serve.missed_runs"),
        ({"schedule": {"timezone": "Nowhere/Land"}}, "schedule.timezone: unknown time zone"),
        ({"notifications": [{"type": "slack", "url": "https://hooks.slack.com/x"}]}, "secret"),
        ({"notifications": [{"type": "webhook"}]}, "exactly one of url, url_env, url_file"),
        ({"notifications": [{"type": "pager", "url": "http://x"}]}, "notifications.0"),
        (
            {
                "notifications": [
                    {
                        "type": "email",
                        "host": "h",
                        "from": "a@b",
                        "to": ["c@d"],
                        "security": "none",
                        "username": "u",
                        "password_env": "P",
                    }
                ]
            },
            "without TLS",
        ),
        ({"databases": {"notes": {"rpo": "26 hours"}}}, "databases.notes.rpo: invalid duration"),
        ({"databases": {"notes": {"schedule": {"nightly": "0 2 * * *"}}}}, "unknown key"),
    ],
)
def test_scheduling_problems_have_paths(patch: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_scheduling(patch)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_durations() -> None:
    assert parse_span("1h30m") == timedelta(minutes=90)
    assert parse_span("90s") == timedelta(seconds=90)
    assert parse_span(45) == timedelta(seconds=45)
    assert parse_span("2d") == timedelta(days=2)
    assert format_span(timedelta(hours=26)) == "1d2h"
    assert format_span(parse_span("1w1m")) == "1w1m"
    for bad in ("1y", "m", "-5s", "1.5h", True):
        with pytest.raises(ValueError):
            parse_span(bad)


# -- planning --------------------------------------------------------------------


def job(key: str, cron: str = "0 2 * * *", *resources: tuple[str, bool], retries: int = 2) -> Job:
    kind, target = key.split(":")
    own = resources or ((f"database:{target}", True), ("repository:local", False))
    return Job(kind, target, Cron(cron), timedelta(hours=1), retries, own, target)


GRACE = timedelta(minutes=1)


def plan(
    jobs: list[Job],
    since: str,
    now: str,
    history: dict[str, History] | None = None,
    policy: str = "run-once",
) -> tuple[list[Due], list[Any]]:
    return due_jobs(
        jobs, since=at(since), now=at(now), history=history or {}, grace=GRACE, missed_runs=policy
    )


def test_on_time_fire_is_due() -> None:
    due, skipped = plan([job("backup:a")], "2024-01-01T01:59:59", "2024-01-01T02:00:01")
    assert [(d.job.key, d.scheduled_at, d.trigger) for d in due] == [
        ("backup:a", at("2024-01-01T02:00:00"), "schedule")
    ]
    assert skipped == []
    assert plan([job("backup:a")], "2024-01-01T02:00:01", "2024-01-01T02:00:02") == ([], [])


def test_several_fires_in_one_window_are_one_run() -> None:
    every_minute = job("backup:a", "* * * * *")
    due, _ = plan([every_minute], "2024-01-01T02:00:00", "2024-01-01T02:05:00")
    assert len(due) == 1
    assert due[0].scheduled_at == at("2024-01-01T02:05:00") and due[0].coalesced == 4


def test_missed_runs_run_once_or_skip() -> None:
    jobs = [job("backup:a"), job("verify:a", "0 3 * * *")]
    due, skipped = plan(jobs, "2024-01-01T02:00:05", "2024-01-04T10:00:00")
    assert [(d.job.key, d.scheduled_at, d.trigger, d.coalesced) for d in due] == [
        ("backup:a", at("2024-01-04T02:00:00"), "catch-up", 2),
        ("verify:a", at("2024-01-04T03:00:00"), "catch-up", 3),
    ]
    assert skipped == []
    due, skipped = plan(jobs, "2024-01-01T02:00:05", "2024-01-04T10:00:00", policy="skip")
    assert due == []
    assert [(s.job.key, s.scheduled_at) for s in skipped] == [
        ("backup:a", at("2024-01-04T02:00:00")),
        ("verify:a", at("2024-01-04T03:00:00")),
    ]
    assert "missed 3 scheduled run(s)" in skipped[0].reason


def test_a_fire_seen_in_the_catalog_never_runs_twice() -> None:
    history = {"backup:a": History(at("2024-01-04T02:00:00"), "ok")}
    assert plan([job("backup:a")], "2024-01-01T00:00:00", "2024-01-04T02:00:30", history) == (
        [],
        [],
    )


def test_grace_separates_on_time_from_missed() -> None:
    due, _ = plan([job("backup:a")], "2024-01-01T01:00:00", "2024-01-01T02:01:00")
    assert due[0].trigger == "schedule"
    due, _ = plan([job("backup:a")], "2024-01-01T01:00:00", "2024-01-01T02:01:01")
    assert due[0].trigger == "catch-up"


def test_interrupted_runs_run_once_more_on_start() -> None:
    jobs = [job("backup:a"), job("backup:b"), job("backup:c")]
    history = {
        "backup:a": History(at("2024-01-01T02:00:00"), "aborted"),
        "backup:b": History(at("2024-01-01T02:00:00"), "failed", last_will_retry=True),
        "backup:c": History(at("2024-01-01T02:00:00"), "failed"),
    }
    again = interrupted_jobs(jobs, history, "run-once")
    assert [(d.job.key, d.trigger) for d in again] == [
        ("backup:a", "catch-up"),
        ("backup:b", "catch-up"),
    ]
    assert interrupted_jobs(jobs, history, "skip") == []
    newer = Due(jobs[0], at("2024-01-02T02:00:00"), "catch-up")
    merged = merge_due(again, [newer])
    assert {d.job.key: d.scheduled_at for d in merged}["backup:a"] == at("2024-01-02T02:00:00")
    assert len(merged) == 2


def test_next_runs() -> None:
    runs = next_runs([job("backup:a", "0 */6 * * *")], at("2024-01-01T05:00:00"), 3)
    assert runs == {
        "backup:a": [
            at("2024-01-01T06:00:00"),
            at("2024-01-01T12:00:00"),
            at("2024-01-01T18:00:00"),
        ]
    }


NOW = at("2024-01-01T02:00:00")


def pending(j: Job, minute: int = 0, not_before: datetime | None = None) -> Pending:
    return Pending(j, NOW + timedelta(minutes=minute), "schedule", not_before=not_before)


def test_concurrency_limit_and_order() -> None:
    items = [pending(job(f"backup:db{i}"), minute=-i) for i in range(4)]
    chosen = startable(items, [], concurrency=2, now=NOW)
    assert [p.job.key for p in chosen] == ["backup:db3", "backup:db2"]  # oldest first
    assert startable(items, [job("backup:x")], concurrency=2, now=NOW)[0].job.key == "backup:db3"
    assert startable(items, [job("backup:x"), job("backup:y")], concurrency=2, now=NOW) == []


def test_one_job_per_database() -> None:
    backup, verify = job("backup:a"), job("verify:a")
    chosen = startable([pending(backup), pending(verify, 1)], [], concurrency=4, now=NOW)
    assert [p.job.key for p in chosen] == ["backup:a"]
    assert startable([pending(verify)], [backup], concurrency=4, now=NOW) == []


def test_prune_is_exclusive_and_keeps_its_place() -> None:
    prune = job("prune:local", "0 4 * * 0", ("repository:local", True))
    running_backup = job("backup:a")
    later_backup = job("backup:b")
    other_repo = job("backup:c", "0 2 * * *", ("database:c", True), ("repository:far", False))
    items = [pending(prune, 0), pending(later_backup, 1), pending(other_repo, 2)]
    chosen = startable(items, [running_backup], concurrency=4, now=NOW)
    # prune waits for the running backup; backup:b may not overtake the waiting prune
    assert [p.job.key for p in chosen] == ["backup:c"]
    chosen = startable(items, [], concurrency=4, now=NOW)
    assert [p.job.key for p in chosen] == ["prune:local", "backup:c"]


def test_retry_waits_for_its_time() -> None:
    retry = pending(job("backup:a"), not_before=NOW + timedelta(seconds=30))
    assert startable([retry], [], concurrency=1, now=NOW) == []
    assert startable([retry], [], concurrency=1, now=NOW + timedelta(seconds=30)) == [retry]


def test_retry_delay_doubles_up_to_the_maximum() -> None:
    delays = [retry_delay(n, timedelta(minutes=1), timedelta(minutes=10)) for n in range(1, 7)]
    assert [d.total_seconds() / 60 for d in delays] == [1, 2, 4, 8, 10, 10]
    assert retry_delay(10_000, timedelta(seconds=1), timedelta(hours=1)) == timedelta(hours=1)


def test_alerts_only_on_change_plus_reminders() -> None:
    t0 = at("2024-01-01T00:00:00")
    day = timedelta(days=1)
    state, action = alert_transition(None, "failing", bad="failing", now=t0, repeat=day)
    assert action == "raise" and state == AlertState("failing", t0, t0)
    state, action = alert_transition(
        state, "failing", bad="failing", now=t0 + timedelta(hours=1), repeat=day
    )
    assert action is None
    state, action = alert_transition(state, "failing", bad="failing", now=t0 + day, repeat=day)
    assert action == "remind" and state.since == t0 and state.notified_at == t0 + day
    _, action = alert_transition(state, "failing", bad="failing", now=t0 + 9 * day, repeat=None)
    assert action is None
    state, action = alert_transition(state, "ok", bad="failing", now=t0 + 2 * day, repeat=day)
    assert action == "clear" and state.state == "ok"
    state, action = alert_transition(state, "ok", bad="failing", now=t0 + 3 * day, repeat=day)
    assert action is None
    # a first check that finds everything fine says nothing
    assert alert_transition(None, "fresh", bad="stale", now=t0, repeat=day)[1] is None
