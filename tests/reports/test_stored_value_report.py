"""GET /api/v1/reports/stored-value/: the liability now (total and by store) and the flows per business date and
store, every figure worked out by hand (Asia/Shanghai, in cents).

Rules: every store: 100.00 → 10.00 bonus valid on the top-up's day only; store B: 500.00 → 80.00, never expiring.
D1 = 2026-10-01
  10:00  M1 tops up 100.00 at A                → 10000 principal + 1000 bonus (valid through D1)
  11:00  M2 tops up 500.00 at B                → 50000 + 8000
  12:00  M1 pays 55.00 at A                    → 5000 principal + 500 bonus
D2 = 2026-10-02
  09:00  M2 pays 58.00 at B                    → 5000 + 800
  10:00  M1's payment refunded 11.00           → her 500 bonus left expired lazily first (no store); 1000 + 100
         back at A, and the 100 bonus, past its validity, expires at once (at A)
  11:00  M2's top-up: 100.00 withdrawn         → 10000 principal, 1600 bonus forfeited (⌈7200 × 10000 ÷ 45000⌉)
  12:00  M1 adjusted +2.00 principal           (no store)
Now (D3 noon): M1 6200 + 0, M2 35000 + 5600.
"""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Sum

from loyalty.scheduling import run_inline
from reports.models import StoredValueFlowSnapshot
from stored_value.models import StoredValueEntry, StoredValueLot
from tests.factories import MemberFactory
from tests.stored_value.helpers import adjust, assert_ledger_consistent, pay, refund, rule, top_up, withdraw

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
D1, D2 = date(2026, 10, 1), date(2026, 10, 2)
URL = "/api/v1/reports/stored-value/"
ZERO = {
    "top_ups": 0,
    "topped_up_cents": 0,
    "bonus_given_cents": 0,
    "payments": 0,
    "paid_principal_cents": 0,
    "paid_bonus_cents": 0,
    "refunds": 0,
    "refunded_principal_cents": 0,
    "refunded_bonus_cents": 0,
    "withdrawals": 0,
    "withdrawn_cents": 0,
    "bonus_forfeited_cents": 0,
    "bonus_expired_cents": 0,
    "adjusted_principal_cents": 0,
    "adjusted_bonus_cents": 0,
}


def at(day, hour):
    return time_machine.travel(datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI), tick=False)


@pytest.fixture
def shop(store_a, store_b):
    rule([{"amount": 10_000, "bonus": 1_000}], bonus_valid_days=1)
    rule([{"amount": 50_000, "bonus": 8_000}], store=store_b)
    m1, m2 = MemberFactory(home_store=store_a), MemberFactory(home_store=store_b)
    with at(D1, 10):
        top_up(m1, 10_000, store=store_a)
    with at(D1, 11):
        m2_top_up = top_up(m2, 50_000, store=store_b)
    with at(D1, 12):
        m1_payment = pay(m1, 5_500, store=store_a)
    with at(D2, 9):
        pay(m2, 5_800, store=store_b)
    with at(D2, 10):
        refund(m1_payment["id"], 1_100)
    with at(D2, 11):
        withdraw(m2_top_up["id"], 10_000)
    with at(D2, 12):
        adjust(m1, principal=200)
    with at(date(2026, 10, 3), 12):
        yield


ROWS = [
    {
        "date": "2026-10-01",
        "store": "A001",
        **ZERO,
        "top_ups": 1,
        "topped_up_cents": 10_000,
        "bonus_given_cents": 1_000,
        "payments": 1,
        "paid_principal_cents": 5_000,
        "paid_bonus_cents": 500,
    },
    {
        "date": "2026-10-01",
        "store": "B001",
        **ZERO,
        "top_ups": 1,
        "topped_up_cents": 50_000,
        "bonus_given_cents": 8_000,
    },
    {
        "date": "2026-10-02",
        "store": "A001",
        **ZERO,
        "refunds": 1,
        "refunded_principal_cents": 1_000,
        "refunded_bonus_cents": 100,
        "bonus_expired_cents": 100,
    },
    {
        "date": "2026-10-02",
        "store": "B001",
        **ZERO,
        "payments": 1,
        "paid_principal_cents": 5_000,
        "paid_bonus_cents": 800,
    },
    {
        "date": "2026-10-02",
        "store": None,
        **ZERO,
        "withdrawals": 1,
        "withdrawn_cents": 10_000,
        "bonus_forfeited_cents": 1_600,
        "bonus_expired_cents": 500,
        "adjusted_principal_cents": 200,
    },
]


def test_the_report_gives_the_liability_by_store_and_the_flows_per_day_and_store(shop, marketer_api):
    response = marketer_api.get(URL, {"from": "2026-10-01", "to": "2026-10-02"})

    assert response.status_code == 200
    assert response.json() == {
        "from": "2026-10-01",
        "to": "2026-10-02",
        "liability": {
            "principal_cents": 41_200,
            "bonus_cents": 5_600,
            "total_cents": 46_800,
            "by_store": [
                {"store": "A001", "principal_cents": 6_000, "bonus_cents": 0, "total_cents": 6_000},
                {"store": "B001", "principal_cents": 35_000, "bonus_cents": 5_600, "total_cents": 40_600},
                {"store": None, "principal_cents": 200, "bonus_cents": 0, "total_cents": 200},
            ],
        },
        "rows": ROWS,
        "totals": {
            "top_ups": 2,
            "topped_up_cents": 60_000,
            "bonus_given_cents": 9_000,
            "payments": 2,
            "paid_principal_cents": 10_000,
            "paid_bonus_cents": 1_300,
            "refunds": 1,
            "refunded_principal_cents": 1_000,
            "refunded_bonus_cents": 100,
            "withdrawals": 1,
            "withdrawn_cents": 10_000,
            "bonus_forfeited_cents": 1_600,
            "bonus_expired_cents": 600,
            "adjusted_principal_cents": 200,
            "adjusted_bonus_cents": 0,
            "breakage": 0.0667,
        },
    }


@pytest.mark.parametrize("snapshot_days", [[D1, D2], [D1]])
def test_dates_with_a_snapshot_read_it_with_the_same_figures(shop, marketer_api, snapshot_days):
    from_ledger = marketer_api.get(URL, {"from": "2026-10-01", "to": "2026-10-02"}).json()
    for day in snapshot_days:
        assert run_inline("snapshot", day).status == "done"

    assert StoredValueFlowSnapshot.objects.filter(business_date=D1).count() == 5  # A: top_up, bonus, pay; B: two
    assert marketer_api.get(URL, {"from": "2026-10-01", "to": "2026-10-02"}).json() == from_ledger
    # ...and it is the snapshot they read: a snapshot row changed by hand shows.
    StoredValueFlowSnapshot.objects.filter(business_date=D1, kind="top_up", store__code="B001").update(entries=7)
    assert marketer_api.get(URL, {"from": "2026-10-01", "to": "2026-10-01"}).json()["rows"][1]["top_ups"] == 7


def test_the_liability_equals_the_sums_check_ledger_verifies(shop, marketer_api):
    liability = marketer_api.get(URL).json()["liability"]

    entries = StoredValueEntry.objects.aggregate(principal=Sum("principal_delta"), bonus=Sum("bonus_delta"))
    lots = StoredValueLot.objects.aggregate(principal=Sum("principal_remaining"), bonus=Sum("bonus_remaining"))
    assert (liability["principal_cents"], liability["bonus_cents"]) == (entries["principal"], entries["bonus"])
    assert (liability["principal_cents"], liability["bonus_cents"]) == (lots["principal"], lots["bonus"])
    assert sum(store["total_cents"] for store in liability["by_store"]) == liability["total_cents"]
    assert_ledger_consistent()


def test_one_store_and_one_day(shop, marketer_api):
    body = marketer_api.get(URL, {"from": "2026-10-02", "to": "2026-10-02", "store": "B001"}).json()

    assert body["rows"] == [ROWS[3]]
    assert body["liability"] == {
        "principal_cents": 35_000,
        "bonus_cents": 5_600,
        "total_cents": 40_600,
        "by_store": [{"store": "B001", "principal_cents": 35_000, "bonus_cents": 5_600, "total_cents": 40_600}],
    }
    assert (body["totals"]["payments"], body["totals"]["breakage"]) == (1, 0.0)


def test_the_report_as_csv(shop, marketer_api):
    response = marketer_api.get(URL, {"from": "2026-10-02", "to": "2026-10-02", "store": "A001", "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    lines = b"".join(response.streaming_content).decode().lstrip("\ufeff").splitlines()
    assert lines == [
        "section,date,store,top_ups,topped_up_cents,bonus_given_cents,payments,paid_principal_cents,paid_bonus_cents,"
        "refunds,refunded_principal_cents,refunded_bonus_cents,withdrawals,withdrawn_cents,bonus_forfeited_cents,"
        "bonus_expired_cents,adjusted_principal_cents,adjusted_bonus_cents,principal_cents,bonus_cents,total_cents",
        "day,2026-10-02,A001,0,0,0,0,0,0,1,1000,100,0,0,0,100,0,0,,,",
        "total,2026-10-02..2026-10-02,,0,0,0,0,0,0,1,1000,100,0,0,0,100,0,0,,,",
        "liability,,A001,,,,,,,,,,,,,,,,6000,0,6000",
        "liability_total,,,,,,,,,,,,,,,,,,6000,0,6000",
    ]


def test_bad_parameters_are_400_and_clerks_are_refused(shop, marketer_api, clerk_api):
    unknown = marketer_api.get(URL, {"store": "Z999"})
    backwards = marketer_api.get(URL, {"from": "2026-10-02", "to": "2026-10-01"})

    assert (unknown.status_code, unknown.json()["code"], list(unknown.json()["errors"])) == (400, "invalid", ["store"])
    assert (backwards.status_code, list(backwards.json()["errors"])) == (400, ["from"])
    assert clerk_api.get(URL).status_code == 403
