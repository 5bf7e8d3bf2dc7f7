"""The dashboard's script in Debian's headless Chromium, against fixed report answers (stub_reports): what it asks
the API for, and exactly what it draws from the answers. The same page against the real reports and the demo data
is in test_dashboard_demo.py."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from selenium.webdriver.common.by import By

from loyalty.models import JobRun, JobStatus
from loyalty.scheduling import yesterday
from tests.reports.dashboard import stub_reports
from tests.reports.dashboard.stub_reports import (
    MOVES,
    RETENTION,
    SEGMENTS,
    TIERS,
    liability_outstanding,
    members_figures,
    points_rows,
    repurchase_rate,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stubbed_reports(settings):
    """The stub answers, and an RFM run (without one the segment charts do not ask for their reports)."""
    JobRun.objects.create(job="rfm", business_date=yesterday(), status=JobStatus.DONE)
    settings.ROOT_URLCONF = "tests.reports.dashboard.stub_reports"
    for registry in (stub_reports.REQUESTS, stub_reports.EMPTY, stub_reports.MISSING):
        registry.clear()
    yield stub_reports
    for registry in (stub_reports.REQUESTS, stub_reports.EMPTY, stub_reports.MISSING):
        registry.clear()


def period(days):
    to = yesterday()
    start = to - timedelta(days=days - 1)
    previous_to = start - timedelta(days=1)
    return start, to, previous_to - timedelta(days=days - 1), previous_to


def nonzero(rows, fields):
    return sum(1 for row in rows for field in fields if row[field])


def integer(value):
    return f"{value:,}"


def percent(share):
    """As Intl.NumberFormat("en-US", {style: "percent", maximumFractionDigits: 1}) writes it (half away from zero)."""
    value = (Decimal(str(share)) * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return f"{value.normalize():f}%"


def change(current, previous, days):
    """The KPI change line: the relative change, as percent() writes it, signed."""
    if current == previous:
        return f"no change vs. previous {days} days"
    relative = (Decimal(current - previous) / Decimal(previous) * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    sign = "+" if relative > 0 else ""
    return f"{sign}{relative.normalize():f}% vs. previous {days} days"


def expected_charts(days):
    start, to, _, _ = period(days)
    interval = "week" if days > 31 else "day"
    moves = sum(1 for a, b, count in MOVES if a != b and count)
    return {
        "points-flow": (
            "ready",
            f"{nonzero(points_rows(start, to, interval), ('issued', 'redeemed', 'expired'))} points",
        ),
        "liability": ("ready", "24 points"),  # 12 months due to expire, and what would be left after each
        "segments": ("ready", f"{len(SEGMENTS)} points"),
        "tiers": ("ready", f"{len(TIERS)} points"),
        "segment-moves": ("ready", f"{moves} points"),  # members who stayed in their segment are shown, not scaled
        "retention": ("ready", f"{sum(len(shares) for _, _, shares in RETENTION)} points"),
    }


def expected_kpis(days):
    start, to, previous_start, previous_to = period(days)
    interval = "week" if days > 31 else "day"
    current, previous = members_figures(start, to), members_figures(previous_start, previous_to)
    issued = sum(row["issued"] for row in points_rows(start, to, interval))
    issued_before = sum(row["issued"] for row in points_rows(previous_start, previous_to, interval))
    redeemed = sum(row["redeemed"] for row in points_rows(start, to, interval))
    redeemed_before = sum(row["redeemed"] for row in points_rows(previous_start, previous_to, interval))
    outstanding, outstanding_before = liability_outstanding(to), liability_outstanding(previous_to)
    rate = repurchase_rate(start, to)
    return {
        "members": (integer(current["total"]), change(current["total"], previous["total"], days)),
        "new_members": (integer(current["new"]), change(current["new"], previous["new"], days)),
        "active_members": (integer(current["active"]), change(current["active"], previous["active"], days)),
        "points_issued": (integer(issued), change(issued, issued_before, days)),
        "points_redeemed": (integer(redeemed), change(redeemed, redeemed_before, days)),
        "liability": (integer(outstanding), change(outstanding, outstanding_before, days)),
        # the same rate in both periods of the stub (it depends on the length only): no change
        "repurchase_rate": (percent(rate), f"no change vs. previous {days} days"),
    }


def open_dashboard(page, path="/admin/reports/dashboard/"):
    page.open(path)
    page.wait_until_settled()


def test_the_dashboard_draws_every_chart_and_kpi_from_the_reports(page, marketer, stubbed_reports):
    page.log_in("marketing")
    open_dashboard(page)

    assert page.charts() == expected_charts(30)
    assert page.kpis() == expected_kpis(30)
    start, to, previous_start, previous_to = period(30)
    assert page.text("#dashboard-range") == f"{start} to {to}, compared with {previous_start} to {previous_to}"
    asked = sorted(stubbed_reports.REQUESTS, key=lambda request: (request[0], sorted(request[1].items())))
    assert asked == sorted(
        [
            ("points", {"from": str(start), "to": str(to), "interval": "day"}),
            ("points", {"from": str(previous_start), "to": str(previous_to), "interval": "day"}),
            ("liability", {"as_of": str(to)}),
            ("liability", {"as_of": str(previous_to)}),
            ("members", {"from": str(start), "to": str(to)}),
            ("members", {"from": str(previous_start), "to": str(previous_to)}),
            ("repurchase", {"from": str(start), "to": str(to)}),
            ("repurchase", {"from": str(previous_start), "to": str(previous_to)}),
            ("segment_moves", {"from": str(start), "to": str(to)}),
            ("retention", {}),  # its default range: the one the nightly report_results job stores
        ],
        key=lambda request: (request[0], sorted(request[1].items())),
    )
    assert (
        page.text('[data-kpi="liability"] .kpi-detail')
        == f"worth {liability_outstanding(to) / 100:,.2f} at the cash rate"
    )
    assert page.console_errors() == []


def test_the_heat_maps_are_tables_with_the_figures(page, marketer, stubbed_reports):
    page.log_in("marketing")
    open_dashboard(page)

    retention = page.driver.find_element(By.ID, "chart-retention")
    rows = [
        [cell.get_attribute("textContent") for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
        for row in retention.find_elements(By.CSS_SELECTOR, "tr")
    ]
    assert rows[0] == ["Join month", "Members", *[f"Month {n}" for n in range(6)]]
    assert rows[1] == ["2026-06", "30", "100%", "50%", "43.3%", "40%", "36.7%", "33.3%"]
    assert rows[6] == ["2026-11", "27", "100%", "", "", "", "", ""]

    moves = page.driver.find_element(By.ID, "chart-segment-moves")
    rows = [
        [cell.get_attribute("textContent") for cell in row.find_elements(By.CSS_SELECTOR, "th, td")]
        for row in moves.find_elements(By.CSS_SELECTOR, "tr")
    ]
    columns = ["important value 重要价值", "important retain 重要保持", "general develop 一般发展"]
    assert rows[0][1:] == columns
    assert [row[0] for row in rows[1:]] == [
        "important value 重要价值",
        "general value 一般价值",
        "general develop 一般发展",
        "inactive",
        "not segmented",
    ]
    assert rows[1][1:] == ["12", "2", ""]
    assert rows[3][1:] == ["4", "", "20"]
    assert rows[5][1:] == ["", "", "5"]
    stayed = moves.find_elements(By.CSS_SELECTOR, "td.stayed")
    assert [cell.text for cell in stayed] == ["12", "20"]


def test_choosing_a_period_fetches_and_draws_it(page, marketer, stubbed_reports):
    page.log_in("marketing")
    open_dashboard(page)

    for days in (7, 90):
        stubbed_reports.REQUESTS.clear()
        page.driver.find_element(By.CSS_SELECTOR, f'.dashboard-period[data-days="{days}"]').click()
        page.wait_for(
            lambda driver, days=days: (
                driver.find_element(By.ID, "content-main").get_attribute("data-period") == str(days)
            )
        )
        page.wait_until_settled()
        assert page.charts() == expected_charts(days)
        assert page.kpis() == expected_kpis(days)
        assert page.driver.current_url.endswith(f"/admin/reports/dashboard/?days={days}")
        start, to, _, _ = period(days)
        interval = "week" if days == 90 else "day"
        assert ("points", {"from": str(start), "to": str(to), "interval": interval}) in stubbed_reports.REQUESTS
        pressed = page.driver.find_elements(By.CSS_SELECTOR, '.dashboard-period[aria-pressed="true"]')
        assert [button.get_attribute("data-days") for button in pressed] == [str(days)]

    open_dashboard(page, "/admin/reports/dashboard/?days=7")
    assert page.charts() == expected_charts(7)


def test_a_report_that_fails_or_is_empty_says_so_and_the_others_still_draw(page, marketer, stubbed_reports):
    stubbed_reports.MISSING.add("retention")
    stubbed_reports.EMPTY.add("segment_moves")
    page.log_in("marketing")
    open_dashboard(page)

    charts = page.charts()
    assert charts.pop("retention") == ("error", "0 points")
    assert charts.pop("segment-moves") == ("empty", "0 points")
    assert charts == {
        key: value for key, value in expected_charts(30).items() if key not in {"retention", "segment-moves"}
    }
    assert page.text("#chart-retention") == "This report is not available (HTTP 404)."
    assert page.text("#chart-segment-moves") == "No data for this period."


def test_the_dashboard_speaks_chinese(page, marketer, stubbed_reports):
    page.log_in("marketing", language="zh-hans")
    open_dashboard(page)

    assert page.text("#content h1") == "数据看板"
    assert page.text(".dashboard-card h2") == "积分流水"
    assert page.text('[data-kpi="points_issued"] h3') == "积分发放"
    assert page.kpis()["members"][1].endswith("较前 30 天")
    assert page.text('.dashboard-period[data-days="7"]') == "7 天"
    assert [chart[0] for chart in page.charts().values()] == ["ready"] * 6


def test_before_the_first_rfm_run_the_segment_charts_say_why_they_are_empty(page, marketer, stubbed_reports):
    JobRun.objects.filter(job="rfm").delete()
    page.log_in("marketing")
    open_dashboard(page)

    charts = page.charts()
    assert (charts.pop("segments"), charts.pop("segment-moves")) == (("empty", "0 points"), ("empty", "0 points"))
    assert charts == {
        key: value for key, value in expected_charts(30).items() if key not in {"segments", "segment-moves"}
    }
    message = "No RFM run yet: segments come from the nightly rfm job (it needs PostgreSQL)."
    assert (page.text("#chart-segments"), page.text("#chart-segment-moves")) == (message, message)
    assert "segment_moves" not in {name for name, _ in stubbed_reports.REQUESTS}
