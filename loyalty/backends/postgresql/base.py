"""Django's PostgreSQL backend (psycopg 3) with a connection health check that costs no round trip when the
connection is idle and its socket is quiet (docs/SCALING.md, "Persistent connections and their health check").

Django's check (CONN_HEALTH_CHECKS) sends `SELECT 1` at the start of every request that uses a persistent
connection: 13.6 % of a points summary read's Python time under load (bench/RESULTS.md). Here the check first
asks the operating system whether anything is waiting on the connection's socket (poll with no timeout). An idle
healthy connection has nothing to read: every reply of the last statement was consumed, and this service neither
LISTENs nor leaves results unread. Whatever ends a session from the other side makes the socket readable: the
server closing it (pg_terminate_backend, a restart, idle_session_timeout: a FATAL message then end of file),
PgBouncer dropping its clients (KILL, a restart), a reset by the peer's kernel. Then, and whenever psycopg already
knows the connection is closed or broken or outside an idle transaction state, Django's own `SELECT 1` decides,
exactly as before. What neither check can see up front is a connection lost silently in the network (no FIN, no
RST): `SELECT 1` would wait for TCP to give up as the request's first statement does; that request fails with 503
(loyalty.api.database_unavailable) and Django drops the connection after it, as it drops one that breaks after
the check."""

import select

import psycopg
from django.db.backends.postgresql import base
from psycopg import pq

_IDLE = pq.TransactionStatus.IDLE


def socket_quiet(connection):
    """True when `connection` (a psycopg Connection) is open, idle, not broken, and nothing waits to be read on
    its socket; False when any of that is not known to hold (the caller then does the round trip)."""
    if connection.closed or connection.broken:
        return False
    pgconn = connection.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != _IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, AttributeError, psycopg.Error):  # no socket any more; no poll() on this system
        return False


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        """The check at a request's first query (CONN_HEALTH_CHECKS): no round trip when the socket is quiet.
        Django's other use of is_usable(), after an error in the previous request, keeps its `SELECT 1`."""
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and socket_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
