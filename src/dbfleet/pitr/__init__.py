"""Point-in-time recovery: archiving of change logs and replay to a moment.

PostgreSQL (docs/pitr-postgresql.md):

- :mod:`dbfleet.pitr.pg_base`: physical base backups (``pg_basebackup``
  streamed into the repository) and WAL retention along the chain;
- :mod:`dbfleet.pitr.pg_wal`: the WAL archive (``wal-push`` /
  ``wal-fetch``);
- :mod:`dbfleet.pitr.pg_restore`: restore to a time, an LSN or the latest
  archived WAL into a new data directory, optionally starting a server.

The package itself imports nothing, so each engine's modules load alone.
"""
