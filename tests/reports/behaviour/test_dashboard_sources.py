"""Every request the admin dashboard makes (reports/static/reports/dashboard.js: for a period of n days ending
yesterday, the same reports for the n days before it too) is answered from the daily snapshots and the stored
results, once the nightly jobs have run: none reads the purchases, refunds, order lines, ledger, lots, accounts,
members or RFM rows. The shop of conftest.py; today is 10 April, yesterday 9 April."""

import re
from datetime import date, timedelta

import pytest

from loyalty.scheduling import run_inline
from reports.dashboard import PERIOD_DAYS

pytestmark = pytest.mark.django_db

AS_OF = date(2026, 4, 9)
RAW_TABLES = re.compile(
    r"\b(members_purchase|members_refund|members_purchaseline|members_member|members_rfmsnapshot"
    r"|points_ledgerentry|points_pointslot|points_pointsaccount|points_redemption)\b"
)


def dashboard_requests(days):
    """The (path, query) pairs the script asks for a period of `days` (periodFor, the parts' report() calls)."""
    first = AS_OF - timedelta(days=days - 1)
    previous_to = first - timedelta(days=1)
    previous_from = previous_to - timedelta(days=days - 1)
    interval = "week" if days > 31 else "day"
    current = {"from": first.isoformat(), "to": AS_OF.isoformat()}
    previous = {"from": previous_from.isoformat(), "to": previous_to.isoformat()}
    return [
        ("points/", {**current, "interval": interval}),
        ("points/", {**previous, "interval": interval}),
        ("liability/", {"as_of": AS_OF.isoformat()}),
        ("liability/", {"as_of": previous_to.isoformat()}),
        ("members/", current),
        ("members/", previous),
        ("repurchase/", current),
        ("repurchase/", previous),
        ("segment-moves/", current),
        ("retention/", {}),
    ]


def test_the_dashboards_requests_read_no_raw_rows_after_the_nightly_jobs(
    shop, marketer_api, django_assert_max_num_queries
):
    assert PERIOD_DAYS == (7, 30, 90)
    days = 7  # the snapshots of the 14 dates it reads; 30 and 90 days read the same tables for more dates
    for offset in range(2 * days):
        run_inline("snapshot", AS_OF - timedelta(days=offset))
    run_inline("report_results", AS_OF)
    marketer_api.get("/api/v1/reports/rfm/")  # a first request: what authentication caches
    for path, query in dashboard_requests(days):
        with django_assert_max_num_queries(20) as captured:
            response = marketer_api.get("/api/v1/reports/" + path, query)
        assert response.status_code == 200, (path, query)
        raw = [q["sql"] for q in captured.captured_queries if RAW_TABLES.search(q["sql"])]
        assert raw == [], (path, query)
        assert response.json().get("source", "snapshot") in ("snapshot", "stored"), (path, query)
