"""The behaviour reports' common parameters: 400 `invalid` naming the field, never a 500; admins and marketers
only."""

import pytest

pytestmark = pytest.mark.django_db

REPORTS = ["repurchase", "retention", "basket", "behaviour", "campaigns"]


@pytest.mark.parametrize("report", REPORTS)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "0001-01-01"}, "from"),
        ({"to": "9999-12-31"}, "to"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "from"),
        ({"from": "2023-01-01", "to": "2026-01-01"}, "to"),  # 1,097 days
    ],
)
def test_bad_periods_are_400_naming_the_field(marketer_api, report, query, field):
    response = marketer_api.get(f"/api/v1/reports/{report}/", query)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["errors"]) == [field]


def test_three_years_is_the_longest_period(marketer_api):
    response = marketer_api.get("/api/v1/reports/behaviour/", {"from": "2023-01-01", "to": "2025-12-31"})
    assert response.status_code == 200  # 1,096 days


@pytest.mark.parametrize("report", ["repurchase", "basket", "behaviour"])
def test_unknown_store_or_channel_is_400(marketer_api, report, store_a):
    response = marketer_api.get(f"/api/v1/reports/{report}/", {"store": "NOPE"})
    assert (response.status_code, response.json()["errors"]) == (400, {"store": ["Unknown store code."]})
    response = marketer_api.get(f"/api/v1/reports/{report}/", {"channel": "phone"})
    assert (response.status_code, response.json()["errors"]) == (400, {"channel": ["Use one of: offline, online."]})
    assert marketer_api.get(f"/api/v1/reports/{report}/", {"store": "A001", "channel": "online"}).status_code == 200


def test_a_from_alone_runs_to_yesterday(marketer_api):
    body = marketer_api.get("/api/v1/reports/repurchase/", {"from": "2026-04-01"}).json()
    assert (body["from"], body["to"]) == ("2026-04-01", "2026-04-09")
    body = marketer_api.get("/api/v1/reports/repurchase/", {"to": "2026-02-28"}).json()
    assert (body["from"], body["to"]) == ("2026-01-30", "2026-02-28")
    body = marketer_api.get("/api/v1/reports/retention/", {"to": "2026-02-28"}).json()
    assert (body["from"], body["to"]) == ("2025-03-01", "2026-02-28")


@pytest.mark.parametrize("report", ["repurchase", "retention", "basket", "behaviour", "top", "campaigns"])
def test_clerks_and_client_apps_cannot_read_reports(clerk_api, app_client, admin_api, report):
    query = {"kind": "skus"}
    assert clerk_api.get(f"/api/v1/reports/{report}/", query).status_code == 403
    assert app_client.get(f"/api/v1/reports/{report}/", query).status_code == 403
    assert admin_api.get(f"/api/v1/reports/{report}/", query).status_code == 200
