"""Schema migrations across the estate (issue #12): one plan, every engine.

Design (what later sessions extend without a rewrite)
=====================================================

Layers, top to bottom; each only calls the one below:

``cli/migrate.py``
    Parses, calls :mod:`dbfleet.migrate.run`, renders text or ``--json``.
:mod:`dbfleet.migrate.run`
    Orchestration: ``status``, ``plan``, ``up``, ``down``, ``validate``,
    ``baseline``. Engine-independent. Takes the per-database leases, the
    backup gate and pre-migration snapshot (:mod:`.gate`), runs phases in
    parallel (bounded), stops the plan at the first failure, rolls the failed
    database back, records the run in the job catalog.
:mod:`dbfleet.migrate.plan`
    The DAG of ``after`` edges (stdlib ``graphlib``) -> phases; pending,
    drift and target versions per database; the plan id.
:mod:`dbfleet.migrate.files`
    Discovery (``migrations/<database>/<version>_<name>.<ext>``), sections
    (``-- migrate:up|down|verify``, ``// migrate:`` for Cypher, JSON keys,
    Python functions), checksums (SHA-256 of the normalised raw file: LF, no
    BOM), ``${name}`` placeholders from ``migrations.vars``.
:mod:`dbfleet.migrate.lease`
    Waiting for a lease (``--lock-timeout``) and keeping it (a heartbeat
    thread); the lease itself is the engine's.
:mod:`dbfleet.migrate.lint`
    Destructive statements on every SQL engine (sqlglot), squawk for
    PostgreSQL.
:mod:`dbfleet.migrate.model`
    The data both sides share: :class:`~.model.Step` (what an engine runs),
    :class:`~.model.Applied` (a history row), :class:`~.model.StepFailed`.
Engines: ``engines/<engine>/migrations.py``
    The :class:`dbfleet.engines.base.Migrations` protocol, reached through
    :func:`dbfleet.engines.registry.migrations_for`. History lives in the
    database itself (``dbfleet_migrations``), so every backup carries it.
    SQL engines share :mod:`dbfleet.engines._shared.sql_migrations`.

Extension points left for later sessions
----------------------------------------
- More engines (MongoDB, Neo4j, Redis, Weaviate, InfluxDB, ClickHouse): a
  ``migrations.py`` in the engine package implementing the protocol (``split``
  turns a section into engine commands: JSON list items, Cypher statements,
  Redis lines), an ``Entry.migrations`` in the registry, and
  ``Capabilities.migrations=True``. Nothing above the protocol changes.
- ``rehearse``: :class:`~.run.Project` opens each database through
  ``migrations_for(inventory.databases[name])``; a rehearsal builds the
  Project over an inventory whose entries point at scratch targets restored
  from the latest snapshots (operations/drill.py has ``scratch_for``) and
  runs the same :func:`~.run.up` against them, then ``down`` and a
  fingerprint comparison.
- ``--atomic``: :class:`~.run.RunReport` holds, per database, the steps
  with their status (``applied``) and the pre-migration snapshot id
  (``snapshots``); an atomic rollback walks it in reverse phase order
  (``down``, or a restore of that snapshot) after ``up`` returns a failure.
- A plan-level lease: today ``up`` takes every pending database's lease, in
  name order, before it changes anything, which serialises overlapping
  plans; a lease in the repository (``repo/lock.py``) can be added in
  :class:`~.lease.Leases` without touching the engines.
- ``checks:`` are parsed into :class:`dbfleet.migrate.settings.CheckConfig`;
  their evaluation runs after the last phase (one query per engine through a
  future ``Migrations.query``).
- ``serve`` ``migrate:`` schedules call the same ``run`` functions.
- Python migrations (``up(ctx)``/``down(ctx)``) are discovered and
  checksummed; running them needs a per-engine ``ctx`` (not yet: ``up``
  refuses them with a clear error).
"""
