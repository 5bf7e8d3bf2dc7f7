"""/api/v1/campaigns/ as marketers and clients use it: the shape API.md fixes, validation with clear 400s, the
status flow with its audit rows, and the rule that a running campaign keeps its terms."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignVariant
from loyalty.models import AuditEntry
from tests.factories import TagFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/campaigns/"


def _body(**overrides):
    start = timezone.now() + timedelta(days=1)
    body = {
        "name": "Double points Tuesdays",
        "kind": "multiplier",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=30)).isoformat(),
        "multiplier": "2.00",
        "target": {"stores": ["A001"], "channels": ["offline"]},
        "conditions": {"weekdays": [2]},
        "budget_points": 100000,
        "per_member_cap": 500,
        "holdout_percent": "10.00",
        "variants": [{"code": "a", "weight": 50}, {"code": "b", "weight": 50, "multiplier": "3.00"}],
    }
    body.update(overrides)
    return body


def test_a_marketer_creates_a_campaign_in_the_fixed_shape(marketer_api, store_a):
    response = marketer_api.post(URL, _body(), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    campaign = Campaign.objects.get()
    assert data["id"] == str(campaign.pk)
    assert {key: data[key] for key in ("name", "kind", "status", "priority", "stacking", "multiplier")} == {
        "name": "Double points Tuesdays",
        "kind": "multiplier",
        "status": "draft",
        "priority": 0,
        "stacking": "stack",
        "multiplier": "2.00",
    }
    assert data["target"] == {
        "tiers": [],
        "tags": [],
        "segments": [],
        "lifecycle": [],
        "stores": ["A001"],
        "channels": ["offline"],
    }
    assert (data["budget_points"], data["budget_used"], data["per_member_cap"]) == (100000, 0, 500)
    assert data["variants"] == [
        {"code": "a", "weight": 50, "multiplier": None, "bonus_points": None},
        {"code": "b", "weight": 50, "multiplier": "3.00", "bonus_points": None},
    ]
    assert data["holdout_percent"] == "10.00"
    assert data["bonus_points"] is None and data["trigger"] == {}
    audit = AuditEntry.objects.get(action="campaign.created")
    assert audit.actor == "staff:marketing"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ends_at": (timezone.now() - timedelta(days=3)).isoformat()}, "ends_at"),
        ({"variants": [{"code": "a", "weight": 60}, {"code": "b", "weight": 50}]}, "variants"),
        ({"multiplier": "0"}, "multiplier"),
        ({"multiplier": "-2"}, "multiplier"),
        ({"target": {"tiers": ["platinum"]}}, "target.tiers"),
        ({"target": {"tags": ["nobody"]}}, "target.tags"),
        ({"target": {"segments": ["whales"]}}, "target.segments"),
        ({"target": {"stores": ["Z999"]}}, "target.stores"),
        ({"kind": "bonus", "multiplier": None, "variants": []}, "bonus_points"),
        (
            {"kind": "bonus", "multiplier": None, "variants": [], "bonus_points": 5, "trigger": {"action": "dance"}},
            "trigger",
        ),
        ({"conditions": {"weekdays": [8]}}, "conditions"),
        (
            {
                "kind": "segment_move",
                "multiplier": None,
                "variants": [],
                "bonus_points": 5,
                "trigger": {"to_segment": "x"},
            },
            "trigger",
        ),
    ],
)
def test_bad_terms_are_400_naming_the_field_and_write_nothing(marketer_api, store_a, overrides, field):
    TagFactory(code="vip")
    response = marketer_api.post(URL, _body(**overrides), format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"], body
    assert Campaign.objects.count() == 0


def test_clerks_and_client_apps_may_not_write_campaigns(clerk_api, pos_a, store_a):
    assert clerk_api.post(URL, _body(), format="json").status_code == 403
    assert pos_a.post(URL, _body(), format="json").status_code == 403
    assert clerk_api.get(URL).status_code == 200


def test_status_flow_with_audit_and_terms_kept_while_running(marketer_api, store_a):
    created = marketer_api.post(URL, _body(starts_at=(timezone.now() - timedelta(hours=1)).isoformat()), format="json")
    url = f"{URL}{created.json()['id']}/"
    assert marketer_api.post(f"{url}pause/").json()["code"] == "invalid_status"
    assert marketer_api.post(f"{url}activate/").json()["status"] == "active"
    refused = marketer_api.patch(url, {"multiplier": "5.00"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "campaign_active")
    assert marketer_api.patch(url, {"name": "Renamed"}, format="json").json()["name"] == "Renamed"
    assert marketer_api.post(f"{url}pause/").json()["status"] == "paused"
    assert marketer_api.patch(url, {"multiplier": "5.00"}, format="json").json()["multiplier"] == "5.00"
    copy = marketer_api.post(f"{url}copy/", {"name": "Version 2"}, format="json")
    assert copy.status_code == 201
    assert (copy.json()["status"], copy.json()["copied_from"], copy.json()["multiplier"]) == (
        "draft",
        created.json()["id"],
        "5.00",
    )
    assert marketer_api.post(f"{url}end/").json()["status"] == "ended"
    assert marketer_api.post(f"{url}activate/").json()["code"] == "campaign_ended"
    actions = list(
        AuditEntry.objects.filter(target_type="campaigns.campaign", target_id=created.json()["id"])
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "campaign.created",
        "campaign.activated",
        "campaign.changed",
        "campaign.paused",
        "campaign.changed",
        "campaign.ended",
    ]


def test_a_campaign_scheduled_for_later_shows_scheduled(marketer_api, store_a):
    created = marketer_api.post(URL, _body(), format="json").json()
    assert marketer_api.post(f"{URL}{created['id']}/activate/").json()["status"] == "scheduled"


def test_once_members_are_assigned_the_split_stays(marketer_api, store_a):
    from campaigns.models import CampaignAssignment
    from tests.factories import MemberFactory

    created = marketer_api.post(URL, _body(), format="json").json()
    CampaignAssignment.objects.create(campaign_id=created["id"], member=MemberFactory(), group="a")
    response = marketer_api.patch(f"{URL}{created['id']}/", {"holdout_percent": "20.00"}, format="json")
    assert (response.status_code, list(response.json()["errors"])) == (400, ["holdout_percent"])
    assert CampaignVariant.objects.filter(campaign_id=created["id"]).count() == 2


def test_only_a_draft_is_deleted(marketer_api, store_a):
    created = marketer_api.post(URL, _body(), format="json").json()
    marketer_api.post(f"{URL}{created['id']}/activate/")
    assert marketer_api.delete(f"{URL}{created['id']}/").json()["code"] == "invalid_status"
    draft = marketer_api.post(URL, _body(), format="json").json()
    assert marketer_api.delete(f"{URL}{draft['id']}/").status_code == 204
    assert list(Campaign.objects.values_list("pk", flat=True)) == [int(created["id"])]


def test_purchase_preview_over_http_shows_the_campaign_line(marketer_api, pos_a, store_a, member_a):
    created = marketer_api.post(
        URL,
        _body(
            starts_at=(timezone.now() - timedelta(hours=1)).isoformat(), conditions={}, variants=[], holdout_percent="0"
        ),
        format="json",
    ).json()
    marketer_api.post(f"{URL}{created['id']}/activate/")
    body = {"member": str(member_a.pk), "order_no": "P1", "amount": "50.00", "store": "A001"}
    preview = pos_a.post("/api/v1/purchases/preview/", body, format="json").json()
    recorded = pos_a.post("/api/v1/purchases/", body, format="json").json()
    line = {"source": f"campaign:{created['id']}", "points": 50, "campaign_name": "Double points Tuesdays"}
    assert line in preview["points"]["breakdown"]
    assert recorded["points"]["breakdown"] == preview["points"]["breakdown"]


def test_a_draft_whose_end_has_passed_is_not_activated(marketer_api, store_a):
    past = timezone.now() - timedelta(days=10)
    created = marketer_api.post(
        URL, _body(starts_at=past.isoformat(), ends_at=(past + timedelta(days=1)).isoformat()), format="json"
    ).json()
    response = marketer_api.post(f"{URL}{created['id']}/activate/")
    assert (response.status_code, response.json()["code"]) == (409, "campaign_ended")
    assert Campaign.objects.get().status == "draft"
