"""Member merge under real concurrency on PostgreSQL: purchases posted for either member while the merge runs lose
nothing, and merges of the same members at the same moment happen once."""

import importlib
import threading
import time
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from loyalty.credentials import create_api_client
from members.models import Member, MemberMerge, MemberStatus, Purchase, Refund
from members.services import MemberMerged, merge_members
from members.services.merge import merge_steps
from points.models import EntryKind, LedgerEntry, PointsAccount
from tests.conftest import ALL_SCOPES, staff_client
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import adjust, assert_ledger_consistent, purchase, refund
from tests.points.test_concurrency import outcome, run_together
from tiers.models import GrowthEntry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
PURCHASES_EACH = 12


@pytest.fixture
def default_ladder():
    """Transactional tests start from emptied tables: put back the ladder and policy the migration makes."""
    from django.apps import apps

    importlib.import_module("tiers.migrations.0002_default_ladder").create_ladder(apps, None)


@pytest.fixture
def pos(store_a):
    _, key = create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)

    def client():
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return c

    return client


@pytest.fixture
def admin_token_client(db):
    from loyalty.roles import sync_role_groups

    sync_role_groups()  # the role groups are flushed with the other tables
    return staff_client(StaffUserFactory(username="boss-m", role="admin"))


def test_purchases_for_either_member_during_a_merge_lose_nothing(default_ladder, pos, admin_token_client, store_a):
    survivor, duplicate = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    adjust(survivor, 1000)
    adjust(duplicate, 500)
    clients = [pos() for _ in range(2 * PURCHASES_EACH)]

    def request(index):
        if index == 2 * PURCHASES_EACH:
            return admin_token_client.post(
                f"/api/v1/members/{survivor.pk}/merge/",
                {"duplicate": str(duplicate.pk), "reason": "two cards"},
                format="json",
            )
        member = duplicate if index % 2 else survivor
        return clients[index].post(
            "/api/v1/purchases/", {"member": str(member.pk), "order_no": f"P{index}", "amount": "10.00"}, format="json"
        )

    responses = run_together(2 * PURCHASES_EACH + 1, request)

    merged = responses[-1]
    assert merged.status_code == 201, merged.content
    for_survivor = [outcome(r) for r in responses[0:-1:2]]
    for_duplicate = [outcome(r) for r in responses[1:-1:2]]
    assert for_survivor == [201] * PURCHASES_EACH
    assert set(for_duplicate) <= {201, "member_merged"}  # landed before the merge (and moved), or refused after
    landed = for_duplicate.count(201)
    recorded = PURCHASES_EACH + landed
    assert Purchase.objects.count() == recorded
    assert set(Purchase.objects.values_list("member_id", flat=True)) == {survivor.pk}
    assert merged.json()["moved"]["purchases"] == landed
    assert merged.json()["moved"]["points"]["pending"] == 10 * landed
    kept, closed = PointsAccount.objects.get(member=survivor), PointsAccount.objects.get(member=duplicate)
    assert (kept.available, kept.pending) == (1500, 10 * recorded)  # 10 points pending per 10.00 order
    assert (closed.available, closed.pending, closed.closed) == (0, 0, True)
    assert LedgerEntry.objects.filter(member=duplicate).latest("id").kind == EntryKind.MERGE
    growth = {
        member: sum(GrowthEntry.objects.filter(member=member).values_list("value", flat=True))
        for member in (survivor, duplicate)
    }
    assert growth == {survivor: 20 * recorded, duplicate: 0}  # 10.00 paid + 10 per order
    for refused in (r for r in responses[1:-1:2] if r.status_code == 409):
        assert refused.json()["merged_into"] == str(survivor.pk)
    assert_ledger_consistent()


def test_the_same_merge_posted_at_once_happens_once(default_ladder, admin_token_client, store_a):
    survivor, duplicate = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    adjust(duplicate, 300)
    body = {"duplicate": str(duplicate.pk), "reason": "two cards"}
    user = StaffUserFactory(username="boss-n", role="admin")
    clients = [staff_client(user) for _ in range(8)]
    responses = run_together(8, lambda i: clients[i].post(f"/api/v1/members/{survivor.pk}/merge/", body, format="json"))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({str(r.json()) for r in responses}) == 1
    assert MemberMerge.objects.count() == 1
    assert LedgerEntry.objects.filter(kind=EntryKind.MERGE).count() == 2
    assert PointsAccount.objects.get(member=survivor).available == 300
    assert_ledger_consistent()


def test_two_members_merged_into_each_other_at_once_merge_one_way(default_ladder, admin_token_client, store_a):
    first, second = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    adjust(first, 100)
    adjust(second, 200)
    user = StaffUserFactory(username="boss-o", role="admin")
    clients = [staff_client(user) for _ in range(2)]
    pairs = [(first, second), (second, first)]
    responses = run_together(
        2,
        lambda i: clients[i].post(
            f"/api/v1/members/{pairs[i][0].pk}/merge/", {"duplicate": str(pairs[i][1].pk), "reason": "x"}, format="json"
        ),
    )
    assert Counter(map(outcome, responses)) == {201: 1, "member_merged": 1}
    statuses = sorted(Member.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True))
    assert statuses == [MemberStatus.ACTIVE, MemberStatus.MERGED]
    assert sorted(PointsAccount.objects.values_list("available", flat=True)) == [0, 300]
    assert_ledger_consistent()


def merge_while(survivor, duplicate, request):
    """Merge, and while the merge holds both members' locks, run `request()` in another thread; return once the
    merge has committed and the request has answered. The request starts inside the merge and is seen waiting for
    one of its locks before the merge goes on, so it read what it read before the merge and locks after it."""
    answer = {}

    def run():
        try:
            answer["value"] = request()
        except Exception as error:  # a service's refusal is the answer under test
            answer["value"] = error
        finally:
            connection.close()

    other = threading.Thread(target=run)

    def wait_inside_the_merge(merge):
        other.start()
        deadline = time.monotonic() + 10
        with connection.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view is read once per transaction
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.02)
            else:
                raise AssertionError("the request never waited for the merge's locks")
        return {}

    merge_steps.register(wait_inside_the_merge)
    try:
        merge_members(actor="test", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason="two cards")
    finally:
        merge_steps.unregister(wait_inside_the_merge)
    other.join()
    return answer["value"]


def test_a_purchase_that_read_the_duplicate_before_the_merge_is_refused_after_it(default_ladder, pos, store_a):
    """The purchase is asked for the duplicate while the merge holds her locks: when it gets them she is closed,
    and it is refused, not written to her."""
    survivor, duplicate = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    adjust(duplicate, 100)

    response = merge_while(
        survivor,
        duplicate,
        lambda: pos().post(
            "/api/v1/purchases/", {"member": str(duplicate.pk), "order_no": "LATE", "amount": "10.00"}, format="json"
        ),
    )

    assert (response.status_code, response.json()["code"], response.json()["merged_into"]) == (
        409,
        "member_merged",
        str(survivor.pk),
    )
    assert not Purchase.objects.exists()
    assert (
        PointsAccount.objects.get(member=duplicate).pending,
        PointsAccount.objects.get(member=survivor).available,
    ) == (0, 100)
    assert_ledger_consistent()


def test_a_refund_that_read_the_purchase_before_the_merge_moved_it_is_refused_then_lands_on_the_survivor(
    default_ladder, store_a
):
    """A refund reads whose the purchase is, then takes that member's lock: the merge moved the purchase and closed
    her meanwhile. Her closed account refuses it (it would take the survivor's lots on the duplicate's ledger);
    asked again, it reverses the points on the survivor."""
    survivor, duplicate = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    order = purchase(duplicate, "100.00")  # 100 pending

    refused = merge_while(survivor, duplicate, lambda: refund(order["id"], "40.00", refund_no="R1"))

    assert isinstance(refused, MemberMerged)
    assert refused.extra == {"member": str(duplicate.pk), "merged_into": str(survivor.pk)}
    assert (PointsAccount.objects.get(member=survivor).pending, Refund.objects.count()) == (100, 0)
    assert refund(order["id"], "40.00", refund_no="R1")["points_reversed"] == 40
    assert PointsAccount.objects.get(member=survivor).pending == 60
    assert LedgerEntry.objects.filter(member=duplicate).latest("id").kind == EntryKind.MERGE
    assert_ledger_consistent()
