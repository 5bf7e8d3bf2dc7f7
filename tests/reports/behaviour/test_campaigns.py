"""/reports/campaigns/: the results of the campaigns that ran in the period, side by side, each over the part of
the period it ran (the shop of conftest.py supplies the purchases)."""

from decimal import Decimal

import pytest

from campaigns.models import Campaign, CampaignAssignment, CampaignKind, CampaignStatus, CampaignVariant
from campaigns.services.results import campaign_results

from .conftest import local

pytestmark = pytest.mark.django_db

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def campaign(name, starts_at, ends_at=None, *, activated=True, status=CampaignStatus.ACTIVE, **fields):
    return Campaign.objects.create(
        name=name,
        kind=CampaignKind.MULTIPLIER,
        multiplier=Decimal("2.00"),
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        activated_at=local(2026, 1, 1) if activated else None,
        **fields,
    )


@pytest.fixture
def campaigns(shop):
    spring = campaign("Spring", local(2026, 3, 10), local(2026, 3, 20), holdout_percent=Decimal(50))
    CampaignVariant.objects.create(campaign=spring, code="a", weight=100)
    CampaignAssignment.objects.create(campaign=spring, member=shop.people["ann"], group="a")
    CampaignAssignment.objects.create(campaign=spring, member=shop.people["bob"], group="holdout")
    always = campaign("Always on", local(2026, 2, 1))
    late = campaign("Late, paused", local(2026, 3, 25), status=CampaignStatus.PAUSED)
    # Not in March: a draft, one that ended at the first instant of March, one that starts after it.
    campaign("Draft", local(2026, 3, 1), activated=False, status=CampaignStatus.DRAFT)
    campaign("Winter", local(2026, 1, 1), local(2026, 3, 1))
    campaign("April", local(2026, 4, 1))
    return {"spring": spring, "always": always, "late": late}


def test_campaigns_that_ran_in_the_period_side_by_side(campaigns, marketer_api):
    body = marketer_api.get("/api/v1/reports/campaigns/", MARCH).json()
    listed = [(entry["name"], entry["from"], entry["to"], entry["status"]) for entry in body["campaigns"]]
    assert listed == [
        ("Always on", "2026-03-01", "2026-03-31", "active"),
        ("Spring", "2026-03-10", "2026-03-19", "ended"),  # ends at 00:00 on 20 March: its last day is the 19th
        ("Late, paused", "2026-03-25", "2026-03-31", "paused"),
    ]
    spring = body["campaigns"][1]
    # Ann (variant a) bought on 2, 5 and 20 March: none in its window; Bob (holdout) P5 120.00 and P6 30.00 on
    # 10 March.
    assert spring["groups"] == [
        {
            "group": "a",
            "members": 1,
            "participants": 0,
            "purchases": 0,
            "revenue": "0.00",
            "points_cost": 0,
            "repurchase_rate": 0.0,
            "revenue_per_member": "0.00",
        },
        {
            "group": "holdout",
            "members": 1,
            "participants": 1,
            "purchases": 2,
            "revenue": "150.00",
            "points_cost": 0,
            "repurchase_rate": 1.0,
            "revenue_per_member": "150.00",
        },
    ]
    assert spring["points_per_extra_revenue"] == [
        {"group": "a", "extra_revenue": "-150.00", "points_per_extra_revenue": None}
    ]
    # Each entry is the campaign's own results for its window, with its name, kind and status.
    expected = campaign_results(
        campaigns["spring"], date_from=local(2026, 3, 10).date(), date_to=local(2026, 3, 19).date()
    )
    assert spring == {
        "campaign_id": expected.pop("campaign_id"),
        "name": "Spring",
        "kind": "multiplier",
        "status": "ended",
        **expected,
    }
    assert body["campaigns"][0]["groups"][0]["group"] == "default"
    assert body["campaigns"][0]["groups"][0]["members"] == 0


def test_a_period_starting_later_narrows_each_window(campaigns, marketer_api):
    body = marketer_api.get("/api/v1/reports/campaigns/", {"from": "2026-03-15", "to": "2026-03-26"}).json()
    windows = [(entry["name"], entry["from"], entry["to"]) for entry in body["campaigns"]]
    assert windows == [
        ("Always on", "2026-03-15", "2026-03-26"),
        ("Spring", "2026-03-15", "2026-03-19"),
        ("Late, paused", "2026-03-25", "2026-03-26"),
    ]
    holdout = body["campaigns"][1]["groups"][1]
    assert (holdout["group"], holdout["purchases"], holdout["revenue"]) == ("holdout", 0, "0.00")


def test_campaigns_csv_and_filters(campaigns, marketer_api):
    response = marketer_api.get(
        "/api/v1/reports/campaigns/", {"from": "2026-03-10", "to": "2026-03-19", "format": "csv"}
    )
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0].startswith("name,kind,campaign_id,from,to,group,members,participants,purchases,revenue,")
    spring = campaigns["spring"].pk
    assert [line.split(",")[:10] for line in lines[1:]] == [
        [
            "Always on",
            "multiplier",
            str(campaigns["always"].pk),
            "2026-03-10",
            "2026-03-19",
            "default",
            "0",
            "0",
            "0",
            "0.00",
        ],
        ["Spring", "multiplier", str(spring), "2026-03-10", "2026-03-19", "a", "1", "0", "0", "0.00"],
        ["Spring", "multiplier", str(spring), "2026-03-10", "2026-03-19", "holdout", "1", "1", "2", "150.00"],
    ]
    response = marketer_api.get("/api/v1/reports/campaigns/", {**MARCH, "store": "A001"})
    assert (response.status_code, list(response.json()["errors"])) == (400, ["store"])
