"""loyalty.backends.postgresql: the health check at a request's first query (CONN_HEALTH_CHECKS) polls the
connection's socket and sends Django's `SELECT 1` only when something waits there or psycopg knows the connection
is not idle. A connection whose session the server ended is still found and replaced before the request's query;
a healthy idle one costs no round trip. (Through PgBouncer, KILL of its clients: tests/pooling/test_money_paths.py.)"""

import time
from contextlib import contextmanager
from unittest import mock

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections
from django.db.backends.postgresql import base as django_base

from loyalty.backends.postgresql import base

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_settings_use_the_backend():
    assert settings.DATABASES["default"]["ENGINE"] == "loyalty.backends.postgresql"
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True
    assert isinstance(connections["default"], base.DatabaseWrapper)
    assert isinstance(connections["default"], django_base.DatabaseWrapper)  # Django's backend, one method changed


@contextmanager
def own_connection():
    """A persistent connection of the test's own to the test database, with the health check on, as a
    request-serving thread holds one between requests; closed at the end."""
    wrapper = base.DatabaseWrapper(
        {**connections["default"].settings_dict, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True}, alias="probe"
    )
    wrapper.ensure_connection()
    try:
        yield wrapper
    finally:
        wrapper.close()


def backend_pid(wrapper):
    with wrapper.cursor() as cursor:  # Django's cursor(): the health check runs first, as at a request's start
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_readable(raw):
    """The server's message travels to our socket asynchronously: wait (briefly) until it is there."""
    deadline = time.monotonic() + 5
    while base.socket_quiet(raw):
        assert time.monotonic() < deadline, "nothing arrived on the socket"
        time.sleep(0.01)


def next_request(wrapper):
    """What Django does between two requests of a thread (close_old_connections at request_started/finished)."""
    wrapper.close_if_unusable_or_obsolete()
    assert wrapper.connection is not None and wrapper.health_check_done is False


def test_a_healthy_idle_connection_is_checked_without_a_round_trip():
    with own_connection() as wrapper:
        first = backend_pid(wrapper)
        next_request(wrapper)
        with mock.patch.object(django_base.DatabaseWrapper, "is_usable", side_effect=AssertionError("round trip")):
            assert backend_pid(wrapper) == first
        assert wrapper.health_check_done is True


def test_a_session_the_server_ended_is_replaced_before_the_requests_query():
    with own_connection() as wrapper:
        first = backend_pid(wrapper)
        next_request(wrapper)
        with connection.cursor() as cursor:  # the server ends it between two requests (a restart, an admin)
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])
            assert cursor.fetchone()[0] is True
        old = wrapper.connection
        wait_until_readable(old)
        checks = []
        django_is_usable = django_base.DatabaseWrapper.is_usable

        def is_usable(self):
            checks.append(django_is_usable(self))
            return checks[-1]

        with mock.patch.object(django_base.DatabaseWrapper, "is_usable", is_usable):
            second = backend_pid(wrapper)  # no error: the check saw the FATAL message / end of file
        assert second != first
        assert wrapper.connection is not old and old.closed
        assert checks == [False]  # Django's SELECT 1 decided, and it failed


def test_a_readable_socket_falls_back_to_select_1_and_keeps_a_live_connection():
    with own_connection() as wrapper:
        with wrapper.cursor() as cursor:
            cursor.execute("LISTEN probe_channel")
        first = backend_pid(wrapper)
        with connection.cursor() as cursor:
            cursor.execute("NOTIFY probe_channel")  # an unsolicited message waits on the socket: not quiet
        next_request(wrapper)
        wait_until_readable(wrapper.connection)
        assert backend_pid(wrapper) == first  # SELECT 1 answered: the same session goes on


def test_socket_quiet_is_false_unless_the_connection_is_idle_and_open():
    with own_connection() as wrapper:
        raw = wrapper.connection
        assert base.socket_quiet(raw) is True
        raw.autocommit = False
        with raw.cursor() as cursor:
            cursor.execute("SELECT 1")  # a transaction left open: not idle
        assert raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert base.socket_quiet(raw) is False
        raw.rollback()
        raw.autocommit = True
        assert base.socket_quiet(raw) is True
        raw.close()
        assert base.socket_quiet(raw) is False
