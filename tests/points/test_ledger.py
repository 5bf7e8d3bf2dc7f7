"""The ledger's rules: FIFO spending, pending points, refunds and debt, cancellation, expiry, release."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction

from points import services
from points.models import (
    EntryKind,
    ExpiryMode,
    LedgerEntry,
    LotMovement,
    LotStatus,
    PointsLot,
    PointsPolicy,
    Redemption,
    Reward,
)
from points.services.ledger import InsufficientPoints, expires_at_for, last_valid_day
from tests.factories import MemberFactory
from tests.points.helpers import adjust, assert_ledger_consistent, balances, purchase, redeem, refund

SHANGHAI = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def test_purchase_points_are_pending_for_seven_days_then_released(member):
    with time_machine.travel(at(2026, 11, 1, 10), tick=False):
        result = purchase(member, "129.90")
    assert result["points"]["awarded"] == 129
    assert result["points"]["status"] == "pending"
    assert result["points"]["available_at"] == "2026-11-08T10:00:00+08:00"
    assert balances(member) == (0, 129)
    with time_machine.travel(at(2026, 11, 8, 9, 59), tick=False):
        assert services.release_pending().points == 0
    with time_machine.travel(at(2026, 11, 8, 10), tick=False):
        counts = services.release_pending()
        assert (counts.members, counts.points) == (1, 129)
        assert services.release_pending().points == 0  # released once
    assert balances(member) == (129, 0)
    release = LedgerEntry.objects.get(kind=EntryKind.RELEASE)
    assert (release.points, release.balance_after) == (129, 129)
    assert_ledger_consistent()


def test_spending_takes_the_soonest_expiring_lots_first(member, mug):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        adjust(member, 60)  # expires 2027-01-10
    with time_machine.travel(at(2025, 12, 1, 12), tick=False):
        adjust(member, 30)  # expires 2026-12-01: soonest
    with time_machine.travel(at(2026, 6, 1, 12), tick=False):
        adjust(member, 50)  # expires 2027-06-01
    with time_machine.travel(at(2026, 6, 2, 12), tick=False):
        redeem(member, mug)
    remaining = dict(PointsLot.objects.values_list("points", "remaining"))
    assert remaining == {30: 0, 60: 0, 50: 40}
    assert balances(member) == (40, 0)
    assert_ledger_consistent()


def test_pending_points_cannot_be_spent(member, mug):
    purchase(member, "500")
    assert balances(member) == (0, 500)
    with pytest.raises(InsufficientPoints):
        redeem(member, mug)
    assert Redemption.objects.count() == 0
    assert Reward.objects.get().stock == 100


def test_partial_refunds_reverse_pending_points_in_proportion(member):
    result = purchase(member, "100.00")
    assert refund(result["id"], "30.00")["points_reversed"] == 30
    assert refund(result["id"], "33.33")["points_reversed"] == 33
    last = refund(result["id"], "36.67")
    assert last["points_reversed"] == 37  # the full refund reverses exactly what was awarded
    assert balances(member) == (0, 0)
    assert_ledger_consistent()


def test_a_refund_that_is_an_exact_share_of_the_order_reverses_exactly_that_share(member):
    """49 × 1/49 is 1 exactly: not 0.99999… rounded down, as a share computed before the multiplication made it."""
    result = purchase(member, "49.00")

    assert refund(result["id"], "1.00")["points_reversed"] == 1
    assert refund(result["id"], "5.00")["points_reversed"] == 5
    assert balances(member) == (0, 43)
    assert_ledger_consistent()


def test_refund_reverses_pending_first_then_available(member):
    with time_machine.travel(at(2026, 3, 1, 10), tick=False):
        first = purchase(member, "100")
    with time_machine.travel(at(2026, 3, 9, 10), tick=False):
        services.release_pending()
        assert balances(member) == (100, 0)
        purchase(member, "50")  # pending 50
    with time_machine.travel(at(2026, 3, 9, 11), tick=False):
        result = refund(first["id"], "100")
    assert result["points_reversed"] == 100
    assert balances(member) == (0, 50)  # this order's points were available: they are taken back
    assert_ledger_consistent()


def test_refund_after_points_were_spent_makes_a_debt_that_blocks_redemption(member, mug):
    with time_machine.travel(at(2026, 3, 1, 10), tick=False):
        order = purchase(member, "150")
    with time_machine.travel(at(2026, 3, 9, 10), tick=False):
        services.release_pending()
        redeem(member, mug)
        assert balances(member) == (50, 0)
        refund(order["id"], "150")
    assert balances(member) == (-100, 0)
    with pytest.raises(InsufficientPoints):
        redeem(member, mug)
    adjust(member, 120)
    assert balances(member) == (20, 0)
    debt = PointsLot.objects.get(status=LotStatus.DEBT)
    assert (debt.points, debt.remaining) == (-100, 0)
    with pytest.raises(InsufficientPoints):
        redeem(member, mug)
    adjust(member, 80)
    redeem(member, mug)
    assert balances(member) == (0, 0)
    assert_ledger_consistent()


def test_cancel_returns_points_to_their_original_lots_and_stock(member, mug):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        adjust(member, 70)
    with time_machine.travel(at(2026, 2, 10, 12), tick=False):
        adjust(member, 70)
        result = redeem(member, mug)
    assert Reward.objects.get().stock == 99
    services.cancel_redemption(actor="test", redemption_id=int(result["id"]))
    lots = {lot.expires_at: lot.remaining for lot in PointsLot.objects.all()}
    assert lots == {at(2027, 1, 11): 70, at(2027, 2, 11): 70}
    assert Reward.objects.get().stock == 100
    assert balances(member) == (140, 0)
    with pytest.raises(services.AlreadyCancelled):
        services.cancel_redemption(actor="test", redemption_id=int(result["id"]))
    assert_ledger_consistent()


def test_cancelled_points_whose_lot_expired_meanwhile_expire_at_once(member, mug):
    with time_machine.travel(at(2025, 1, 10, 12), tick=False):
        adjust(member, 100)  # last valid day 2026-01-10
    with time_machine.travel(at(2026, 1, 5, 12), tick=False):
        result = redeem(member, mug)
    with time_machine.travel(at(2026, 1, 11, 0, 30), tick=False):
        services.expire_points(as_of=date(2026, 1, 10))
        services.cancel_redemption(actor="test", redemption_id=int(result["id"]))
    assert balances(member) == (0, 0)
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "points"))
    assert kinds[-2:] == [("cancel", 100), ("expire", -100)]
    assert_ledger_consistent()


@pytest.mark.parametrize(
    ("mode", "months", "earned", "last_day"),
    [
        (ExpiryMode.ROLLING, 12, at(2026, 11, 23, 15), date(2027, 11, 23)),
        (ExpiryMode.ROLLING, 12, at(2024, 2, 29, 9), date(2025, 2, 28)),
        (ExpiryMode.ROLLING, 12, at(2027, 2, 28, 9), date(2028, 2, 28)),
        (ExpiryMode.ROLLING, 6, at(2026, 8, 31, 9), date(2027, 2, 28)),
        (ExpiryMode.ROLLING, 12, at(2026, 12, 31, 23, 59), date(2027, 12, 31)),
        (ExpiryMode.FIXED_ANNUAL, 12, at(2026, 1, 1, 0, 0), date(2027, 12, 31)),
        (ExpiryMode.FIXED_ANNUAL, 12, at(2026, 12, 31, 23, 59), date(2027, 12, 31)),
        (ExpiryMode.FIXED_ANNUAL, 12, at(2024, 2, 29, 9), date(2025, 12, 31)),
        # 2026-12-31 16:30 UTC is already 2027-01-01 in Shanghai: earned in 2027.
        (ExpiryMode.FIXED_ANNUAL, 12, datetime(2026, 12, 31, 16, 30, tzinfo=ZoneInfo("UTC")), date(2028, 12, 31)),
    ],
)
def test_expiry_dates(mode, months, earned, last_day):
    policy = PointsPolicy(expiry_mode=mode, expiry_months=months)
    expires = expires_at_for(policy, earned)
    assert last_valid_day(expires) == last_day
    assert expires == at(last_day.year, last_day.month, last_day.day) + timedelta(days=1)


def test_expiry_for_a_date_runs_once(member, mug):
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 100)  # last valid day 2026-03-01
        adjust(member, 40)
    with time_machine.travel(at(2025, 6, 1, 12), tick=False):
        adjust(member, 25)  # last valid day 2026-06-01
    with time_machine.travel(at(2026, 2, 1, 12), tick=False):
        redeem(member, mug)  # takes 100 from the first lot
    assert services.expire_points(as_of=date(2026, 2, 28)).points == 0
    first = services.expire_points(as_of=date(2026, 3, 1))
    assert (first.members, first.points) == (1, 40)
    second = services.expire_points(as_of=date(2026, 3, 1))
    assert (second.members, second.points) == (0, 0)
    assert balances(member) == (25, 0)
    expiry = LedgerEntry.objects.get(kind=EntryKind.EXPIRE)
    assert (expiry.points, expiry.balance_after, expiry.reference) == (-40, 25, "expiry:2026-03-01")
    assert set(PointsLot.objects.filter(status=LotStatus.EXPIRED).values_list("points", flat=True)) == {100, 40}
    assert_ledger_consistent()


def test_expiry_over_many_members_in_chunks(store_a):
    members = MemberFactory.create_batch(5, home_store=store_a)
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        for index, member in enumerate(members):
            adjust(member, 10 * (index + 1))
    counts = services.expire_points(as_of=date(2026, 3, 1), chunk_size=2)
    assert (counts.members, counts.points, counts.chunks) == (5, 150, 3)
    assert [balances(m) for m in members] == [(0, 0)] * 5
    assert_ledger_consistent()


def test_ledger_entries_refuse_update_and_delete(member):
    adjust(member, 10)
    entry = LedgerEntry.objects.get()
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        LedgerEntry.objects.filter(pk=entry.pk).update(points=999)
    with pytest.raises(TypeError):
        LedgerEntry.objects.all().delete()


@pytest.mark.postgres
def test_database_refuses_ledger_updates_and_deletes(member):
    adjust(member, 10)
    adjust(member, -3)  # a spend: writes a lot movement too
    for statement in (
        "UPDATE points_ledgerentry SET points = 999",
        "DELETE FROM points_ledgerentry",
        "UPDATE points_lotmovement SET points = 1",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(statement)
    assert sorted(LedgerEntry.objects.values_list("points", flat=True)) == [-3, 10]


@pytest.mark.tampers_ledger
def test_check_ledger_command_reports_a_tampered_balance(member, capsys):
    from django.core.management import CommandError, call_command

    adjust(member, 10)
    call_command("check_ledger")
    assert "consistent" in capsys.readouterr().out
    from points.models import PointsAccount

    PointsAccount.objects.filter(member=member).update(available=11)
    with pytest.raises(CommandError, match="1 ledger mismatch"):
        call_command("check_ledger")
    assert f"member {member.pk}: account available=11" in capsys.readouterr().out


def test_expiry_of_a_chunk_whose_lots_interleave_across_members(store_a):
    # Lots written in time order alternate between the members, so the chunk's lots in member order and in id
    # order differ: every one is expired once, with its own movement, and the balances are exact.
    first, second = MemberFactory.create_batch(2, home_store=store_a)
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        for points in (7, 11, 13):
            adjust(first, points)
            adjust(second, points * 2)
    with time_machine.travel(at(2025, 6, 1, 12), tick=False):
        adjust(second, 5)  # last valid day 2026-06-01: stays
    counts = services.expire_points(as_of=date(2026, 3, 1), chunk_size=10)
    assert (counts.members, counts.points) == (2, 31 + 62)
    assert [balances(first), balances(second)] == [(0, 0), (5, 0)]
    expired = PointsLot.objects.filter(status=LotStatus.EXPIRED).order_by("id")
    assert list(expired.values_list("member_id", "points", "remaining")) == [
        (first.pk, 7, 0),
        (second.pk, 14, 0),
        (first.pk, 11, 0),
        (second.pk, 22, 0),
        (first.pk, 13, 0),
        (second.pk, 26, 0),
    ]
    moved = LotMovement.objects.filter(entry__kind=EntryKind.EXPIRE).order_by("lot_id")
    assert list(moved.values_list("lot_id", "points")) == [(lot.pk, -lot.points) for lot in expired]
    assert_ledger_consistent()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_expiry_chunk_locks_exactly_its_members_with_a_due_lot(store_a):
    from points.services.maintenance import EXPIRE_LOCK_CONDITION, NO_FLOOR, _lock_chunk_accounts

    due, not_due, spent, next_chunk = MemberFactory.create_batch(4, home_store=store_a)
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        for member in (due, spent, next_chunk):
            adjust(member, 30)
        adjust(spent, -30)  # her lot spent to zero: nothing to expire, but the statement closes it
    with time_machine.travel(at(2025, 6, 1, 12), tick=False):
        adjust(not_due, 30)
    assert PointsLot.objects.get(member=spent).remaining == 0
    cutoff = at(2026, 3, 2, 0)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_chunk_accounts(cursor, due.pk, next_chunk.pk, EXPIRE_LOCK_CONDITION, [NO_FLOOR, cutoff])
        assert sorted(row[0] for row in cursor.fetchall()) == sorted([due.pk, spent.pk])
