"""A gunicorn worker killed (SIGKILL) in the middle of a purchase: the client gets no answer, retries with the same
order_no, and gets either the original result (the purchase had committed) or the purchase created then, once.
Nothing the dead worker had written without committing survives.
"""

import importlib
import threading

import pytest
from django.apps import apps

from loyalty.credentials import create_api_client
from members.models import Purchase
from points.models import IdempotencyRecord, LedgerEntry, PointsAccount, PointsLot
from tests.conftest import ALL_SCOPES
from tests.factories import MemberFactory
from tests.faults.conftest import call, observer, sessions, tables_written_by, wait_for
from tiers.models import GrowthEntry, MemberTier

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def default_ladder():
    """Transactional tests start from emptied tables: put back the tier ladder and growth policy the migration
    makes (a purchase then books growth and updates the member's tier row)."""
    importlib.import_module("tiers.migrations.0002_default_ladder").create_ladder(apps, None)


@pytest.fixture
def shop(default_ladder, store_a):
    key = create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)[1]
    return {"member": MemberFactory(home_store=store_a), "headers": {"Authorization": f"Api-Key {key}"}}


def order(member, order_no, amount="100.00"):
    return {"member": str(member.pk), "order_no": order_no, "amount": amount, "store": "A001"}


def post(server, shop, body, timeout=60):
    return call(server.port, "POST", "/api/v1/purchases/", body, shop["headers"], timeout=timeout)


class Post(threading.Thread):
    def __init__(self, server, shop, body):
        super().__init__(daemon=True)
        self.server, self.shop, self.body, self.answer = server, shop, body, None
        self.start()

    def run(self):
        self.answer = post(self.server, self.shop, self.body)

    def result(self, timeout=90):
        self.join(timeout)
        assert not self.is_alive(), f"no answer after {timeout} s"
        return self.answer


def assert_once(member, order_no, points):
    purchase = Purchase.objects.get(order_no=order_no)
    assert purchase.points_awarded == points
    assert LedgerEntry.objects.filter(reference=order_no).count() == 1
    assert PointsLot.objects.filter(purchase=purchase).count() == 1
    assert GrowthEntry.objects.filter(reference=f"purchase:{purchase.pk}").count() == 1
    assert IdempotencyRecord.objects.get(key=order_no).status_code == 201
    return purchase


WAIT_KEY = 7_340_014  # the advisory lock the purchase's last statement waits for (wait_before_the_answer)


@pytest.fixture
def wait_before_the_answer(transactional_db):
    """A trigger, for this test only: a purchase storing its answer for retries (the UPDATE of its idempotency
    record, its last statement before COMMIT on every path) first takes a shared advisory lock, so a test holding
    that lock stops the purchase there, everything else written and uncommitted. Dropped at the end."""
    with observer() as conn:
        conn.execute(  # OR REPLACE / IF EXISTS: a run killed before its clean-up left them in a kept test database
            "CREATE OR REPLACE FUNCTION faults_wait_before_the_answer() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({WAIT_KEY}); RETURN NEW; END $$"
        )
        conn.execute("DROP TRIGGER IF EXISTS faults_wait_before_the_answer ON points_idempotencyrecord")
        conn.execute(
            "CREATE TRIGGER faults_wait_before_the_answer BEFORE UPDATE OF response ON points_idempotencyrecord "
            "FOR EACH ROW EXECUTE FUNCTION faults_wait_before_the_answer()"
        )
    try:
        yield
    finally:
        with observer() as conn:
            conn.execute("DROP TRIGGER faults_wait_before_the_answer ON points_idempotencyrecord")
            conn.execute("DROP FUNCTION faults_wait_before_the_answer()")


def test_a_worker_killed_while_its_purchase_waits_in_the_database_leaves_nothing(
    wait_before_the_answer, start_gunicorn, shop, row_lock, db_observer
):
    member = shop["member"]
    server = start_gunicorn(workers=1, threads=4)
    assert post(server, shop, order(member, "K0")).status == 201  # her tier row exists from now on
    # Hold the lock the trigger waits for: the next purchase claims the order, writes it, locks her tier row, writes
    # its ledger entry, lot and growth, updates her tier row, then waits in its last statement (its balances and
    # its answer for retries), before COMMIT. (A lock the purchase takes early, such as her tier row, which it now
    # locks before writing its entries, would stop it before most of its writes.)
    answer_lock = row_lock("SELECT pg_advisory_xact_lock(%s)", [WAIT_KEY])
    first = Post(server, shop, order(member, "K1"))
    [held] = wait_for(
        lambda: [s for s in sessions(db_observer, server.application_name) if s["wait_event_type"] == "Lock"],
        30,
        message="the purchase to wait before storing its answer",
    )
    assert {
        "members_purchase",
        "points_ledgerentry",
        "points_pointslot",
        "tiers_growthentry",
        "tiers_membertier",
        "points_idempotencyrecord",
    } <= tables_written_by(db_observer, held["pid"])
    [worker] = server.worker_pids()
    server.kill_worker(worker)
    assert first.result().status == 0  # no answer: the connection broke

    # The retry reaches a new worker while the dead one's transaction still holds the order's claim: it waits.
    retry = Post(server, shop, order(member, "K1"))
    wait_for(
        lambda: [
            s
            for s in sessions(db_observer, server.application_name)
            if s["wait_event_type"] == "Lock" and s["pid"] != held["pid"]
        ],
        60,
        message="the retry to wait on the dead worker's claim",
    )
    answer_lock.release()  # the dead worker's session ends, its transaction rolled back; the retry goes on
    answer = retry.result()
    assert answer.status == 201, answer
    assert "idempotent-replayed" not in answer.headers
    purchase = assert_once(member, "K1", 100)
    assert answer.body["id"] == str(purchase.pk)
    assert Purchase.objects.count() == 2
    assert PointsAccount.objects.get(member=member).pending == 200
    assert MemberTier.objects.get(member=member).window_growth == 2 * (100 + 10)  # 1 per CNY + 10 per order
    assert [s["pid"] for s in sessions(db_observer) if s["pid"] == held["pid"]] == []


def test_a_worker_killed_after_its_purchase_committed_replays_the_original(start_gunicorn, shop, db_observer):
    """The purchase commits, then the worker dies before its answer is read: the retry gets the original."""
    member = shop["member"]
    server = start_gunicorn(workers=1, threads=4)
    assert post(server, shop, order(member, "K0")).status == 201
    lost = Post(server, shop, order(member, "K1", amount="250.00"))
    wait_for(lambda: Purchase.objects.filter(order_no="K1").exists(), 30, message="the purchase to commit")
    [worker] = server.worker_pids()
    server.kill_worker(worker)
    lost.result()  # whatever reached the client before the kill is dropped: the client treats it as lost

    answer = post(server, shop, order(member, "K1", amount="250.00"))
    assert answer.status == 200, answer
    assert answer.headers["idempotent-replayed"] == "true"
    purchase = assert_once(member, "K1", 250)
    assert answer.body["id"] == str(purchase.pk)
    assert answer.body["points"]["awarded"] == 250
    assert PointsAccount.objects.get(member=member).pending == 350
    assert post(server, shop, order(member, "K1", amount="251.00")).body["code"] == "idempotency_conflict"
