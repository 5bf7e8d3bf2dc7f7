"""Real concurrency on PostgreSQL: threads with their own connections hit the API at the same moment."""

import threading
from collections import Counter

import pytest
from django.db import connection

from points.models import LedgerEntry, PointsAccount, Purchase, Redemption, Reward
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import adjust, assert_ledger_consistent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 30


def run_together(count, request):
    """Call request(index) from `count` threads released at once; return the responses in index order."""
    barrier, responses = threading.Barrier(count), [None] * count

    def worker(index):
        try:
            barrier.wait()
            responses[index] = request(index)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def outcome(response):
    return response.status_code if response.status_code < 400 else response.json()["code"]


def test_thirty_redemptions_that_the_balance_covers_ten_times(api, store_a):
    member = MemberFactory(home_store=store_a)
    adjust(member, 1000)
    reward = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100)
    responses = run_together(
        THREADS,
        lambda i: api().post(
            "/api/v1/redemptions/",
            {"member": str(member.pk), "reward": str(reward.pk)},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"k{i}",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: 10, "insufficient_points": 20}
    assert PointsAccount.objects.get(member=member).available == 0
    assert Redemption.objects.count() == 10
    assert_ledger_consistent()


def test_stock_holds_under_concurrent_redemptions_by_different_members(api, store_a):
    members = MemberFactory.create_batch(THREADS, home_store=store_a)
    for member in members:
        adjust(member, 100)
    reward = Reward.objects.create(code="bag", name="Bag", kind="gift", cost_points=100, stock=10)
    responses = run_together(
        THREADS,
        lambda i: api().post(
            "/api/v1/redemptions/",
            {"member": str(members[i].pk), "reward": str(reward.pk)},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"k{i}",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: 10, "out_of_stock": 20}
    assert Reward.objects.get().stock == 0
    spent = sorted(PointsAccount.objects.values_list("available", flat=True))
    assert spent == [0] * 10 + [100] * 20
    assert_ledger_consistent()


def test_per_member_limit_holds_under_concurrency(api, store_a):
    member = MemberFactory(home_store=store_a)
    adjust(member, 100_000)
    reward = Reward.objects.create(code="cup", name="Cup", kind="coupon", cost_points=10, per_member_limit=3)
    responses = run_together(
        THREADS,
        lambda i: api().post(
            "/api/v1/redemptions/",
            {"member": str(member.pk), "reward": str(reward.pk)},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"k{i}",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: 3, "limit_reached": 27}
    assert PointsAccount.objects.get(member=member).available == 100_000 - 30
    assert len({r.json()["code"] for r in responses if r.status_code == 201}) == 3  # distinct coupon codes
    assert_ledger_consistent()


def test_concurrent_negative_adjustments_never_go_below_zero(store_a):
    member = MemberFactory(home_store=store_a)
    adjust(member, 1000)
    token_user = StaffUserFactory(username="boss-c", role="admin")
    from tests.conftest import staff_client

    clients = [staff_client(token_user) for _ in range(THREADS)]
    responses = run_together(
        THREADS,
        lambda i: clients[i].post(
            f"/api/v1/members/{member.pk}/points/adjustments/",
            {"points": -100, "reason": "correction"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"adj{i}",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: 10, "insufficient_points": 20}
    assert PointsAccount.objects.get(member=member).available == 0
    assert_ledger_consistent()


def test_concurrent_deductions_never_go_below_zero(api, store_a):
    member = MemberFactory(home_store=store_a)
    adjust(member, 1000)
    responses = run_together(
        THREADS,
        lambda i: api().post(
            f"/api/v1/members/{member.pk}/points/deductions/",
            {"order_no": f"D{i}", "points": 100, "amount": "100.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"ded{i}",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: 10, "insufficient_points": 20}
    assert PointsAccount.objects.get(member=member).available == 0
    assert_ledger_consistent()


def test_the_same_purchase_posted_twenty_times_at_once_is_recorded_once(api, store_a):
    member = MemberFactory(home_store=store_a)
    body = {"member": str(member.pk), "order_no": "A1001", "amount": "129.90", "store": "A001"}
    responses = run_together(20, lambda i: api().post("/api/v1/purchases/", body, format="json"))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({str(r.json()) for r in responses}) == 1
    assert Purchase.objects.count() == 1
    assert LedgerEntry.objects.count() == 1
    assert PointsAccount.objects.get(member=member).pending == 129
    assert_ledger_consistent()


def test_the_same_event_posted_twenty_times_at_once_is_recorded_once(api, store_a):
    member = MemberFactory(home_store=store_a)
    body = {"member": str(member.pk), "type": "share"}
    responses = run_together(
        20, lambda i: api().post("/api/v1/events/", body, format="json", HTTP_IDEMPOTENCY_KEY="share-1")
    )
    assert [r.status_code for r in responses] == [201] * 20
    assert len({str(r.json()) for r in responses}) == 1
    assert LedgerEntry.objects.count() == 1
    assert PointsAccount.objects.get(member=member).available == 2


def test_same_key_with_a_different_body_is_a_conflict(api, store_a):
    member = MemberFactory(home_store=store_a)
    client = api()
    first = client.post(
        "/api/v1/purchases/", {"member": str(member.pk), "order_no": "X1", "amount": "10.00"}, format="json"
    )
    assert first.status_code == 201
    other = client.post(
        "/api/v1/purchases/", {"member": str(member.pk), "order_no": "X1", "amount": "11.00"}, format="json"
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    event = client.post(
        "/api/v1/events/", {"member": str(member.pk), "type": "share"}, format="json", HTTP_IDEMPOTENCY_KEY="e1"
    )
    assert event.status_code == 201
    clash = client.post(
        "/api/v1/events/", {"member": str(member.pk), "type": "sign_in"}, format="json", HTTP_IDEMPOTENCY_KEY="e1"
    )
    assert clash.json()["code"] == "idempotency_conflict"
    assert LedgerEntry.objects.count() == 2
