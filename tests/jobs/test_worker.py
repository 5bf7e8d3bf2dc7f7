"""A real Celery worker on a real Redis broker: a job sent through the broker completes and is recorded; a worker
killed with SIGKILL mid-job and started again finishes the job with nothing done twice; with Redis down (stopped,
or hung: its port open but nothing answering), the API's writes still succeed quickly (no request hangs on the
broker).

Each test starts its own redis-server, and workers where it needs them (tests/jobs/conftest.py), on the test
database: the worker tests are transactional (the workers must see the committed rows). PostgreSQL only (chunks
are taken with SKIP LOCKED).
"""

import dataclasses
import signal
import time
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from loyalty import scheduling
from loyalty.messaging import send_message
from loyalty.models import JobChunk, JobRun, JobStatus, Message, MessageStatus
from loyalty.tasks import dispatch_job
from members.models import Member
from points.audit import ledger_mismatches
from points.models import EntryKind, LedgerEntry, LotStatus, PointsAccount, PointsLot, Purchase
from tests.factories import MemberFactory
from tests.jobs.conftest import RedisServer, sending_to, wait_for
from tests.points.helpers import adjust

pytestmark = pytest.mark.postgres

SHANGHAI = ZoneInfo("Asia/Shanghai")
MEMBERS = 60
CHUNK_SIZE = 10  # 60 members with consecutive ids: 6 chunks
POINTS = 100
VISIBILITY_TIMEOUT = 3  # seconds before Redis gives a dead worker's unacknowledged task to another worker


@pytest.fixture
def expiring(store_a):
    """MEMBERS members, each with one lot of POINTS earned long ago; returns the date they all expire on."""
    with time_machine.travel(datetime(2024, 3, 1, 12, tzinfo=SHANGHAI), tick=False):
        for _ in range(MEMBERS):
            adjust(MemberFactory(home_store=store_a), POINTS)
    last = PointsLot.objects.aggregate(last=Max("expires_at"))["last"]
    return timezone.localdate(last)


@pytest.fixture
def small_chunks(monkeypatch):
    """Plan expire_points in chunks of CHUNK_SIZE members. The plan is made where the job is dispatched (here);
    the workers only run the chunk ids they are sent."""
    definition = scheduling.job("expire_points")
    monkeypatch.setitem(scheduling._jobs, "expire_points", dataclasses.replace(definition, chunk_size=CHUNK_SIZE))


def expected_chunks():
    ids = PointsLot.objects.aggregate(low=Min("member_id"), high=Max("member_id"))
    return -(-(ids["high"] - ids["low"] + 1) // CHUNK_SIZE)


def wait_until_done(run, timeout, workers=()):
    def done():
        run.refresh_from_db()
        if run.status == JobStatus.FAILED:
            raise AssertionError(f"the run failed: {run.error}")
        return run.status == JobStatus.DONE

    try:
        wait_for(done, timeout, interval=0.1, message=f"{run.job} to be done")
    except AssertionError as error:
        logs = "\n".join(worker.log()[-3000:] for worker in workers)
        raise AssertionError(f"{error}; chunks done {run.chunks_done}/{run.chunks_total}\n{logs}") from None


def assert_expired_once_each(run, members=MEMBERS):
    """The run's record and the ledger agree: every member's lot expired, by one entry, once."""
    assert run.status == JobStatus.DONE and run.error == ""
    assert run.counts == {"members": members, "points": members * POINTS}
    chunks = list(run.chunks.values_list("status", "attempts"))
    assert run.chunks_done == run.chunks_total == len(chunks) == expected_chunks() > 1
    assert set(chunks) == {(JobStatus.DONE, 1)}  # each chunk's work committed once
    entries = LedgerEntry.objects.filter(kind=EntryKind.EXPIRE)
    assert entries.count() == members
    per_member = entries.values("member_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert set(per_member) == {1}
    assert set(entries.values_list("points", "reference")) == {(-POINTS, f"expiry:{run.business_date}")}
    assert set(PointsLot.objects.values_list("status", "remaining")) == {(LotStatus.EXPIRED, 0)}
    assert set(PointsAccount.objects.values_list("available", "lifetime_expired")) == {(0, POINTS)}
    assert list(ledger_mismatches()) == []


# --- a job through the broker -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_job_sent_through_the_broker_completes_and_is_recorded(expiring, small_chunks, start_worker):
    worker = start_worker()

    run = dispatch_job("expire_points", expiring, triggered_by="test")

    assert run.chunks_total == expected_chunks()
    wait_until_done(run, 60, [worker])
    assert_expired_once_each(run)
    assert run.triggered_by == "test" and run.finished_at is not None


# --- a worker killed mid-job ------------------------------------------------------------------------------------


def chunk_in_flight(max_age):
    """A worker's transaction holding a chunk (taken, in the pause before its work) for less than `max_age` s."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state = 'idle in transaction' AND query LIKE %s AND clock_timestamp() - xact_start < %s",
            ["%loyalty_jobchunk%FOR UPDATE SKIP LOCKED%", f"{max_age} seconds"],
        )
        return cursor.fetchone()[0]


def open_transactions():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE %s",
            ["idle in transaction%"],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_and_started_again_finishes_it_with_nothing_done_twice(
    expiring, small_chunks, start_worker
):
    # Each chunk pauses 1 s after taking its chunk and before its work, so the kill lands inside a chunk.
    env = {"JOB_CHUNK_PAUSE_SECONDS": 1, "CELERY_VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT}
    first = start_worker(**env)
    run = dispatch_job("expire_points", expiring, triggered_by="test")
    assert run.chunks_total == expected_chunks() >= 5

    def two_done_and_one_taken():
        done = JobChunk.objects.filter(run=run, status=JobStatus.DONE).count()
        return done >= 2 and chunk_in_flight(max_age=0.5)

    wait_for(two_done_and_one_taken, 30, interval=0.02, message="two chunks done and a third taken")
    first.kill()
    killed_at = time.monotonic()

    # PostgreSQL rolls the killed chunk back: it is not done and none of its members' points expired.
    wait_for(lambda: open_transactions() == 0, 10, message="the killed worker's transaction to end")
    done = JobChunk.objects.filter(run=run, status=JobStatus.DONE)
    assert 2 <= done.count() < run.chunks_total
    expired_so_far = sum(counts["members"] for counts in done.values_list("counts", flat=True))
    assert LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).count() == expired_so_far < MEMBERS
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING

    # The killed chunk's task was never acknowledged: once it has been out longer than the visibility timeout,
    # the next worker to start takes it back from Redis, with the tasks still queued.
    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
    second = start_worker(**env)
    wait_until_done(run, 60, [first, second])

    assert_expired_once_each(run)


# --- Redis restarted or down ------------------------------------------------------------------------------------
# These run in the test's transaction: what is sent after commit is sent when the capture block ends.

QUICK = 3  # seconds: a write with Redis stopped (connection refused at once), or one that does not use Redis
HUNG = 10  # seconds: a write that sends a task while Redis hangs (settings: 2 s socket timeouts, one retry: ~6 s)


class Hung(BaseException):
    """Raised into a block that overran its bound; not an Exception, so no `except Exception` swallows it."""


@contextmanager
def within(bound):
    """Fail unless the block ends in under `bound` seconds; a block that hangs is interrupted after bound + 10 s
    (SIGALRM), so a hang fails the test instead of blocking the run."""

    def interrupt(signum, frame):
        raise Hung(f"still waiting after {bound + 10} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, bound + 10)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.monotonic() - started
    assert elapsed < bound, f"took {elapsed:.1f} s (bound {bound} s)"


def break_redis(server, how):
    if how == "stopped":
        server.stop()
    else:
        server.freeze()
    return QUICK if how == "stopped" else HUNG


@pytest.fixture
def redis_down_everywhere(redis_server):
    """Our Redis as the broker and the cache (as in production), stopped or hung by the test."""
    cache = {
        "default": {
            **settings.CACHES["default"],
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    with sending_to(redis_server.url) as app, override_settings(CACHES=cache):
        with app.producer_or_acquire() as producer:  # a pooled broker connection, made while Redis was up
            producer.connection.ensure_connection(max_retries=1)
        yield redis_server


def queued(server):
    with server.client() as client:
        return client.llen("celery")


@pytest.mark.django_db
def test_after_redis_restarts_the_next_task_is_sent_on_a_new_connection(
    broker, member_a, django_capture_on_commit_callbacks
):
    """The short timeouts and the single publish retry still reconnect a pooled connection Redis dropped."""
    with django_capture_on_commit_callbacks(execute=True):
        send_message(channel="sms", kind="notice", recipient=member_a.phone, body="1", immediate=False)
    assert queued(broker) == 1
    broker.restart()

    with within(QUICK), django_capture_on_commit_callbacks(execute=True):
        send_message(channel="sms", kind="notice", recipient=member_a.phone, body="2", immediate=False)

    assert queued(broker) == 1  # the new server's queue: the task sent after the restart


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_with_redis_down_api_writes_succeed_quickly(how, redis_down_everywhere, admin_api, pos_a, store_a):
    break_redis(redis_down_everywhere, how)  # these writes do not need Redis: quick even when it hangs

    with within(QUICK):
        registered = admin_api.post("/api/v1/members/", {"phone": "13800138077", "store": "A001"}, format="json")
    assert registered.status_code == 201, registered.content
    member = Member.objects.get(phone="+8613800138077")
    with within(QUICK):
        bought = pos_a.post(
            "/api/v1/purchases/", {"member": str(member.pk), "order_no": "W1", "amount": "88.00"}, format="json"
        )
    assert bought.status_code == 201, bought.content
    assert Purchase.objects.filter(order_no="W1").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_with_redis_down_staff_can_still_log_in(how, redis_down_everywhere, admin_user):
    """The login rate limit counts in the cache: with the cache down it lets the request through."""
    bound = break_redis(redis_down_everywhere, how)
    with within(bound):
        response = APIClient().post(
            "/api/v1/auth/staff-token",
            {"username": admin_user.username, "password": "correct horse battery"},
            format="json",
        )
    assert response.status_code == 201, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_with_redis_down_a_message_for_the_workers_is_kept_and_control_returns(
    how, redis_down_everywhere, member_a, django_capture_on_commit_callbacks
):
    bound = break_redis(redis_down_everywhere, how)

    with within(bound), django_capture_on_commit_callbacks(execute=True):
        message = send_message(
            channel="sms", kind="notice", recipient=member_a.phone, body="Hello", member=member_a, immediate=False
        )  # sent to the workers after commit

    # The broker was unreachable: the message stays queued for a later sweep, and the write was not undone.
    assert Message.objects.get(pk=message.pk).status == MessageStatus.QUEUED


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_with_redis_down_dispatching_a_job_returns_quickly_and_the_run_resumes_later(
    how, redis_down_everywhere, expiring, small_chunks, django_capture_on_commit_callbacks
):
    bound = break_redis(redis_down_everywhere, how)

    # A broker error is logged, not raised (the plan is committed first), and sending stops at the first
    # failure: a hung broker costs one publish timeout, not one per chunk.
    with within(bound), django_capture_on_commit_callbacks(execute=True):
        run = dispatch_job("expire_points", expiring, triggered_by="test")

    run.refresh_from_db()
    assert (run.status, run.chunks_done, run.chunks_total) == (JobStatus.RUNNING, 0, expected_chunks())
    assert not LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).exists()

    # With a broker back, dispatching again sends every unfinished chunk (nothing lost, nothing doubled).
    back = RedisServer()
    try:
        with sending_to(back.url), django_capture_on_commit_callbacks(execute=True):
            again = dispatch_job("expire_points", expiring, triggered_by="test")
        assert again.pk == run.pk
        assert queued(back) == run.chunks_total
    finally:
        back.stop()


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_with_redis_down_recomputing_a_rule_tag_through_the_api_succeeds_quickly(
    how, redis_down_everywhere, marketer_api, member_a, django_capture_on_commit_callbacks
):
    created = marketer_api.post(
        "/api/v1/tags/", {"code": "all", "name": "All", "kind": "rule", "rule": {"gender": "female"}}, format="json"
    )
    assert created.status_code == 201, created.content
    bound = break_redis(redis_down_everywhere, how)

    with within(bound), django_capture_on_commit_callbacks(execute=True):
        response = marketer_api.post("/api/v1/tags/all/recompute/")

    assert response.status_code == 202, response.content
    run = JobRun.objects.get(pk=response.json()["id"])
    assert (run.job, run.status, run.chunks_total) == ("rule_tags", JobStatus.RUNNING, 1)
