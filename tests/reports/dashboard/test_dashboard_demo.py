"""The dashboard in Debian's headless Chromium against the real report API and the demo data (load_demo_data):
a marketer logs in through the admin's form, opens the dashboard and every chart draws data, for each period.

The test takes the screenshot of the page; with UPDATE_SCREENSHOT=1 it loads the whole demo data set (as `make run`
does) instead of a smaller one and writes the screenshot to docs/dashboard.png, the picture in README:

    UPDATE_SCREENSHOT=1 DATABASE_URL=postgresql://... .venv/bin/python -m pytest \
        tests/reports/dashboard/test_dashboard_demo.py

(PostgreSQL: on SQLite the rfm job does not run, so the segment charts are empty.) Until the report endpoints exist
(the reports-core and reports-behaviour branches of issue 12), the test skips, naming the missing ones.
"""

import os
import struct
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.urls import Resolver404, resolve
from selenium.webdriver.common.by import By

from members.management.commands import load_demo_data
from members.models import StaffUser
from reports import demo_data
from reports.dashboard import REPORTS, report_urls
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCREENSHOT = Path(settings.BASE_DIR) / "docs" / "dashboard.png"
MAX_SCREENSHOT_BYTES = 300_000
NO_RFM = "No RFM run yet: segments come from the nightly rfm job (it needs PostgreSQL)."


def missing_reports():
    missing = []
    for url in report_urls().values():
        try:
            resolve(url)
        except Resolver404:
            missing.append(url)
    return missing


@pytest.fixture
def report_endpoints():
    """Skips (before minutes of demo data) until the report endpoints exist."""
    if missing := missing_reports():
        pytest.skip(f"the report endpoints are not merged yet: {', '.join(missing)}")


@pytest.fixture
def demo(monkeypatch, migration_defaults):
    """The demo data set: whole for the README's screenshot, else 80 members over 400 days (the first points expire
    in the last 35 days, so every chart still has data)."""
    if os.environ.get("UPDATE_SCREENSHOT") != "1":
        monkeypatch.setattr(load_demo_data, "MEMBERS", 80)
        monkeypatch.setattr(demo_data, "HISTORY_DAYS", 400)
    call_command("load_demo_data", stdout=StringIO())
    marketer = StaffUser.objects.get(username="marketer")  # the demo's marketer; its password is new every run
    marketer.set_password(PASSWORD)
    marketer.save()


def assert_every_chart_drew_data(page):
    charts = page.charts()
    assert set(charts) == {"points-flow", "liability", "segments", "tiers", "segment-moves", "retention"}
    if connection.vendor != "postgresql":  # no RFM run on SQLite: the segment charts say why they are empty
        assert (charts.pop("segments"), charts.pop("segment-moves")) == (("empty", "0 points"),) * 2
        assert page.text("#chart-segments") == page.text("#chart-segment-moves") == NO_RFM
    for chart, (state, rendered) in charts.items():
        assert state == "ready", (chart, state, page.text(f'[data-chart="{chart}"]'))
        count, unit = rendered.split()
        assert (int(count) > 0, unit) == (True, "points"), chart
    for kpi, (value, change) in page.kpis().items():
        assert value not in {"…", "—"} and "vs. previous" in change, (kpi, value, change)


def test_a_marketer_sees_every_chart_of_the_demo_data(report_endpoints, page, demo):
    assert set(REPORTS) == {
        "points",
        "liability",
        "members",
        "segment_moves",
        "repurchase",
        "retention",
        "stored_value",
    }

    page.log_in("marketer")
    page.open("/admin/")
    page.driver.find_element(By.LINK_TEXT, "Dashboard").click()
    page.wait_until_settled()
    assert_every_chart_drew_data(page)
    assert page.console_errors() == []

    for days in (7, 90):
        page.driver.find_element(By.CSS_SELECTOR, f'.dashboard-period[data-days="{days}"]').click()
        page.wait_for(
            lambda driver, days=days: (
                driver.find_element(By.ID, "content-main").get_attribute("data-period") == str(days)
            )
        )
        page.wait_until_settled()
        assert_every_chart_drew_data(page)

    page.open("/admin/reports/dashboard/?days=30")
    page.wait_until_settled()
    png = page.screenshot()
    width, height = struct.unpack(">II", png[16:24])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and width == 1280 and height > 1500
    assert len(png) < MAX_SCREENSHOT_BYTES
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)
