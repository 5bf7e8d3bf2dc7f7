"""The dashboard page on the server: who may open it, the admin index link, the configuration its script gets,
its Chinese labels, and the vendored charting library. The script itself runs in test_dashboard_browser.py."""

import json
import re
from datetime import date
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from loyalty.models import JobRun, JobStatus
from loyalty.scheduling import yesterday
from tests.factories import StaffUserFactory

REPORTS = Path(settings.BASE_DIR) / "reports"
DASHBOARD = "/admin/reports/dashboard/"


@pytest.fixture
def logged_in(db):
    def client_for(role, language=None):
        client = Client(headers={"accept-language": language} if language else {})
        client.force_login(StaffUserFactory(username=f"{role}-user", role=role))
        return client

    return client_for


def config_of(response):
    match = re.search(r'<script id="dashboard-config" type="application/json">(.*?)</script>', response.text, re.S)
    return json.loads(match.group(1))


def test_the_dashboard_is_at_its_admin_url():
    assert reverse("reports-dashboard") == DASHBOARD


@pytest.mark.parametrize("role", ["marketer", "admin"])
def test_marketers_and_admins_open_the_dashboard(logged_in, role):
    response = logged_in(role).get(DASHBOARD)

    assert response.status_code == 200
    assert response.templates[0].name == "admin/reports/dashboard.html"
    assert '<script src="/static/reports/vendor/chart.umd.min.js" defer></script>' in response.text
    assert '<script src="/static/reports/dashboard.js" defer></script>' in response.text
    config = config_of(response)
    assert config["endpoints"] == {
        "points": "/api/v1/reports/points/",
        "liability": "/api/v1/reports/liability/",
        "members": "/api/v1/reports/members/",
        "segment_moves": "/api/v1/reports/segment-moves/",
        "repurchase": "/api/v1/reports/repurchase/",
        "retention": "/api/v1/reports/retention/",
        "stored_value": "/api/v1/reports/stored-value/",
    }
    assert 'id="table-stored-value" data-table="stored-value"' in response.text
    assert 'data-csv-for="stored_value"' in response.text
    assert config["yesterday"] == yesterday().isoformat()
    assert (config["periods"], config["period"], config["rfm_as_of"]) == ([7, 30, 90], 30, None)
    assert config["tiers"] == [
        {"key": "regular", "label": "普通会员"},
        {"key": "silver", "label": "银卡"},
        {"key": "gold", "label": "金卡"},
        {"key": "diamond", "label": "钻石"},
    ]
    assert [segment["key"] for segment in config["segments"]][:2] == ["important_value", "important_develop"]
    assert config["labels"]["vs_previous"] == "vs. previous %(days)s days"


def test_the_script_knows_the_newest_rfm_run(logged_in):
    """Without one the segment charts say why they are empty instead of asking for them."""
    for day, status in ((date(2026, 11, 20), JobStatus.DONE), (date(2026, 11, 27), JobStatus.DONE)):
        JobRun.objects.create(job="rfm", business_date=day, status=status)
    JobRun.objects.create(job="rfm", business_date=date(2026, 11, 28), status=JobStatus.FAILED)

    assert config_of(logged_in("marketer").get(DASHBOARD))["rfm_as_of"] == "2026-11-27"


@pytest.mark.parametrize(("query", "period"), [("?days=7", 7), ("?days=90", 90), ("?days=5", 30), ("?days=x", 30)])
def test_the_period_in_the_address_is_one_of_the_choices(logged_in, query, period):
    response = logged_in("marketer").get(DASHBOARD + query)

    assert config_of(response)["period"] == period
    assert f'class="button dashboard-period selected" data-days="{period}"' in " ".join(response.text.split())


def test_a_clerk_may_not_open_the_dashboard(logged_in):
    assert logged_in("clerk").get(DASHBOARD).status_code == 403


def test_without_a_login_the_dashboard_asks_for_one(client, db):
    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={DASHBOARD}"


@pytest.mark.parametrize(("role", "shown"), [("marketer", True), ("admin", True), ("clerk", False)])
def test_the_admin_index_links_the_dashboard_for_those_who_may_open_it(logged_in, role, shown):
    response = logged_in(role).get("/admin/")

    assert response.status_code == 200
    assert (f'<a href="{DASHBOARD}">Dashboard</a>' in response.text) is shown


def test_the_dashboard_speaks_chinese(logged_in):
    response = logged_in("marketer", language="zh-hans").get(DASHBOARD)

    assert "<h2>积分流水</h2>" in response.text
    assert "<h3>复购率</h3>" in response.text
    labels = config_of(response)["labels"]
    assert (labels["issued"], labels["vs_previous"], labels["no_data"]) == (
        "发放",
        "较前 %(days)s 天",
        "该时段暂无数据。",
    )
    assert "数据看板" in logged_in("admin", language="zh-hans").get("/admin/").text
    segments = {segment["key"]: segment["label"] for segment in config_of(response)["segments"]}
    assert (segments["important_value"], segments["inactive"]) == ("important value 重要价值", "inactive 不活跃")


def test_the_alert_strings_speak_chinese():
    from django.utils import translation

    from reports.alert_rules import RULES_BY_CODE
    from reports.models_alerts import AlertRule, AlertSubscription

    with translation.override("zh-hans"):
        assert str(RULES_BY_CODE["points_issued_spike"].label) == "今日发放积分远高于 7 日平均"
        assert str(AlertRule._meta.verbose_name) == "告警规则"
        assert str(AlertRule._meta.get_field("is_active").verbose_name) == "启用"
        assert str(AlertSubscription._meta.get_field("in_admin").verbose_name) == "后台通知"


def test_the_vendored_chart_library_is_the_recorded_version():
    vendor = REPORTS / "static" / "reports" / "vendor"
    header = (vendor / "chart.umd.min.js").read_text()[:200]
    recorded = re.search(r"\| `chart.umd.min.js` \| chart.js \| ([0-9.]+) \| MIT", (vendor / "README.md").read_text())

    assert header.startswith(f"/*!\n * Chart.js v{recorded.group(1)}\n")
    assert "Released under the MIT License" in header
    assert "sourceMappingURL" not in (vendor / "chart.umd.min.js").read_text()
