"""The nightly expiry reads lots from a watermark (points.models.ExpiryWatermark), as no lot index tells an open lot
from a closed one. Each path that can open a lot behind a run is tested here with the exact balances and entries it
must end with: an import of an old purchase, a merge during a run, a release after the lot's expiry date, a
member already expired for the date, a cancellation returning points; and pending_until follows the status."""

import threading
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import IntegrityError, OperationalError, connection, transaction

from loyalty.clock import end_of_business_day
from members.services import merge_members
from points import services
from points.models import EntryKind, ExpiryWatermark, LedgerEntry, LotMovement, LotStatus, PointsLot
from points.services import ledger, maintenance
from tests.factories import MemberFactory
from tests.points.helpers import adjust, assert_ledger_consistent, balances, purchase, redeem

SHANGHAI = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def reach(as_of):
    """closed_before after a completed run for `as_of` (one microsecond past its cutoff)."""
    return end_of_business_day(as_of) + timedelta(microseconds=1)


def watermark():
    mark = ExpiryWatermark.objects.get()
    assert (mark.run_started_at is None) == (mark.run_as_of is None)
    return (mark.closed_before, mark.reopened_from, mark.run_from, mark.run_started_at)


def expire(as_of, **kwargs):
    """The nightly run for `as_of`, half an hour after the date ends."""
    with time_machine.travel(end_of_business_day(as_of) + timedelta(minutes=30), tick=False):
        counts = services.expire_points(as_of=as_of, **kwargs)
    return (counts.members, counts.points)


def expiries(member):
    return list(
        LedgerEntry.objects.filter(member=member, kind=EntryKind.EXPIRE)
        .order_by("id")
        .values_list("points", "balance_after", "reference")
    )


def lots(member):
    return list(
        PointsLot.objects.filter(member=member)
        .order_by("id")
        .values_list("points", "remaining", "status", "expires_at")
    )


def test_a_run_reads_from_where_the_last_one_closed(member):
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 40)  # last valid day 2026-03-01
    with time_machine.travel(at(2025, 6, 1, 12), tick=False):
        adjust(member, 25)  # last valid day 2026-06-01
    assert expire(date(2026, 3, 1)) == (1, 40)
    assert watermark() == (reach(date(2026, 3, 1)), None, None, None)
    assert maintenance.expiry_floor() == reach(date(2026, 3, 1))
    assert expire(date(2026, 6, 1)) == (1, 25)
    assert watermark() == (reach(date(2026, 6, 1)), None, None, None)
    assert balances(member) == (0, 0)
    assert expiries(member) == [(-40, 25, "expiry:2026-03-01"), (-25, 0, "expiry:2026-06-01")]
    assert_ledger_consistent()


def test_a_run_never_moves_the_watermark_past_its_own_start(member):
    """A run for a date typed ahead (the service allows it; the job runner refuses it) closes what it saw, but
    a lot opened while it runs with an expiry between its start and its cutoff must stay ahead of the watermark."""
    with time_machine.travel(at(2026, 1, 5, 12), tick=False):
        services.expire_points(as_of=date(2026, 3, 1))
    assert watermark() == (at(2026, 1, 5, 12), None, None, None)


def test_an_imported_old_purchase_is_expired_by_the_next_run(member):
    with time_machine.travel(at(2025, 12, 1, 12), tick=False):
        adjust(member, 10)  # last valid day 2026-12-01
    assert expire(date(2026, 3, 1)) == (0, 0)
    assert watermark() == (reach(date(2026, 3, 1)), None, None, None)
    with time_machine.travel(at(2026, 3, 5, 10), tick=False):
        # An order of 2025-01-20 sent late: its points lasted until 2026-01-20, before the watermark.
        purchase(member, "80.00", order_no="OLD1", occurred_at=at(2025, 1, 20, 15))
    assert balances(member) == (90, 0)
    assert watermark() == (reach(date(2026, 3, 1)), at(2026, 1, 21), None, None)
    assert expire(date(2026, 3, 5)) == (1, 80)
    assert balances(member) == (10, 0)
    assert expiries(member) == [(-80, 10, "expiry:2026-03-05")]
    assert lots(member) == [(10, 10, "available", at(2026, 12, 2)), (80, 0, "expired", at(2026, 1, 21))]
    assert watermark() == (reach(date(2026, 3, 5)), None, None, None)
    assert_ledger_consistent()


def test_a_lot_released_after_its_expiry_date_is_expired_by_the_next_run(member):
    with time_machine.travel(at(2026, 3, 1, 9), tick=False), transaction.atomic():
        account = ledger.lock_account(member.pk)
        # Pending until 03-10, expiring 03-06 (e.g. a long pending period with a fixed expiry date).
        ledger.earn(account, points=50, actor="test", available_at=at(2026, 3, 10), expires_at=at(2026, 3, 6))
        ledger.save_account(account)
    assert PointsLot.objects.get(member=member).pending_until == at(2026, 3, 10)
    for day in range(1, 10):
        expire(date(2026, 3, day))  # the expiry never touches a pending lot
    assert balances(member) == (0, 50)
    assert watermark()[:2] == (reach(date(2026, 3, 9)), None)
    with time_machine.travel(at(2026, 3, 10, 0, 10), tick=False):
        assert services.release_pending().points == 50
    assert PointsLot.objects.get(member=member).pending_until is None
    assert balances(member) == (50, 0)
    assert watermark()[:2] == (reach(date(2026, 3, 9)), at(2026, 3, 6))
    assert expire(date(2026, 3, 10)) == (1, 50)
    assert balances(member) == (0, 0)
    assert expiries(member) == [(-50, 0, "expiry:2026-03-10")]
    assert watermark() == (reach(date(2026, 3, 10)), None, None, None)
    assert_ledger_consistent()


def test_a_merge_during_a_run_moves_a_due_lot_behind_it_and_the_next_run_expires_it(store_a):
    survivor = MemberFactory(home_store=store_a, phone="+8613800000001")
    duplicate = MemberFactory(home_store=store_a, phone="+8613800000002")
    assert survivor.pk < duplicate.pk
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(survivor, 5)  # last valid day 2026-03-01
        adjust(duplicate, 30)  # last valid day 2026-03-01
    as_of = date(2026, 3, 1)
    with time_machine.travel(at(2026, 3, 2, 0, 30), tick=False):
        maintenance.expire_prepare(as_of)
        with transaction.atomic():  # the survivor's chunk first
            maintenance.expire_chunk(survivor.pk, survivor.pk + 1, as_of, at(2026, 3, 2, 0, 30))
        merge_members(actor="staff:boss", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason="same person")
        with transaction.atomic():
            maintenance.expire_chunk(duplicate.pk, duplicate.pk + 1, as_of, at(2026, 3, 2, 0, 30))
        with transaction.atomic():
            maintenance.expire_finish(as_of)
    # The 30 points moved after the survivor's chunk: still hers, and the watermark keeps them ahead.
    assert balances(survivor) == (30, 0)
    assert watermark() == (reach(as_of), at(2026, 3, 2), None, None)
    assert expire(date(2026, 3, 2)) == (1, 30)
    assert balances(survivor) == (0, 0)
    assert expiries(survivor) == [(-5, 0, "expiry:2026-03-01"), (-30, 0, "expiry:2026-03-02")]
    assert expiries(duplicate) == []
    assert_ledger_consistent()


def test_a_member_already_expired_for_the_date_keeps_a_late_lot_for_the_next_date(member):
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 40)  # last valid day 2026-03-01
    assert expire(date(2026, 3, 1)) == (1, 40)
    with time_machine.travel(at(2026, 3, 2, 1), tick=False):
        purchase(member, "60.00", order_no="OLD2", occurred_at=at(2025, 2, 20, 15))  # lasted until 2026-02-20
        # The same date again (a forced rerun): she has its entry already, so the late lot waits.
        assert services.expire_points(as_of=date(2026, 3, 1)).points == 0
    assert balances(member) == (60, 0)
    assert watermark() == (reach(date(2026, 3, 1)), at(2026, 2, 21), None, None)
    assert expire(date(2026, 3, 2)) == (1, 60)
    assert balances(member) == (0, 0)
    assert expiries(member) == [(-40, 0, "expiry:2026-03-01"), (-60, 0, "expiry:2026-03-02")]
    assert_ledger_consistent()


def test_a_cancellation_returns_points_to_a_lot_closed_by_a_run_and_they_expire_at_once(member, mug):
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 100)  # last valid day 2026-03-01
        adjust(member, 20)
    with time_machine.travel(at(2026, 2, 1, 12), tick=False):
        result = redeem(member, mug)  # the first lot spent to zero
    assert expire(date(2026, 3, 1)) == (1, 20)
    assert lots(member) == [(100, 0, "expired", at(2026, 3, 2)), (20, 0, "expired", at(2026, 3, 2))]
    with time_machine.travel(at(2026, 3, 3, 12), tick=False):
        services.cancel_redemption(actor="test", redemption_id=int(result["id"]))
    assert balances(member) == (0, 0)
    kinds = list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("kind", "points"))
    assert kinds[-2:] == [("cancel", 100), ("expire", -100)]
    assert watermark() == (reach(date(2026, 3, 1)), None, None, None)
    assert expire(date(2026, 3, 3)) == (0, 0)
    assert_ledger_consistent()


def test_a_cancellation_before_the_expiry_returns_points_the_run_then_expires(member, mug):
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 100)  # last valid day 2026-03-01
    with time_machine.travel(at(2026, 2, 1, 12), tick=False):
        result = redeem(member, mug)
    with time_machine.travel(at(2026, 3, 1, 20), tick=False):
        services.cancel_redemption(actor="test", redemption_id=int(result["id"]))
    assert balances(member) == (100, 0)
    assert expire(date(2026, 3, 1)) == (1, 100)
    assert expiries(member) == [(-100, 0, "expiry:2026-03-01")]
    assert_ledger_consistent()


def test_pending_until_follows_the_status(member, store_a):
    with time_machine.travel(at(2026, 11, 1, 10), tick=False):
        purchase(member, "129.90")  # pending until 11-08 10:00
    lot = PointsLot.objects.get(member=member)
    assert (lot.status, lot.pending_until) == (LotStatus.PENDING, at(2026, 11, 8, 10))
    duplicate = MemberFactory(home_store=store_a, phone="+8613800000009")
    with time_machine.travel(at(2026, 11, 2, 10), tick=False):
        purchase(duplicate, "20.00")
        merge_members(actor="staff:boss", survivor_id=member.pk, duplicate_id=duplicate.pk, reason="same person")
    assert list(PointsLot.objects.filter(member=duplicate).values_list("status", "pending_until")) == [
        (LotStatus.MERGED, None)
    ]
    assert sorted(PointsLot.objects.filter(member=member).values_list("status", "pending_until")) == [
        (LotStatus.PENDING, at(2026, 11, 8, 10)),
        (LotStatus.PENDING, at(2026, 11, 9, 10)),
    ]
    with time_machine.travel(at(2026, 11, 9, 10), tick=False):
        assert services.release_pending().points == 149
    assert (
        list(PointsLot.objects.filter(member=member).values_list("status", "pending_until"))
        == [(LotStatus.AVAILABLE, None)] * 2
    )
    with pytest.raises(IntegrityError), transaction.atomic():  # the database refuses a pending lot without it
        PointsLot.objects.filter(member=member).update(status=LotStatus.PENDING)
    assert_ledger_consistent()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_starting_while_a_late_lot_is_being_written_waits_for_it_and_reads_from_its_expiry(member):
    """The watermark row's lock orders a run's start after a transaction that opens a lot behind it: the run
    then reads from that lot's expiry (it is written whether or not the row already had an earlier mark)."""
    ExpiryWatermark.objects.create(pk=1, closed_before=at(2026, 3, 2), reopened_from=at(2026, 1, 1))
    late = at(2026, 2, 1)
    written, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                ledger.lower_expiry_watermark(late)  # an earlier mark is there already: still an UPDATE
                written.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert written.wait(10)
    with connection.cursor() as cursor:  # a run's start, in another transaction: it must wait for the writer
        cursor.execute("SET lock_timeout = '500ms'")
        with pytest.raises(OperationalError), transaction.atomic():
            maintenance.expire_prepare(date(2026, 3, 2))
        cursor.execute("SET lock_timeout = 0")
    release.set()
    thread.join()
    with time_machine.travel(at(2026, 3, 3, 0, 30), tick=False):
        maintenance.expire_prepare(date(2026, 3, 2))
    assert watermark() == (at(2026, 3, 2), None, at(2026, 1, 1), at(2026, 3, 3, 0, 30))


def test_a_crashed_run_finishing_after_the_next_dates_run_began_leaves_the_watermark_to_that_run(member):
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 40)  # last valid day 2026-03-01
    expire(date(2026, 2, 27))
    with time_machine.travel(at(2026, 3, 1, 0, 30), tick=False):
        maintenance.expire_prepare(date(2026, 2, 28))  # the run for 02-28 stops here (a crash)
    with time_machine.travel(at(2026, 3, 2, 0, 30), tick=False):
        maintenance.expire_prepare(date(2026, 3, 1))  # the next night's run starts
        with transaction.atomic():
            maintenance.expire_finish(date(2026, 2, 28))  # the 02-28 run resumed and finished: no change
    assert watermark() == (reach(date(2026, 2, 27)), None, reach(date(2026, 2, 27)), at(2026, 3, 2, 0, 30))
    assert maintenance.expiry_floor() == reach(date(2026, 2, 27))
    with time_machine.travel(at(2026, 3, 2, 0, 30), tick=False):
        low, high = maintenance.expire_bounds(date(2026, 3, 1))
        with transaction.atomic():
            maintenance.expire_chunk(low, high + 1, date(2026, 3, 1), at(2026, 3, 2, 0, 30))
        with transaction.atomic():
            maintenance.expire_finish(date(2026, 3, 1))
    assert watermark() == (reach(date(2026, 3, 1)), None, None, None)
    assert expiries(member) == [(-40, 0, "expiry:2026-03-01")]
    assert_ledger_consistent()


def spent_from(member):
    """(lot's points, points taken) of the member's redemption movements, in order."""
    return list(
        LotMovement.objects.filter(entry__member=member, entry__kind=EntryKind.REDEEM)
        .order_by("id")
        .values_list("lot__points", "points")
    )


def test_a_late_lot_behind_the_watermark_is_spent_first(member, mug):
    """A spend reads lots from the watermark on (ledger.SPEND_FLOOR_SQL on PostgreSQL); a lot opened behind it
    lowered reopened_from, so it is still found, and taken first as the soonest to expire."""
    with time_machine.travel(at(2025, 12, 1, 12), tick=False):
        adjust(member, 200)  # last valid day 2026-12-01
    assert expire(date(2026, 3, 1)) == (0, 0)
    with time_machine.travel(at(2026, 3, 5, 10), tick=False):
        purchase(member, "80.00", order_no="OLD1", occurred_at=at(2025, 1, 20, 15))  # lasted until 2026-01-20
        assert watermark() == (reach(date(2026, 3, 1)), at(2026, 1, 21), None, None)
        redeem(member, mug)
    assert spent_from(member) == [(80, -80), (200, -20)]
    assert balances(member) == (180, 0)
    assert lots(member) == [(200, 180, "available", at(2026, 12, 2)), (80, 0, "available", at(2026, 1, 21))]
    assert expire(date(2026, 3, 5)) == (0, 0)
    assert lots(member)[1] == (80, 0, "expired", at(2026, 1, 21))
    assert_ledger_consistent()


@pytest.mark.postgres
@pytest.mark.tampers_ledger
def test_a_spend_does_not_read_lots_behind_the_watermark(member, mug):
    """The bound is applied: a lot made open behind the watermark without lowering it (here by hand, as no
    service does) is not seen by a spend on PostgreSQL, which takes from the next lot instead."""
    with time_machine.travel(at(2025, 3, 1, 12), tick=False):
        adjust(member, 40)  # last valid day 2026-03-01
    with time_machine.travel(at(2025, 12, 1, 12), tick=False):
        adjust(member, 200)
    assert expire(date(2026, 3, 1)) == (1, 40)
    old = PointsLot.objects.get(member=member, points=40)
    PointsLot.objects.filter(pk=old.pk).update(status=LotStatus.AVAILABLE, remaining=40)
    with time_machine.travel(at(2026, 3, 5, 10), tick=False):
        redeem(member, mug)
    assert spent_from(member) == [(200, -100)]
    assert PointsLot.objects.get(pk=old.pk).remaining == 40


@pytest.mark.postgres
@pytest.mark.parametrize("running", [False, True])
@pytest.mark.parametrize("mark", [None, at(2026, 3, 2)])
@pytest.mark.parametrize("reopened", [None, at(2026, 1, 21), at(2026, 6, 1)])
@pytest.mark.parametrize("other", [None, at(2025, 7, 1)])
def test_the_spend_floor_in_sql_is_the_expiry_floor(running, mark, reopened, other):
    """ledger.SPEND_FLOOR_SQL (inside a spend's statement) and maintenance.expiry_floor (the expiry's chunks) are
    the same bound written twice: equal in every state of the watermark. `mark` is what bounds the reading
    (run_from during a run, closed_before between runs); `other` is the other of the two, which must not count."""
    fields = {"reopened_from": reopened}
    if running:
        fields |= {
            "run_from": mark,
            "closed_before": other,
            "run_started_at": at(2026, 3, 3),
            "run_as_of": date(2026, 3, 2),
        }
    else:
        fields |= {"closed_before": mark, "run_from": other, "run_started_at": None, "run_as_of": None}
    ExpiryWatermark.objects.update_or_create(pk=1, defaults=fields)
    expected = None if mark is None else min(value for value in (mark, reopened) if value is not None)
    assert maintenance.expiry_floor() == (maintenance.NO_FLOOR if expected is None else expected)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT floor = '-infinity', CASE WHEN floor <> '-infinity' THEN floor END"  # noqa: S608 - constant
            f" FROM (SELECT {ledger.SPEND_FLOOR_SQL} AS floor) f"
        )
        unbounded, floor = cursor.fetchone()
    assert (unbounded, floor) == (expected is None, expected)


@pytest.mark.postgres
def test_the_spend_floor_without_a_watermark_row_is_unbounded():
    ExpiryWatermark.objects.all().delete()
    assert maintenance.expiry_floor() == maintenance.NO_FLOOR
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {ledger.SPEND_FLOOR_SQL} = '-infinity'")  # noqa: S608 - constant
        assert cursor.fetchone() == (True,)
