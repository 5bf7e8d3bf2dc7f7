"""The points, liability, members and segment-moves reports against the hand-worked shop of conftest.py: the same
exact figures from the snapshots and from the raw tables, JSON and CSV, filters, and 400s for bad parameters."""

from datetime import date, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Sum

from loyalty.scheduling import run_inline
from members.models import Lifecycle, Segment
from points.audit import ledger_mismatches
from points.models import LedgerEntry, PointsAccount
from reports import core
from reports.models import SegmentMoveSnapshot
from tests.reports.core.conftest import D1, D2, D3, at, travel

pytestmark = pytest.mark.django_db


def back_fill(*extra):
    call_command("run_job", "snapshot", "--as-of", D1.isoformat(), "--to", D2.isoformat(), *extra)


@pytest.fixture(params=["snapshots", "raw tables"])
def source(request, shop, today):
    """Every figure must come out the same from the snapshots of D1 and D2 as from the raw tables."""
    if request.param == "snapshots":
        back_fill()
    return request.param


def get(api, path, **params):
    response = api.get(f"/api/v1/reports/{path}/", params)
    assert response.status_code == 200, response.content
    return response.json()


def csv_lines(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return b"".join(response.streaming_content).decode().lstrip("\ufeff").splitlines()


# --- Points --------------------------------------------------------------------------------------------------

D1_FIGURES = {
    # issued 100 + 50 + 5; redeemed the kettle; M1's 80 expired at 00:30; M1 adjusted +500
    "issued": 155,
    "redeemed": 200,
    "expired": 80,
    "reversed": 0,
    "adjusted": 500,
    "redemption_rate": 1.2903,  # 200 / 155
    "breakage": 0.5161,  # 80 / 155
}
D2_FIGURES = {
    # issued 10 + 1200 + 2 + 30; the kettle's 200 given back; 20 reversed by M2's refund
    "issued": 1242,
    "redeemed": -200,
    "expired": 0,
    "reversed": 20,
    "adjusted": 0,
    "redemption_rate": -0.161,  # -200 / 1242
    "breakage": 0.0,
}


def test_points_per_day_with_rates_and_totals(source, marketer_api):
    body = get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-02"})
    assert body == {
        "interval": "day",
        "from": "2026-10-01",
        "to": "2026-10-02",
        "rows": [{"period": "2026-10-01", **D1_FIGURES}, {"period": "2026-10-02", **D2_FIGURES}],
        "totals": {
            "issued": 1397,
            "redeemed": 0,
            "expired": 80,
            "reversed": 20,
            "adjusted": 500,
            "redemption_rate": 0.0,
            "breakage": 0.0573,  # 80 / 1397
        },
    }


def test_points_today_come_from_the_ledger_next_to_snapshot_days(source, marketer_api):
    body = get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-03"})
    assert body["rows"][2] == {
        "period": "2026-10-03",
        "issued": 5,  # M5's sign-in at 00:40
        "redeemed": 0,
        "expired": 0,
        "reversed": 0,
        "adjusted": 0,
        "redemption_rate": 0.0,
        "breakage": 0.0,
    }
    assert body["totals"]["issued"] == 1402


def test_points_per_week_and_month(source, marketer_api):
    week = get(marketer_api, "points", **{"from": "2026-09-28", "to": "2026-10-03", "interval": "week"})
    month = get(marketer_api, "points", **{"from": "2026-09-20", "to": "2026-10-03", "interval": "month"})
    three_days = {
        "issued": 1402,
        "redeemed": 0,
        "expired": 80,
        "reversed": 20,
        "adjusted": 500,
        "redemption_rate": 0.0,
        "breakage": 0.0571,  # 80 / 1402
    }
    assert week["rows"] == [{"period": "2026-09-28", **three_days}]  # the Monday of the week
    assert month["rows"] == [
        {"period": "2026-09", **dict.fromkeys(three_days, 0), "redemption_rate": 0.0, "breakage": 0.0},
        {"period": "2026-10", **three_days},
    ]


def test_points_of_one_store_or_one_channel(source, marketer_api):
    store_a = get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-02", "store": "A001"})
    online = get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-02", "channel": "online"})
    sign_in = get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-03", "channel": "sign_in"})

    # At A: M1's 100 and the kettle on D1; M1's 10, M4's 30 and the kettle given back on D2. Adjustments and
    # expiry have no store.
    assert [(r["issued"], r["redeemed"], r["expired"], r["adjusted"]) for r in store_a["rows"]] == [
        (100, 200, 0, 0),
        (40, -200, 0, 0),
    ]
    assert (store_a["rows"][0]["redemption_rate"], store_a["rows"][1]["redemption_rate"]) == (2.0, -5.0)
    assert [(r["issued"], r["reversed"]) for r in online["rows"]] == [(50, 0), (0, 20)]  # M2's order, refunded
    assert sign_in["totals"]["issued"] == 10  # M3 on D1, M5 on D3


def test_points_as_csv(source, marketer_api):
    response = marketer_api.get("/api/v1/reports/points/", {"from": "2026-10-01", "to": "2026-10-02", "format": "csv"})
    assert csv_lines(response) == [
        "period,issued,redeemed,expired,reversed,adjusted,redemption_rate,breakage",
        "2026-10-01,155,200,80,0,500,1.2903,0.5161",
        "2026-10-02,1242,-200,0,20,0,-0.161,0.0",
        "total,1397,0,80,20,500,0.0,0.0573",
    ]


# --- Liability -----------------------------------------------------------------------------------------------


def months(due):
    """The 12 months of October 2026 to September 2027, with `due` points in some."""
    keys = [f"2026-{m:02d}" for m in range(10, 13)] + [f"2027-{m:02d}" for m in range(1, 10)]
    return [{"month": key, "points": due.get(key, 0)} for key in keys]


def test_liability_at_the_end_of_past_days_and_today(source, marketer_api):
    expected_source = "snapshot" if source == "snapshots" else "ledger"
    assert get(marketer_api, "liability", as_of="2026-10-01") == {
        "as_of": "2026-10-01",
        "points_available": 755,
        "points_pending": 150,
        "points_outstanding": 905,
        "money_value": "9.05",  # 905 / 100
        "cash_points_per_unit": 100,
        "expiring": months({"2026-11": 300}),  # the February lot was spent on the kettle that day
        "source": expected_source,
    }
    assert get(marketer_api, "liability") == {  # default: yesterday
        "as_of": "2026-10-02",
        "points_available": 957,
        "points_pending": 1370,
        "points_outstanding": 2327,
        "money_value": "46.54",  # 2327 / 50, the rate from D2 noon
        "cash_points_per_unit": 50,
        "expiring": months({"2026-11": 300, "2027-02": 150}),
        "source": expected_source,
    }
    assert get(marketer_api, "liability", as_of="2026-10-03") == {
        "as_of": "2026-10-03",
        "points_available": 962,  # + M5's sign-in
        "points_pending": 1370,
        "points_outstanding": 2332,
        "money_value": "46.64",
        "cash_points_per_unit": 50,
        "expiring": months({"2026-11": 300, "2027-02": 150}),
        "source": "accounts",
    }


def test_liability_today_equals_the_balances_check_ledger_verifies(shop, today):
    """check_ledger proves each account equals its entries and lots; the report's today is those accounts, and
    the same sums over the entries (what a past date uses)."""
    assert list(ledger_mismatches()) == []
    accounts = PointsAccount.objects.aggregate(available=Sum("available"), pending=Sum("pending"))
    entries = LedgerEntry.objects.aggregate(available=Sum("available_delta"), pending=Sum("pending_delta"))
    report = core.liability(D3, today=D3)
    assert (report["points_available"], report["points_pending"]) == (accounts["available"], accounts["pending"])
    assert (report["points_available"], report["points_pending"]) == (entries["available"], entries["pending"])
    assert (accounts["available"], accounts["pending"]) == (962, 1370)


def test_liability_as_csv(source, marketer_api):
    response = marketer_api.get("/api/v1/reports/liability/", {"as_of": "2026-10-02", "format": "csv"})
    lines = csv_lines(response)
    assert lines[0] == "as_of,points_available,points_pending,points_outstanding,money_value,month,points_expiring"
    assert lines[1:4] == [
        "2026-10-02,957,1370,2327,46.54,2026-10,0",
        "2026-10-02,957,1370,2327,46.54,2026-11,300",
        "2026-10-02,957,1370,2327,46.54,2026-12,0",
    ]
    assert lines[5] == "2026-10-02,957,1370,2327,46.54,2027-02,150"
    assert len(lines) == 13


# --- Members -------------------------------------------------------------------------------------------------


def unscored(members):
    return [{"key": key, "members": 0} for key in Segment.values] + [{"key": None, "members": members}]


def no_lifecycle(members):
    return [{"key": key, "members": 0} for key in Lifecycle.values] + [{"key": None, "members": members}]


def tiers(regular, silver):
    return [
        {"key": "regular", "members": regular},
        {"key": "silver", "members": silver},
        {"key": "gold", "members": 0},
        {"key": "diamond", "members": 0},
    ]


def test_members_new_active_and_by_tier(source, marketer_api):
    assert get(marketer_api, "members", **{"from": "2026-10-01", "to": "2026-10-02"}) == {
        "from": "2026-10-01",
        "to": "2026-10-02",
        "total": 4,  # M1-M4; M5 joined after the end of D2
        "new": 2,  # M2 on D1, M4 on D2 (23:30)
        "active": 4,  # M1 (both days, once), M2, M3, M4
        "by_tier": tiers(regular=3, silver=1),
        "by_segment": unscored(4),  # no RFM run
        "by_lifecycle": no_lifecycle(4),
        "rows": [
            {"period": "2026-10-01", "new": 1, "active": 2},  # M1, M2
            {"period": "2026-10-02", "new": 1, "active": 3},  # M1, M3, M4
        ],
    }


def test_members_of_one_home_store_per_week_and_up_to_today(source, marketer_api):
    store_b = get(marketer_api, "members", **{"from": "2026-10-01", "to": "2026-10-02", "store": "B001"})
    week = get(marketer_api, "members", **{"from": "2026-10-01", "to": "2026-10-02", "interval": "week"})
    to_today = get(marketer_api, "members", **{"from": "2026-10-01", "to": "2026-10-03"})

    assert (store_b["total"], store_b["new"], store_b["active"], store_b["by_tier"]) == (2, 1, 2, tiers(1, 1))
    assert store_b["rows"] == [
        {"period": "2026-10-01", "new": 0, "active": 0},
        {"period": "2026-10-02", "new": 1, "active": 2},
    ]
    assert week["rows"] == [{"period": "2026-09-28", "new": 2, "active": 4}]
    assert (to_today["total"], to_today["new"], to_today["active"]) == (5, 3, 4)  # M5 joined today, bought nothing
    assert to_today["rows"][2] == {"period": "2026-10-03", "new": 1, "active": 0}
    assert to_today["by_tier"] == tiers(regular=4, silver=1)


def test_active_over_a_period_longer_than_the_recency_rows_comes_from_the_purchases(source, marketer_api):
    first = D2 - timedelta(days=core.RECENCY_DAYS)
    body = get(marketer_api, "members", **{"from": first.isoformat(), "to": "2026-10-02", "interval": "month"})
    assert (body["active"], [row["active"] for row in body["rows"]]) == (4, [0, 0, 0, 4])


def test_members_as_csv(source, marketer_api):
    response = marketer_api.get(
        "/api/v1/reports/members/", {"from": "2026-10-01", "to": "2026-10-02", "store": "A001", "format": "csv"}
    )
    lines = csv_lines(response)
    assert lines[:5] == [
        "section,key,new,active,members",
        "period,2026-10-01,1,2,",
        "period,2026-10-02,0,1,",
        "total,2026-10-01..2026-10-02,1,2,2",
        "by_tier,regular,,,2",
    ]
    assert lines[-1] == "by_lifecycle,,,,2"


# --- Segment moves -------------------------------------------------------------------------------------------

MOVES_D1_D2 = [
    {"from_segment": "important_winback", "to_segment": "general_value", "members": 1},  # M1
    {"from_segment": "general_winback", "to_segment": "general_winback", "members": 1},  # M2
    {"from_segment": "inactive", "to_segment": "important_develop", "members": 1},  # M3
    {"from_segment": None, "to_segment": "general_develop", "members": 1},  # M4 joined since
]


@pytest.mark.postgres
def test_segment_moves_between_two_rfm_runs(shop, today, marketer_api):
    """The RFM runs of D1 and D2 as worked out in test_snapshot_job.py."""
    run_inline("rfm", D1)
    run_inline("rfm", D2)
    body = get(marketer_api, "segment-moves", **{"from": "2026-10-01", "to": "2026-10-02"})
    assert body == {
        "from": "2026-10-01",
        "to": "2026-10-02",
        "from_rfm_as_of": "2026-10-01",
        "to_rfm_as_of": "2026-10-02",
        "moves": MOVES_D1_D2,
    }
    # Today has no run: the newest one before it; before the first run: none.
    later = get(marketer_api, "segment-moves", **{"from": "2026-10-01", "to": "2026-10-03"})
    assert (later["to_rfm_as_of"], later["moves"]) == ("2026-10-02", MOVES_D1_D2)
    before = get(marketer_api, "segment-moves", **{"from": "2026-09-01", "to": "2026-10-02"})
    assert (before["from_rfm_as_of"], before["moves"]) == (None, [])
    csv = csv_lines(
        marketer_api.get("/api/v1/reports/segment-moves/", {"from": "2026-10-01", "to": "2026-10-02", "format": "csv"})
    )
    assert csv == [
        "from_segment,to_segment,members",
        "important_winback,general_value,1",
        "general_winback,general_winback,1",
        "inactive,important_develop,1",
        ",general_develop,1",
    ]


@pytest.mark.postgres
def test_segment_moves_are_stored_and_counted_again_after_an_rfm_run_is_redone(shop, today):
    run_inline("rfm", D1)
    run_inline("rfm", D2)
    assert core.segment_moves(D1, D2)["moves"] == MOVES_D1_D2
    SegmentMoveSnapshot.objects.filter(from_segment="inactive").update(members=99)
    assert core.segment_moves(D1, D2)["moves"][2]["members"] == 99  # read from the stored rows

    with travel(at(D3, 13)):  # an hour later
        run_inline("rfm", D2, force=True)
        assert core.segment_moves(D1, D2)["moves"] == MOVES_D1_D2
    assert SegmentMoveSnapshot.objects.count() == 4


# --- Parameters and access -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("points", {"from": "2026-10-02", "to": "2026-10-01"}, "from"),
        ("points", {"from": "2023-10-01", "to": "2026-10-02"}, "from"),
        ("points", {"to": "2026-10-04"}, "to"),
        ("points", {"from": "1 October"}, "from"),
        ("points", {"store": "NOPE"}, "store"),
        ("points", {"channel": "fax"}, "channel"),
        ("points", {"interval": "year"}, "interval"),
        ("members", {"store": "NOPE"}, "store"),
        ("members", {"interval": "hour"}, "interval"),
        ("liability", {"as_of": "2026-10-04"}, "as_of"),
        ("liability", {"as_of": "soon"}, "as_of"),
        ("segment-moves", {"from": "2026-10-03", "to": "2026-10-02"}, "from"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(shop, today, marketer_api, path, params, field):
    response = marketer_api.get(f"/api/v1/reports/{path}/", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and list(body["errors"]) == [field]


def test_the_default_range_is_the_30_days_ending_yesterday_and_3_years_are_allowed(shop, today, marketer_api):
    body = get(marketer_api, "points")
    assert (body["from"], body["to"], len(body["rows"])) == ("2026-09-03", "2026-10-02", 30)
    longest = get(marketer_api, "points", **{"from": "2023-10-02", "to": "2026-10-02", "interval": "month"})
    assert longest["totals"]["issued"] == 1397


@pytest.mark.parametrize("path", ["points", "liability", "members", "segment-moves"])
def test_reports_are_for_admins_and_marketers(db, today, admin_api, marketer_api, clerk_api, path):
    assert admin_api.get(f"/api/v1/reports/{path}/").status_code == 200
    assert marketer_api.get(f"/api/v1/reports/{path}/").status_code == 200
    assert clerk_api.get(f"/api/v1/reports/{path}/").status_code == 403


def test_a_report_day_with_nothing_is_zeros(db, today, marketer_api):
    body = get(marketer_api, "members", **{"from": "2026-10-02", "to": "2026-10-02"})
    assert (body["total"], body["new"], body["active"], body["rows"]) == (
        0,
        0,
        0,
        [{"period": "2026-10-02", "new": 0, "active": 0}],
    )
    assert get(marketer_api, "liability")["points_outstanding"] == 0
    assert date.fromisoformat(get(marketer_api, "segment-moves")["to"]) == D2


def test_a_member_merged_away_counts_until_her_merge_and_her_purchases_go_with_her(shop, today, marketer_api):
    """M4 is merged into M3 at D2 23:50: from then on she is no member of her own (not in D2's total, nor new on
    D2), and her order of 23:40 is M3's (active on D2: M1 and M3). The merge's two entries sum to zero: no points
    figure changes."""
    from members.services.merge import merge_members

    with travel(at(D2, 23, 50)):
        merge_members(actor="test", survivor_id=shop["M3"].pk, duplicate_id=shop["M4"].pk, reason="one person")
    raw = get(marketer_api, "members", **{"from": "2026-10-01", "to": "2026-10-02"})
    points_raw = get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-02"})
    back_fill()
    stored = get(marketer_api, "members", **{"from": "2026-10-01", "to": "2026-10-02"})

    assert raw == stored
    assert (stored["total"], stored["new"], stored["active"]) == (3, 1, 3)
    assert stored["rows"] == [
        {"period": "2026-10-01", "new": 1, "active": 2},
        {"period": "2026-10-02", "new": 0, "active": 2},
    ]
    assert stored["by_tier"] == tiers(regular=2, silver=1)
    assert points_raw["rows"][1] == {"period": "2026-10-02", **D2_FIGURES}
    assert get(marketer_api, "points", **{"from": "2026-10-01", "to": "2026-10-02"}) == points_raw
    assert get(marketer_api, "liability", as_of="2026-10-02")["points_outstanding"] == 2327
