"""What transaction pooling does to a Django connection, and why the settings loyalty/settings.py makes for
DATABASE_POOL_MODE=transaction are needed: one Django connection's consecutive transactions run on different
PostgreSQL sessions, so a server-side cursor or a prepared statement made in one is gone in the next. With the
production settings both work; the same steps with either setting undone fail (the controls), which shows the
pooler really switched sessions under them."""

import psycopg
import pytest
from django.db import DatabaseError

from members.models import Member
from tests.factories import MemberFactory

pytestmark = [pytest.mark.postgres, pytest.mark.pgbouncer, pytest.mark.django_db(transaction=True)]


def backend_pid(conn):
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_the_settings_for_transaction_pooling(pooled_settings, pgbouncer):
    """What loyalty/settings.py makes of DATABASE_POOL_MODE=transaction (docs/SCALING.md §3)."""
    default = pooled_settings["default"]
    assert pooled_settings["pool_mode"] == "transaction"
    assert default["PORT"] == pgbouncer.port
    assert default["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert default["OPTIONS"]["prepare_threshold"] is None
    assert default["CONN_MAX_AGE"] == 60
    assert default["CONN_HEALTH_CHECKS"] is True
    assert not default["OPTIONS"].get("server_side_binding")  # client-side binding: nothing to prepare at all


def test_one_django_connection_runs_its_transactions_on_different_server_sessions(django_connection, hold_server):
    conn = django_connection()
    first = backend_pid(conn)
    assert backend_pid(conn) == first  # alone, it gets back the session it just released (LIFO)
    holder = hold_server()  # another client's open transaction takes that session...
    assert holder.pid == first
    second = backend_pid(conn)  # ...so the same Django connection's next transaction runs on another one
    assert second != first
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s, %s)", [first, second])
        assert cursor.fetchone()[0] == 2  # two live server sessions of the same database behind one client
    holder.release()


def _iterate_across_a_session_switch(conn, hold_server):
    """QuerySet.iterator(chunk_size=2) on `conn` outside a transaction (a WITH HOLD server-side cursor unless
    DISABLE_SERVER_SIDE_CURSORS), with another client holding the session of its first chunk while the rest is
    fetched. The member numbers read."""
    rows = Member.objects.using(conn.alias).order_by("id").values_list("member_no", flat=True).iterator(chunk_size=2)
    read = [next(rows)]  # the first chunk: DECLARE (when server-side) and FETCH on one server session
    holder = hold_server()
    try:
        read += list(rows)  # the next chunks: a later transaction, on another session
    finally:
        holder.release()
    return read


def test_iterator_through_the_pooler_with_the_production_settings(django_connection, hold_server, store_a):
    members = sorted(MemberFactory.create_batch(5, home_store=store_a), key=lambda m: m.pk)
    conn = django_connection()
    assert _iterate_across_a_session_switch(conn, hold_server) == [m.member_no for m in members]


def test_control_a_server_side_cursor_is_lost_on_the_next_session(django_connection, hold_server, store_a):
    MemberFactory.create_batch(5, home_store=store_a)
    conn = django_connection(DISABLE_SERVER_SIDE_CURSORS=False)
    # The FETCH of the second chunk fails (Django's ProgrammingError), and so does the CLOSE after it (psycopg's).
    with pytest.raises((DatabaseError, psycopg.Error), match='cursor "_django_curs_.*" does not exist'):
        _iterate_across_a_session_switch(conn, hold_server)


def _same_statement_on_two_sessions(conn, hold_server):
    """One parametrised statement twice on `conn`, the second time on another server session than the first."""
    answers = []
    for number in range(2):
        with conn.cursor() as cursor:
            cursor.execute("SELECT %s::int + 1, pg_backend_pid()", [number])
            answers.append(cursor.fetchone())
        hold_server()  # holds the session just used until the end of the test
    return answers


def test_prepared_statements_stay_off_behind_the_pooler(django_connection, hold_server):
    """Server-side binding (the binding that could prepare) with the production prepare_threshold (None): the
    statement is never prepared, so it runs on any session."""
    conn = django_connection(OPTIONS={"server_side_binding": True})
    answers = _same_statement_on_two_sessions(conn, hold_server)
    assert [value for value, _ in answers] == [1, 2]
    assert answers[0][1] != answers[1][1]


def test_control_a_prepared_statement_is_lost_on_the_next_session(django_connection, hold_server):
    """The same with psycopg preparing at once (prepare_threshold=0): the second session has no such statement."""
    conn = django_connection(OPTIONS={"server_side_binding": True, "prepare_threshold": 0})
    with pytest.raises((DatabaseError, psycopg.Error), match="prepared statement .* does not exist"):
        _same_statement_on_two_sessions(conn, hold_server)
