"""Scheduling: ``dbfleet serve`` runs the inventory's cron schedules.

Modules (imported on their own; this package imports nothing so that
:mod:`dbfleet.config` can import :mod:`dbfleet.schedule.config` without a cycle):

- ``config``: the inventory fields (``schedule``, ``rpo``, ``rto``, ``serve``,
  ``notifications``) as pydantic models;
- ``cron``: cron expressions (cronsim) in a time zone;
- ``core``: the plain, clock-injected planning functions (which jobs exist,
  which are due, what may start now, retry delays);
- ``worker``: one job in a child process (``python -m dbfleet.schedule.worker``);
- ``runner``: starting, watching, timing out and stopping those processes;
- ``service``: the loop that ties them to the catalog and notifications.
"""
