"""PgBouncer: a connection pool in the inventory, sampled for health only.

An entry ``engine: pgbouncer`` names the pool's admin console::

    databases:
      pool:
        engine: pgbouncer
        url: postgresql://stats@127.0.0.1:6432/pgbouncer
        password_env: PGBOUNCER_PASSWORD

It is not a database: backup, restore, verify and drill refuse it (exit 2),
and ``backup --all``, ``drill --all`` and the scheduler pass it by. Its
health sampler (:mod:`dbfleet.engines.pgbouncer.health`) reads ``SHOW
POOLS``, ``SHOW STATS`` and ``SHOW CONFIG``; the user needs to be in
``stats_users`` (or ``admin_users``).
"""
