"""Report reads on a read replica, when one is configured (REPLICA_DATABASE_URL: the `replica` alias).

Inside `report_reads()` (the report views enter it for their whole request) the ORM's reads go to `replica`;
everything else, and every write anywhere, goes to `default`. Without a `replica` alias the router answers None
and Django uses `default`, as before. Raw SQL in report code takes its connection from `report_connection()`.

A replica lags the primary by a little: report requests show the data as of a moment ago, which reports accept
(they read snapshots of past days and stored results); nothing that writes or must see its own writes reads there.
"""

import contextvars
from contextlib import contextmanager

from django.conf import settings
from django.db import connections

REPLICA_ALIAS = "replica"

_reading_reports = contextvars.ContextVar("loyalty_reading_reports", default=False)


def replica_configured():
    return REPLICA_ALIAS in settings.DATABASES


@contextmanager
def report_reads():
    """Send this block's ORM reads to the replica (when configured)."""
    token = _reading_reports.set(True)
    try:
        yield
    finally:
        _reading_reports.reset(token)


def reads_alias():
    """The alias report reads use now: `replica` inside report_reads() when configured, else `default`."""
    return REPLICA_ALIAS if _reading_reports.get() and replica_configured() else "default"


def report_connection():
    """The connection for raw SQL that only reads, in report code."""
    return connections[reads_alias()]


class ReportReplicaRouter:
    """settings.DATABASE_ROUTERS: reads inside report_reads() to the replica; writes and migrations on default."""

    def db_for_read(self, model, **hints):
        return REPLICA_ALIAS if _reading_reports.get() and replica_configured() else None

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the same data on both aliases

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"  # the replica follows the primary's schema by replication
