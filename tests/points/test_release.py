"""Releasing pending points writes one ledger shape whatever the database: one release entry per lot, naming the
order in `reference` and carrying the lot's expiry, then (for a member in debt) the debt paid from the released
points. The set-based SQL (PostgreSQL) and the member-by-member path (SQLite) must agree entry for entry."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import transaction

from points import services
from points.models import EntryKind, LedgerEntry, LotMovement, LotStatus, PointsLot
from points.services import maintenance
from tests.factories import MemberFactory
from tests.points.helpers import adjust, balances, purchase, redeem, refund

SHANGHAI = ZoneInfo("Asia/Shanghai")
REASON = "pending period ended: these points can now be used"
ENTRY_FIELDS = [
    "kind",
    "points",
    "available_delta",
    "pending_delta",
    "balance_after",
    "pending_after",
    "reason",
    "reference",
    "actor",
    "breakdown",
    "expires_at",
    "created_at",
]
pytestmark = pytest.mark.django_db


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def release_entries(member):
    return list(
        LedgerEntry.objects.filter(member=member, kind=EntryKind.RELEASE)
        .order_by("id")
        .values_list(
            "kind",
            "points",
            "available_delta",
            "pending_delta",
            "balance_after",
            "pending_after",
            "reference",
            "expires_at",
            "reason",
            "actor",
        )
    )


def test_release_writes_one_entry_per_order_naming_it_with_its_expiry(store_a):
    member = MemberFactory(home_store=store_a)
    with time_machine.travel(at(2026, 11, 1, 9), tick=False):
        adjust(member, 10)  # available already: the balances after each release start from 10
    with time_machine.travel(at(2026, 11, 2, 10), tick=False):
        purchase(member, "129.90", order_no="A1001")  # pending until 11-09 10:00
    with time_machine.travel(at(2026, 11, 2, 11), tick=False):
        # An older order sent late: it frees earlier (11-08 14:00) although its lot was made later.
        purchase(member, "50.00", order_no="A1002", occurred_at=at(2026, 11, 1, 14))
    assert balances(member) == (10, 179)

    with time_machine.travel(at(2026, 11, 9, 10), tick=False):
        counts = services.release_pending()

    assert (counts.members, counts.points) == (1, 179)
    assert release_entries(member) == [
        ("release", 50, 50, -50, 60, 129, "A1002", at(2027, 11, 2), REASON, "job:release_pending"),
        ("release", 129, 129, -129, 189, 0, "A1001", at(2027, 11, 3), REASON, "job:release_pending"),
    ]
    assert balances(member) == (189, 0)
    assert sorted(PointsLot.objects.filter(member=member).values_list("points", "remaining", "status")) == [
        (10, 10, LotStatus.AVAILABLE),
        (50, 50, LotStatus.AVAILABLE),
        (129, 129, LotStatus.AVAILABLE),
    ]
    with time_machine.travel(at(2026, 11, 9, 11), tick=False):
        assert services.release_pending().points == 0  # released once
    assert len(release_entries(member)) == 2


def member_in_debt_with_two_orders_pending(store, mug, *, source):
    """A member whose refund left her 100 in debt, then two orders pending and a third one refunded in full
    before its pending period ended (its lot has nothing left to release)."""
    member = MemberFactory(home_store=store)
    with time_machine.travel(at(2026, 3, 1, 10), tick=False):
        first = purchase(member, "150", order_no="P0", source=source)
    with time_machine.travel(at(2026, 3, 9, 10), tick=False):
        services.release_pending()
        redeem(member, mug)
        refund(first["id"], "150", refund_no="R1")  # 150 clawed back from 50 available: 100 in debt
    with time_machine.travel(at(2026, 3, 10, 10), tick=False):
        purchase(member, "129.90", order_no="A1001", source=source)
    with time_machine.travel(at(2026, 3, 11, 10), tick=False):
        purchase(member, "50", order_no="A1002", source=source)
        third = purchase(member, "30", order_no="A1003", source=source)
        refund(third["id"], "30", refund_no="R2")
    assert balances(member) == (-100, 179)
    return member


def lots_of(member):
    return list(
        PointsLot.objects.filter(member=member)
        .order_by("id")
        .values_list("status", "points", "remaining", "expires_at")
    )


def movements_of(member):
    """(entry kind, entry reference, lot's order or "debt", points) for every lot movement of the member."""
    rows = (
        LotMovement.objects.filter(entry__member=member)
        .order_by("id")
        .values_list("entry__kind", "entry__reference", "lot__status", "lot__entry__reference", "points")
    )
    return [
        (kind, reference, "debt" if status == LotStatus.DEBT else lot_reference, points)
        for kind, reference, status, lot_reference, points in rows
    ]


def test_a_member_in_debt_pays_it_from_the_points_released(store_a, mug):
    member = member_in_debt_with_two_orders_pending(store_a, mug, source="store:A001")

    with time_machine.travel(at(2026, 3, 18, 10), tick=False):
        counts = services.release_pending()

    assert (counts.members, counts.points) == (1, 179)
    assert release_entries(member)[1:] == [  # the first released P0 on 3-09
        ("release", 129, 129, -129, 29, 50, "A1001", at(2027, 3, 11), REASON, "job:release_pending"),
        ("release", 50, 50, -50, 79, 0, "A1002", at(2027, 3, 12), REASON, "job:release_pending"),
    ]  # A1003 was refunded in full while pending: nothing to release, no entry
    assert balances(member) == (79, 0)
    assert lots_of(member) == [
        (LotStatus.AVAILABLE, 150, 0, at(2027, 3, 2)),  # P0: spent on the mug, then clawed back
        (LotStatus.DEBT, -100, 0, None),  # paid
        (LotStatus.AVAILABLE, 129, 29, at(2027, 3, 11)),  # the soonest expiring pays the debt
        (LotStatus.AVAILABLE, 50, 50, at(2027, 3, 12)),
        (LotStatus.AVAILABLE, 30, 0, at(2027, 3, 12)),  # A1003: closed, nothing in it
    ]
    # The debt is paid on the member's last release entry: +100 to the debt lot, -100 from A1001's lot.
    assert movements_of(member)[-2:] == [("release", "A1002", "A1001", -100), ("release", "A1002", "debt", 100)]


def entries_compared(member):
    return [
        {field: getattr(entry, field) for field in ENTRY_FIELDS}
        for entry in LedgerEntry.objects.filter(member=member).order_by("id")
    ]


@pytest.mark.postgres
def test_the_set_based_release_and_the_member_by_member_release_write_the_same_entries(store_a, store_b, mug):
    by_sql = member_in_debt_with_two_orders_pending(store_a, mug, source="store:A001")
    portable = member_in_debt_with_two_orders_pending(store_b, mug, source="store:B001")

    with time_machine.travel(at(2026, 3, 18, 10), tick=False):
        now = at(2026, 3, 18, 10)
        with transaction.atomic(durable=True):
            sql_counts = maintenance.release_chunk_set_based(by_sql.pk, by_sql.pk + 1, now)
        with transaction.atomic(durable=True):
            portable_counts = maintenance.release_chunk_per_member(portable.pk, portable.pk + 1, now)

    assert sql_counts == portable_counts == {"members": 1, "points": 179}
    sql_entries, portable_entries = entries_compared(by_sql), entries_compared(portable)
    assert len(sql_entries) == len(portable_entries) == 10
    for index, (sql_entry, portable_entry) in enumerate(zip(sql_entries, portable_entries, strict=True)):
        assert sql_entry == portable_entry, f"entry {index} differs"
    assert balances(by_sql) == balances(portable) == (79, 0)
    assert lots_of(by_sql) == lots_of(portable)
    assert movements_of(by_sql) == movements_of(portable)
