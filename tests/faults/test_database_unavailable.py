"""When the database makes a request wait too long or drops it, the API answers 503 `temporarily_unavailable` with a
Retry-After header (never a 500), and the request leaves nothing behind, so the client's retry with the same
order_no records the purchase once.

The web's PostgreSQL sessions get lock_timeout and statement_timeout (WEB_DB_LOCK_TIMEOUT_SECONDS,
WEB_DB_STATEMENT_TIMEOUT_SECONDS); connections opened outside a request (Celery workers, management commands, the
nightly jobs) run without them.
"""

import threading

import psycopg
import pytest
from django.db import InterfaceError, connection
from rest_framework.test import APIClient

from loyalty.credentials import create_api_client
from members.models import Purchase
from points.models import IdempotencyRecord, LedgerEntry, PointsAccount, PointsLot
from tests.conftest import ALL_SCOPES
from tests.factories import MemberFactory
from tests.faults.conftest import (
    assert_temporarily_unavailable,
    call,
    sessions,
    tables_written_by,
    terminate,
    wait_for,
)
from tiers.models import GrowthEntry

BODY = {"order_no": "T1", "amount": "129.90", "store": "A001"}
LOCK_ACCOUNT = "SELECT 1 FROM points_pointsaccount WHERE member_id = %s FOR UPDATE"


@pytest.fixture(autouse=True)
def _requests_end_before_the_flush(transactional_db):
    """A request a failed test left waiting finishes (its locks are released first) before the tables are
    emptied, so it cannot deadlock with the flush or leave rows for the next test."""
    yield
    while Request.started:
        Request.started.pop().join(60)


@pytest.fixture
def member(store_a):
    member = MemberFactory(home_store=store_a)
    PointsAccount.objects.create(member=member)
    return member


@pytest.fixture
def api_key(store_a):
    return create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)[1]


def pos(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    client.raise_request_exception = False  # an unhandled error is the 500 the client would see
    return client


def purchase_body(member):
    return {"member": str(member.pk), **BODY}


class Request(threading.Thread):
    """One API call in a thread of its own, on a database connection it opens inside the request (as a web worker
    does) and closes at the end."""

    started = []

    def __init__(self, call_api, wrapper=None):
        super().__init__(daemon=True)
        self.call_api, self.wrapper, self.response, self.error = call_api, wrapper, None, None
        self.started.append(self)
        self.start()

    def run(self):
        try:
            if self.wrapper:
                with connection.execute_wrapper(self.wrapper):
                    self.response = self.call_api()
            else:
                self.response = self.call_api()
        except BaseException as error:  # reported by result()
            self.error = error
        finally:
            connection.close()

    def result(self, timeout=30):
        self.join(timeout)
        assert not self.is_alive(), f"the request was still waiting after {timeout} s"
        if self.error:
            raise self.error
        return self.response


def assert_nothing_written(member):
    assert Purchase.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    assert LedgerEntry.objects.count() == 0
    assert PointsLot.objects.count() == 0
    assert GrowthEntry.objects.count() == 0
    account = PointsAccount.objects.get(member=member)
    assert (account.available, account.pending) == (0, 0)


def assert_recorded_once(member, response, status=201):
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response.json()["points"]["awarded"] == 129
    assert Purchase.objects.get().order_no == "T1"
    assert IdempotencyRecord.objects.get().status_code == 201
    assert LedgerEntry.objects.get().points == 129
    assert PointsAccount.objects.get(member=member).pending == 129


def waiting_on_a_lock(observer):
    return [s for s in sessions(observer) if s["wait_event_type"] == "Lock"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_purchase_stuck_behind_a_lock_answers_503_after_the_lock_timeout(member, api_key, row_lock, settings):
    settings.WEB_DB_LOCK_TIMEOUT_SECONDS = 0.3
    settings.WEB_DB_STATEMENT_TIMEOUT_SECONDS = 30
    lock = row_lock(LOCK_ACCOUNT, [member.pk])  # another transaction holds the member's account
    response = Request(lambda: pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json")).result()
    assert_temporarily_unavailable(response)
    assert_nothing_written(member)
    lock.release()
    assert_recorded_once(member, pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_timeout_under_contention_answers_503(member, api_key, row_lock, settings):
    settings.WEB_DB_LOCK_TIMEOUT_SECONDS = 0  # not set (the server's: none); the statement timeout cuts in
    settings.WEB_DB_STATEMENT_TIMEOUT_SECONDS = 0.3
    lock = row_lock(LOCK_ACCOUNT, [member.pk])
    response = Request(lambda: pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json")).result()
    assert_temporarily_unavailable(response)
    assert_nothing_written(member)
    lock.release()
    assert_recorded_once(member, pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_terminated_while_waiting_answers_503(member, api_key, row_lock, db_observer):
    lock = row_lock(LOCK_ACCOUNT, [member.pk])
    request = Request(lambda: pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"))
    blocked = wait_for(lambda: waiting_on_a_lock(db_observer), 30, message="the purchase to wait for the lock")
    assert terminate(db_observer, [blocked[0]["pid"]]) == 1
    assert_temporarily_unavailable(request.result())
    lock.release()
    assert_nothing_written(member)
    assert_recorded_once(member, pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"))


def in_pipeline(context):
    """Whether the request's statements are being sent without waiting for their answers (loyalty.batch's
    psycopg pipeline), so a statement's execute() returning does not mean it has run."""
    return context["connection"].connection.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF


def relations_locked_by(observer, pid, mode):
    rows = observer.execute(
        "SELECT DISTINCT relation::regclass::text FROM pg_locks WHERE pid = %s AND mode = %s AND locktype = 'relation'",
        [pid, mode],
    ).fetchall()
    return {name for (name,) in rows}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_between_two_statements_answers_503(member, api_key, db_observer):
    """The session dies while the request works in Python, its transaction open (claim written, account
    locked): the next statement finds the connection gone. The pause is before the first statement sent once the
    account lock's answer is in (on PostgreSQL the purchase's first statements go together, in a pipeline: their
    answers come when the last of them is sent and the first answer read)."""
    reached, resume, locked = threading.Event(), threading.Event(), threading.Event()

    def pause_once_the_account_is_locked(execute, sql, params, many, context):
        if locked.is_set() and not reached.is_set() and not in_pipeline(context):
            reached.set()
            resume.wait(30)
        result = execute(sql, params, many, context)
        if "points_pointsaccount" in sql and "FOR UPDATE" in sql:
            locked.set()
        return result

    request = Request(
        lambda: pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"),
        wrapper=pause_once_the_account_is_locked,
    )
    assert reached.wait(30), "the purchase never went on after locking the account"
    in_transaction = [s for s in sessions(db_observer) if s["state"] == "idle in transaction"]
    assert len(in_transaction) == 1
    pid = in_transaction[0]["pid"]
    assert "points_idempotencyrecord" in tables_written_by(db_observer, pid)  # the claim, written
    assert "points_pointsaccount" in relations_locked_by(db_observer, pid, "RowShareLock")  # FOR UPDATE, taken
    assert terminate(db_observer, [pid]) == 1
    wait_for(lambda: not [s for s in sessions(db_observer) if s["pid"] == pid], 30, message="the session to end")
    resume.set()
    assert_temporarily_unavailable(request.result())
    assert_nothing_written(member)
    assert_recorded_once(member, pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "sent",
    [
        "INSERT INTO points_idempotencyrecord",  # the first statement: the claim
        'FROM "points_deduction"',  # the last of the first statements, sent together on PostgreSQL
    ],
)
def test_a_connection_lost_while_answers_are_awaited_answers_503(member, api_key, db_observer, sent):
    """The session dies right after a statement was sent, before its answer was read (on PostgreSQL the purchase's
    first statements are sent together and answered when the pipeline is read or ends; the driver's errors there
    are mapped like a cursor's): 503, nothing written, and the retry records the purchase once."""
    cut = []

    def terminate_after_sending(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sent in sql and not cut:
            pid = context["connection"].connection.info.backend_pid
            assert terminate(db_observer, [pid]) == 1
            wait_for(
                lambda: not [s for s in sessions(db_observer) if s["pid"] == pid], 30, message="the session to end"
            )
            cut.append(pid)
        return result

    response = Request(
        lambda: pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"),
        wrapper=terminate_after_sending,
    ).result()
    assert cut, "the statement was never sent"
    assert_temporarily_unavailable(response)
    assert_nothing_written(member)
    assert_recorded_once(member, pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json"))


@pytest.mark.django_db(transaction=True)
def test_an_interface_error_answers_503(member, api_key):
    """The driver's "connection already closed" (InterfaceError) is an outage too, on any database."""

    def closed_at_the_claim(execute, sql, params, many, context):
        if "INSERT INTO points_idempotencyrecord" in sql:
            raise InterfaceError("connection already closed")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(closed_at_the_claim):
        response = pos(api_key).post("/api/v1/purchases/", purchase_body(member), format="json")
    assert_temporarily_unavailable(response)
    assert_nothing_written(member)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_web_timeouts_apply_only_to_connections_opened_for_a_request(member, api_key, settings):
    settings.WEB_DB_LOCK_TIMEOUT_SECONDS = 0.3
    settings.WEB_DB_STATEMENT_TIMEOUT_SECONDS = 0.2

    def read_then_show():
        response = pos(api_key).get(f"/api/v1/members/{member.pk}/points/")
        with connection.cursor() as cursor:  # the connection the request opened, still open
            cursor.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
            return response.status_code, cursor.fetchone()

    assert Request(read_then_show).result() == (200, ("300ms", "200ms"))
    # A connection opened outside a request, as a Celery worker's or a management command's (the nightly jobs):
    # no timeouts, so a statement longer than the web's limit runs to its end.
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        assert cursor.fetchone() == ("0", "0")
        cursor.execute("SELECT pg_sleep(0.4)")


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_server_takes_its_timeouts_from_the_environment(member, api_key, row_lock, start_gunicorn):
    server = start_gunicorn(WEB_DB_LOCK_TIMEOUT_SECONDS=0.5)
    headers = {"Authorization": f"Api-Key {api_key}"}
    lock = row_lock(LOCK_ACCOUNT, [member.pk])
    answer = call(server.port, "POST", "/api/v1/purchases/", purchase_body(member), headers)
    assert answer.status == 503, answer
    assert answer.body["code"] == "temporarily_unavailable"
    assert int(answer.headers["retry-after"]) >= 1
    assert_nothing_written(member)
    lock.release()
    answer = call(server.port, "POST", "/api/v1/purchases/", purchase_body(member), headers)
    assert answer.status == 201, answer
    assert answer.body["points"]["awarded"] == 129
    assert PointsAccount.objects.get(member=member).pending == 129
