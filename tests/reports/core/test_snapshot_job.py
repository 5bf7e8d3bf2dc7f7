"""The snapshot job against the hand-worked shop of conftest.py: each day's rows, exactly; idempotent per date;
resumed after a crash with the same rows; back-filled over a range by run_job --as-of … --to …."""

import dataclasses
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from loyalty import scheduling
from loyalty.models import JobRun
from reports.models import (
    ExpiryForecastSnapshot,
    MemberDaySnapshot,
    MemberRecencySnapshot,
    MemberSnapshot,
    PointsFlowSnapshot,
    SnapshotDay,
)
from tests.reports.core.conftest import D1, D2, D3

pytestmark = pytest.mark.django_db
ALL_TABLES = (
    SnapshotDay,
    PointsFlowSnapshot,
    MemberSnapshot,
    MemberDaySnapshot,
    MemberRecencySnapshot,
    ExpiryForecastSnapshot,
)


def store_code(row_store):
    return row_store.code if row_store else None


def flow(day):
    return {
        (store_code(r.store), r.channel, r.kind, r.entries, r.points, r.available_delta, r.pending_delta)
        for r in PointsFlowSnapshot.objects.filter(business_date=day).select_related("store")
    }


def members(day):
    return sorted(
        (store_code(r.home_store), r.tier, r.segment, r.lifecycle, r.members, r.new_members, r.active_members)
        for r in MemberSnapshot.objects.filter(business_date=day).select_related("home_store")
    )


def member_days(day):
    return sorted(
        (store_code(r.home_store), r.members, r.new_members, r.active_members)
        for r in MemberDaySnapshot.objects.filter(business_date=day).select_related("home_store")
    )


def recency(day):
    return sorted(
        (store_code(r.home_store), r.last_purchase_date, r.members)
        for r in MemberRecencySnapshot.objects.filter(business_date=day).select_related("home_store")
    )


def forecast(day):
    return {r.month: r.points for r in ExpiryForecastSnapshot.objects.filter(business_date=day)}


def day_row(day):
    row = SnapshotDay.objects.get(business_date=day)
    return (row.points_available, row.points_pending, row.members, row.cash_points_per_unit, row.rfm_as_of)


def everything():
    return {
        day: (flow(day), members(day), member_days(day), recency(day), forecast(day), day_row(day)) for day in (D1, D2)
    }


def back_fill(*extra):
    call_command("run_job", "snapshot", "--as-of", D1.isoformat(), "--to", D2.isoformat(), *extra)


EXPECTED_FLOW = {
    D1: {
        (None, None, "expire", 1, -80, -80, 0),
        ("A001", "offline", "earn", 1, 100, 0, 100),
        (None, None, "adjust", 1, 500, 500, 0),
        ("B001", "online", "earn", 1, 50, 0, 50),
        ("A001", None, "redeem", 1, -200, -200, 0),
        (None, "sign_in", "earn", 1, 5, 5, 0),
    },
    D2: {
        ("A001", "offline", "earn", 2, 40, 0, 40),  # M1's 10 and M4's 30 (23:40)
        ("B001", "online", "reverse", 1, -20, 0, -20),  # from the pending points of M2's order
        ("B001", "offline", "earn", 1, 1200, 0, 1200),
        ("A001", None, "cancel", 1, 200, 200, 0),
        (None, "share", "earn", 1, 2, 2, 0),
    },
}
EXPECTED_MEMBERS = {
    # home store, tier, segment, lifecycle (no RFM run: ""), members, new, active
    D1: [("A001", "regular", "", "", 2, 1, 2), ("B001", "regular", "", "", 1, 0, 0)],
    # M3 is silver from D2 10:00; M4 joined at 23:30 and bought at 23:40; M5 joined after the end of D2
    D2: [
        ("A001", "regular", "", "", 2, 0, 1),
        ("B001", "regular", "", "", 1, 1, 1),
        ("B001", "silver", "", "", 1, 0, 1),
    ],
}


def test_each_days_snapshot_holds_its_hand_worked_figures(shop, today):
    back_fill()

    assert flow(D1) == EXPECTED_FLOW[D1]
    assert flow(D2) == EXPECTED_FLOW[D2]
    assert members(D1) == EXPECTED_MEMBERS[D1]
    assert members(D2) == EXPECTED_MEMBERS[D2]
    assert member_days(D1) == [("A001", 2, 1, 2), ("B001", 1, 0, 0)]
    assert member_days(D2) == [("A001", 2, 0, 1), ("B001", 2, 1, 2)]
    assert recency(D1) == [("A001", D1, 2)]
    assert recency(D2) == [("A001", D1, 1), ("A001", D2, 1), ("B001", D2, 2)]
    # The liability at the end of each day from the ledger, whatever happened after it (D3's sign-in is not in D2):
    # D1: 80 + 300 + 150 − 80 + 500 − 200 + 5 = 755 available, 100 + 50 pending.
    # D2: 755 + 200 + 2 = 957 available, 150 + 10 − 20 + 1200 + 30 = 1370 pending; the cash rate 50 from D2 noon.
    assert day_row(D1) == (755, 150, 3, 100, None)
    assert day_row(D2) == (957, 1370, 4, 50, None)
    # The lots as they stood: at the end of D1 the February lot was spent (the redemption), at the end of D2 it is
    # back (the cancellation); lots earned since D1 last until October 2027, past the 12 months.
    assert forecast(D1) == {date(2026, 11, 1): 300}
    assert forecast(D2) == {date(2026, 11, 1): 300, date(2027, 2, 1): 150}
    assert not MemberSnapshot.objects.filter(partial=True).exists()
    assert not MemberRecencySnapshot.objects.filter(partial=True).exists()
    run = JobRun.objects.get(job="snapshot", business_date=D2)
    assert run.counts == {
        "member_groups": 3,
        "members": 4,
        "points_available": 957,
        "points_pending": 1370,
        "segment_moves": 0,
    }


def test_running_a_date_again_replaces_its_rows_and_never_doubles_them(shop, today):
    back_fill()
    first = everything()
    counts = [model.objects.count() for model in ALL_TABLES]

    back_fill("--force")

    assert everything() == first
    assert [model.objects.count() for model in ALL_TABLES] == counts
    assert JobRun.objects.filter(job="snapshot").count() == 2


def test_a_run_that_crashed_mid_way_resumes_to_the_same_rows(shop, today, monkeypatch):
    back_fill()
    expected = everything()
    for model in ALL_TABLES:
        model.objects.all().delete()
    JobRun.objects.filter(job="snapshot").delete()

    definition = scheduling.job("snapshot")
    failing = {"member": shop["M3"].pk}

    def run_chunk(as_of, start, stop, params):
        if failing["member"] is not None and start <= failing["member"] < stop:
            failing["member"] = None
            raise RuntimeError("the worker was killed")
        return definition.run_chunk(as_of, start, stop, params)

    monkeypatch.setitem(
        scheduling._jobs, "snapshot", dataclasses.replace(definition, chunk_size=1, run_chunk=run_chunk)
    )
    with pytest.raises(RuntimeError):
        scheduling.run_inline("snapshot", D1)
    # M1's and M2's chunks are done (their partial rows kept with their done marks); the date is not readable yet.
    assert not SnapshotDay.objects.exists()
    assert MemberSnapshot.objects.filter(business_date=D1, partial=True).count() == 2

    assert scheduling.run_inline("snapshot", D1).status == "done"
    scheduling.run_inline("snapshot", D2)
    assert everything() == expected


def test_a_back_fill_whose_last_date_has_not_ended_runs_nothing(shop, today):
    with pytest.raises(CommandError, match="has not ended yet"):
        call_command("run_job", "snapshot", "--as-of", D1.isoformat(), "--to", D3.isoformat())
    with pytest.raises(CommandError, match="needs --as-of"):
        call_command("run_job", "snapshot", "--to", D2.isoformat())
    with pytest.raises(CommandError, match="before --as-of"):
        call_command("run_job", "snapshot", "--as-of", D2.isoformat(), "--to", D1.isoformat())
    assert not JobRun.objects.filter(job="snapshot").exists()


def test_a_day_without_members_or_entries_has_an_empty_snapshot(db):
    scheduling.run_inline("snapshot", date(2026, 1, 5))
    assert day_row(date(2026, 1, 5)) == (0, 0, 0, 100, None)
    assert [model.objects.count() for model in ALL_TABLES[1:]] == [0, 0, 0, 0, 0]


@pytest.mark.postgres
def test_segments_come_from_the_newest_rfm_run_and_the_days_segment_moves_are_prepared(shop, today):
    """RFM (365 days) on D1: buyers M1 (recency 0, 1 order, 100.00) and M2 (0, 1, 50.00); means 0, 1, 75.00 →
    M1 important_winback, M2 general_winback, M3 inactive. On D2: M1 (0, 2, 110.00), M2 (1, 1, 30.00 net of the
    refund), M3 (0, 1, 1200.00), M4 (0, 1, 30.00); means 0.25, 1.25, 342.50 → general_value, general_winback,
    important_develop, general_develop. Lifecycle: M1 active, the others joined within 30 days: new."""
    from reports.models import SegmentMoveSnapshot

    scheduling.run_inline("rfm", D1)
    scheduling.run_inline("rfm", D2)
    back_fill()

    assert members(D1) == [
        ("A001", "regular", "general_winback", "new", 1, 1, 1),
        ("A001", "regular", "important_winback", "active", 1, 0, 1),
        ("B001", "regular", "inactive", "new", 1, 0, 0),
    ]
    assert members(D2) == [
        ("A001", "regular", "general_value", "active", 1, 0, 1),
        ("A001", "regular", "general_winback", "new", 1, 0, 0),
        ("B001", "regular", "general_develop", "new", 1, 1, 1),
        ("B001", "silver", "important_develop", "new", 1, 0, 1),
    ]
    assert (day_row(D1)[4], day_row(D2)[4]) == (D1, D2)
    # D2's usual ranges (1, 6, 29 and 89 days back) all start from the D1 run, the only earlier one.
    assert set(
        SegmentMoveSnapshot.objects.values_list("from_date", "to_date", "from_segment", "to_segment", "members")
    ) == {
        (D1, D2, "important_winback", "general_value", 1),
        (D1, D2, "general_winback", "general_winback", 1),
        (D1, D2, "inactive", "important_develop", 1),
        (D1, D2, "", "general_develop", 1),
    }
