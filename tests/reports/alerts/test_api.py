"""GET /api/v1/alerts/ (admins and marketers: newest first, filters rule and acknowledged, cursor pages) and
POST /api/v1/alerts/{id}/acknowledge/ (once, idempotent), in API.md's Alert shape and error shape."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.alerts import raise_alert
from loyalty.models import AuditEntry
from tests.conftest import member_client

SHANGHAI = ZoneInfo("Asia/Shanghai")
ALERTS = "/api/v1/alerts/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def raised(db):
    with time_machine.travel(datetime(2026, 6, 10, 6, 5, tzinfo=SHANGHAI), tick=False):
        late = raise_alert(
            rule="nightly_job_late",
            metric="hours_after_midnight",
            value="6.0833",
            threshold=6,
            subject="rfm 2026-06-09: running",
            detail={"job": "rfm"},
            key="j",
        )
    with time_machine.travel(datetime(2026, 6, 10, 9, 20, tzinfo=SHANGHAI), tick=False):
        spike = raise_alert(rule="points_issued_spike", metric="points_issued_today", value=301, threshold=300, key="s")
        cap = raise_alert(rule="daily_cap_reached", metric="points_earned_today", value=100, threshold=100, key="c")
    return {"late": late, "spike": spike, "cap": cap}


def ids(response):
    return [item["id"] for item in response.json()["results"]]


def test_the_list_is_newest_first_in_the_alert_shape(marketer_api, raised):
    response = marketer_api.get(ALERTS)
    assert response.status_code == 200
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    assert ids(response) == [str(raised[name].pk) for name in ("cap", "spike", "late")]
    assert body["results"][2] == {
        "id": str(raised["late"].pk),
        "rule": "nightly_job_late",
        "metric": "hours_after_midnight",
        "value": "6.0833",
        "threshold": "6.0000",
        "created_at": "2026-06-10T06:05:00+08:00",
        "acknowledged_at": None,
        "acknowledged_by": None,
        "subject": "rfm 2026-06-09: running",
        "detail": {"job": "rfm"},
    }


def test_filters_by_rule_and_by_acknowledged(admin_api, raised):
    assert ids(admin_api.get(ALERTS, {"rule": "points_issued_spike"})) == [str(raised["spike"].pk)]
    assert ids(admin_api.get(ALERTS, {"rule": "nothing_like_it"})) == []
    assert admin_api.post(f"{ALERTS}{raised['spike'].pk}/acknowledge/").status_code == 200
    assert ids(admin_api.get(ALERTS, {"acknowledged": "true"})) == [str(raised["spike"].pk)]
    assert ids(admin_api.get(ALERTS, {"acknowledged": "false"})) == [str(raised[n].pk) for n in ("cap", "late")]
    refused = admin_api.get(ALERTS, {"acknowledged": "perhaps"})
    assert refused.status_code == 400
    assert (refused.json()["code"], list(refused.json()["errors"])) == ("invalid", ["acknowledged"])


def test_cursor_pages(admin_api, raised):
    first = admin_api.get(ALERTS, {"page_size": 2})
    assert ids(first) == [str(raised["cap"].pk), str(raised["spike"].pk)]
    second = admin_api.get(first.json()["next"])
    assert ids(second) == [str(raised["late"].pk)]
    assert second.json()["next"] is None
    assert admin_api.get(ALERTS, {"page_size": 501}).json()["code"] == "invalid"


def test_acknowledging_records_who_and_when_once_and_again_answers_the_same(marketer_api, raised):
    url = f"{ALERTS}{raised['cap'].pk}/acknowledge/"
    with time_machine.travel(datetime(2026, 6, 10, 10, tzinfo=SHANGHAI), tick=False):
        first = marketer_api.post(url)
    with time_machine.travel(datetime(2026, 6, 10, 11, tzinfo=SHANGHAI), tick=False):
        again = marketer_api.post(url)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert (first.json()["acknowledged_at"], first.json()["acknowledged_by"]) == (
        "2026-06-10T10:00:00+08:00",
        "staff:marketing",
    )
    assert AuditEntry.objects.filter(action="alert.acknowledged").count() == 1


def test_acknowledging_an_unknown_alert_is_404_in_the_error_shape(admin_api, raised):
    response = admin_api.post(f"{ALERTS}999999/acknowledge/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "No alert with this id."}
    assert admin_api.post(f"{ALERTS}abc/acknowledge/").json()["code"] == "not_found"
    assert admin_api.post(f"{ALERTS}{'9' * 30}/acknowledge/").json()["code"] == "not_found"


def test_clerks_client_apps_members_and_strangers_are_refused(clerk_api, app_client, member_a, anonymous, raised):
    url = f"{ALERTS}{raised['cap'].pk}/acknowledge/"
    for caller, status, code in [
        (clerk_api, 403, "permission_denied"),
        (app_client, 403, "permission_denied"),
        (member_client(member_a), 403, "permission_denied"),
        (anonymous, 401, "not_authenticated"),
    ]:
        for response in (caller.get(ALERTS), caller.post(url)):
            assert (response.status_code, response.json()["code"]) == (status, code)
    raised["cap"].refresh_from_db()
    assert raised["cap"].acknowledged_at is None
