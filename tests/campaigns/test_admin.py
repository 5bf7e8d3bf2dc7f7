"""The marketers' campaign admin: one page for a campaign's terms, targeting and variants saved through
campaigns.services (refusals on the form's fields), activate / pause / end / copy buttons, the budget burn and
results panel, the read-only assignment and award lists, and acknowledging alerts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from campaigns import admin as campaign_admin
from campaigns import services
from campaigns.models import Campaign, CampaignAssignment, CampaignAward, CampaignVariant
from campaigns.services import results
from loyalty.errors import InvalidInput
from loyalty.models import AuditEntry
from tests.factories import MemberFactory, StaffUserFactory
from tiers.models import Tier

pytestmark = pytest.mark.django_db

CAMPAIGNS = "/admin/campaigns/campaign/"
STARTS = timezone.make_aware(timezone.datetime(2031, 3, 1, 9, 0))
ENDS = timezone.make_aware(timezone.datetime(2031, 3, 31, 22, 0))


def change_url(campaign):
    return f"{CAMPAIGNS}{campaign.pk}/change/"


def action_url(campaign, action):
    return f"{CAMPAIGNS}{campaign.pk}/{action}/"


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def split(value):
    local = timezone.localtime(value)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def variant_rows(*rows, initial=0):
    """The variants inline's management form and rows: (code, weight, multiplier, bonus_points[, id])."""
    data = {
        "variants-TOTAL_FORMS": str(len(rows)),
        "variants-INITIAL_FORMS": str(initial),
        "variants-MIN_NUM_FORMS": "0",
        "variants-MAX_NUM_FORMS": "20",
    }
    for index, row in enumerate(rows):
        code, weight, multiplier, bonus = row[:4]
        data.update(
            {
                f"variants-{index}-code": code,
                f"variants-{index}-weight": str(weight),
                f"variants-{index}-multiplier": multiplier,
                f"variants-{index}-bonus_points": bonus,
                f"variants-{index}-id": str(row[4]) if len(row) > 4 else "",
            }
        )
    return data


def campaign_form(*variants, **overrides):
    """What the add page posts for a double-points campaign (overrides by field name; lists for multi-selects)."""
    data = {
        "name": "Double Tuesdays",
        "description": "2x on Tuesdays",
        "kind": "multiplier",
        "starts_at_0": split(STARTS)[0],
        "starts_at_1": split(STARTS)[1],
        "ends_at_0": split(ENDS)[0],
        "ends_at_1": split(ENDS)[1],
        "priority": "5",
        "stacking": "stack",
        "multiplier": "2.00",
        "bonus_points": "",
        "trigger_action": "",
        "trigger_days": "",
        "trigger_event_type": "",
        "trigger_from_segment": "",
        "trigger_to_segment": "",
        "trigger_from_lifecycle": "",
        "trigger_to_lifecycle": "",
        "trigger_referrer_points": "",
        "condition_weekdays": ["2"],
        "condition_categories": "",
        "condition_min_amount": "",
        "target_tiers": ["gold", "silver"],
        "target_segments": ["important_value"],
        "target_channels": ["offline"],
        "budget_points": "5000",
        "per_member_cap": "200",
        "per_member_period_cap": "",
        "cap_period": "",
        "holdout_percent": "10.00",
        "_save": "Save",
        **variant_rows(*variants),
    }
    data.update(overrides)
    return data


def form_errors(response):
    assert response.status_code == 200, response.get("Location")
    return {name: [str(e) for e in errors] for name, errors in response.context["adminform"].form.errors.items()}


def variants_formset(response):
    return response.context["inline_admin_formsets"][0].formset


def create(**overrides):
    values = {
        "name": "Spring bonus",
        "description": "",
        "kind": "multiplier",
        "starts_at": timezone.now() - timedelta(days=1),
        "ends_at": timezone.now() + timedelta(days=30),
        "priority": 1,
        "multiplier": Decimal("2.00"),
        "budget_points": 1000,
        "holdout_percent": Decimal("0"),
        "variants": [
            {"code": "a", "weight": 50, "multiplier": Decimal("2.00"), "bonus_points": None},
            {"code": "b", "weight": 50, "multiplier": Decimal("3.00"), "bonus_points": None},
        ],
        **overrides,
    }
    return services.create_campaign(actor="staff:seed", values=values)


def variants_of(campaign):
    return list(
        CampaignVariant.objects.filter(campaign=campaign)
        .order_by("id")
        .values_list("code", "weight", "multiplier", "bonus_points")
    )


def audit_actions():
    return list(AuditEntry.objects.order_by("id").values_list("action", "actor", "target_id"))


@pytest.fixture
def marketer(db):
    return StaffUserFactory(username="marketing", role="marketer")


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


# --- Creating a campaign in one page -----------------------------------------------------------------------------


def test_a_marketer_creates_a_campaign_with_two_variants_in_one_post(marketer_client):
    response = marketer_client.post(
        f"{CAMPAIGNS}add/", campaign_form(("a", 40, "2.00", ""), ("b", 60, "3.00", ""), condition_hours=["18", "9"])
    )

    assert response.status_code == 302, form_errors(response)
    campaign = Campaign.objects.get()
    assert response["Location"] == f"{CAMPAIGNS}"
    assert (
        campaign.name,
        campaign.description,
        campaign.kind,
        campaign.status,
        campaign.starts_at,
        campaign.ends_at,
        campaign.priority,
        campaign.stacking,
        campaign.multiplier,
        campaign.bonus_points,
        campaign.budget_points,
        campaign.budget_used,
        campaign.per_member_cap,
        campaign.per_member_period_cap,
        campaign.cap_period,
        campaign.holdout_percent,
        campaign.created_by,
    ) == (
        "Double Tuesdays",
        "2x on Tuesdays",
        "multiplier",
        "draft",
        STARTS,
        ENDS,
        5,
        "stack",
        Decimal("2.00"),
        None,
        5000,
        0,
        200,
        None,
        "",
        Decimal("10.00"),
        "staff:marketing",
    )
    assert campaign.trigger == {}
    assert campaign.conditions == {"weekdays": [2], "hours": [9, 18]}
    assert campaign.target == {
        "tiers": ["gold", "silver"],
        "tags": [],
        "segments": ["important_value"],
        "lifecycle": [],
        "stores": [],
        "channels": ["offline"],
    }
    assert variants_of(campaign) == [("a", 40, Decimal("2.00"), None), ("b", 60, Decimal("3.00"), None)]
    audit = AuditEntry.objects.get()
    assert (audit.action, audit.actor, audit.target_type, audit.target_id) == (
        "campaign.created",
        "staff:marketing",
        "campaigns.campaign",
        str(campaign.pk),
    )
    assert audit.new_values["variants"] == [
        {"code": "a", "weight": 40, "multiplier": "2.00", "bonus_points": None},
        {"code": "b", "weight": 60, "multiplier": "3.00", "bonus_points": None},
    ]
    assert (audit.new_values["holdout_percent"], audit.new_values["starts_at"]) == (
        "10.00",
        "2031-03-01T09:00:00+08:00",
    )


def test_a_bonus_campaign_keeps_only_its_kinds_trigger_keys(marketer_client, store_a):
    response = marketer_client.post(
        f"{CAMPAIGNS}add/",
        campaign_form(
            kind="bonus",
            multiplier="",
            bonus_points="50",
            trigger_action="first_purchase_in_days",
            trigger_days="30",
            trigger_event_type="ignored-for-this-action",
            trigger_to_segment="important_retain",  # a segment move's field: not this kind's
            condition_weekdays=[],
            target_tiers=[],
            target_stores=["A001"],
        ),
    )

    assert response.status_code == 302, form_errors(response)
    campaign = Campaign.objects.get()
    assert (campaign.trigger, campaign.conditions, campaign.bonus_points) == (
        {"action": "first_purchase_in_days", "days": 30},
        {},
        50,
    )
    assert campaign.target["stores"] == ["A001"]
    assert variants_of(campaign) == []


def test_weights_that_do_not_sum_to_100_show_on_the_variants_and_nothing_is_written(marketer_client):
    response = marketer_client.post(f"{CAMPAIGNS}add/", campaign_form(("a", 60, "2.00", ""), ("b", 30, "", "")))

    assert form_errors(response) == {}
    assert [str(e) for e in variants_formset(response).non_form_errors()] == ["The variants' weights must sum to 100."]
    assert b"The variants&#x27; weights must sum to 100." in response.content
    assert (Campaign.objects.count(), CampaignVariant.objects.count(), AuditEntry.objects.count()) == (0, 0, 0)


def test_the_services_refusals_show_on_the_fields_they_name(marketer_client):
    ends_before_start = split(STARTS - timedelta(days=1))
    response = marketer_client.post(
        f"{CAMPAIGNS}add/",
        campaign_form(
            ("a", 50, "2.00", ""),
            ("b", 50, "0.50", ""),
            multiplier="1.00",
            ends_at_0=ends_before_start[0],
            ends_at_1=ends_before_start[1],
        ),
    )

    assert form_errors(response) == {
        "ends_at": ["The end must come after the start."],
        "multiplier": ["A multiplier is greater than 1 (2 doubles the points)."],
    }
    formset = variants_formset(response)
    assert [dict(form.errors) for form in formset.forms] == [
        {},
        {"multiplier": ["A multiplier is greater than 1 (2 doubles the points)."]},
    ]
    assert (Campaign.objects.count(), AuditEntry.objects.count()) == (0, 0)


def test_a_bonus_for_a_first_purchase_without_its_days_shows_on_the_days_field(marketer_client):
    response = marketer_client.post(
        f"{CAMPAIGNS}add/",
        campaign_form(kind="bonus", multiplier="", bonus_points="50", trigger_action="first_purchase_in_days"),
    )

    assert form_errors(response) == {"trigger_days": ["trigger.days is a whole number of days from 1 to 3650."]}
    assert Campaign.objects.count() == 0


def test_a_clerk_gets_403_on_add_and_sees_campaigns_read_only(client, clerk_a):
    campaign = create(target={"tiers": ["gold", "silver"], "channels": ["offline"]}, conditions={"weekdays": [2]})
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    client.force_login(clerk_a)

    assert client.get(f"{CAMPAIGNS}add/").status_code == 403
    assert client.post(f"{CAMPAIGNS}add/", campaign_form(("a", 100, "2.00", ""))).status_code == 403
    assert client.post(change_url(campaign), campaign_form(name="Renamed")).status_code == 403
    assert client.post(action_url(campaign, "pause")).status_code == 403
    page = client.get(change_url(campaign))
    assert page.status_code == 200
    assert page.context["campaign_actions"] == []
    shown = readonly_values(page)
    assert ("results_table" in shown, "awards_summary" in shown) == (False, False)  # marketing's, as in the API
    assert b"pause or copy" not in page.content
    assert "awards_count" not in client.get(CAMPAIGNS).context["cl"].list_display
    assert (shown["budget_burn_shown"], shown["target_shown"], shown["conditions_shown"], shown["trigger_shown"]) == (
        "0 / 1000 (0.0%)",
        "Tiers: gold, silver; Purchase channels: offline",
        "Days of the week: Tuesday",
        "—",
    )
    assert Campaign.objects.get().name == "Spring bonus"
    assert (Campaign.objects.count(), AuditEntry.objects.filter(actor="staff:clerk-a").count()) == (1, 0)


def test_a_campaigns_terms_read_in_chinese_on_the_chinese_admin(client, clerk_a):
    """Issue 15: the terms' keys and coded values as the form labels them, not "categories: beans; weekdays: 6, 7"."""
    campaign = create(
        target={"lifecycle": ["dormant"], "channels": ["online"]},
        conditions={"categories": ["beans"], "weekdays": [6, 7]},
    )
    client.force_login(clerk_a)

    shown = readonly_values(client.get(change_url(campaign), HTTP_ACCEPT_LANGUAGE="zh-hans"))

    assert (shown["conditions_shown"], shown["target_shown"]) == (
        "品类：beans; 星期：星期六, 星期日",
        "生命周期阶段：沉睡; 消费渠道：线上",
    )


# --- A running campaign keeps its terms ------------------------------------------------------------------------


def test_a_running_campaigns_terms_are_read_only_and_a_forged_post_changes_only_the_name(marketer_client):
    campaign = create()
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    variant_ids = list(CampaignVariant.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))

    page = marketer_client.get(change_url(campaign))
    form = page.context["adminform"].form
    assert [name for name, field in form.fields.items() if not field.disabled] == ["name", "description"]
    assert page.context["adminform"].fieldsets[0][1]["description"] == (
        "The campaign is running: pause or copy to change its terms."
    )
    assert b"The campaign is running: pause or copy to change its terms." in page.content
    assert variants_formset(page).forms[0].has_changed() is False
    assert [name for name, _label in page.context["campaign_actions"]] == ["pause", "end", "copy"]

    starts, ends = split(campaign.starts_at), split(campaign.ends_at)
    response = marketer_client.post(
        change_url(campaign),
        campaign_form(
            ("a", 10, "9.00", "", variant_ids[0]),
            ("b", 90, "9.00", "", variant_ids[1]),
            name="Spring bonus (renamed)",
            description="",
            multiplier="5.00",
            budget_points="999999",
            starts_at_0=starts[0],
            starts_at_1=starts[1],
            ends_at_0=ends[0],
            ends_at_1=ends[1],
            **{"variants-INITIAL_FORMS": "2"},
        ),
    )

    assert response.status_code == 302, form_errors(response)
    campaign.refresh_from_db()
    assert (campaign.name, campaign.multiplier, campaign.budget_points, campaign.holdout_percent) == (
        "Spring bonus (renamed)",
        Decimal("2.00"),
        1000,
        Decimal("0.00"),
    )
    assert variants_of(campaign) == [("a", 50, Decimal("2.00"), None), ("b", 50, Decimal("3.00"), None)]
    audit = AuditEntry.objects.get(action="campaign.changed")
    assert (audit.actor, audit.old_values, audit.new_values) == (
        "staff:marketing",
        {"name": "Spring bonus"},
        {"name": "Spring bonus (renamed)"},
    )


def test_a_campaign_that_started_running_while_the_form_was_open_refuses_the_change_on_its_fields(
    marketer_client, monkeypatch
):
    campaign = create()
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    monkeypatch.setattr(campaign_admin, "terms_editable", lambda campaign: True)  # the form as shown while paused
    variant_ids = list(CampaignVariant.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    starts, ends = split(campaign.starts_at), split(campaign.ends_at)

    response = marketer_client.post(
        change_url(campaign),
        campaign_form(
            ("a", 50, "2.00", "", variant_ids[0]),
            ("b", 50, "3.00", "", variant_ids[1]),
            name="Spring bonus",
            description="",
            priority="1",
            multiplier="5.00",
            budget_points="1000",
            per_member_cap="",
            holdout_percent="0.00",
            condition_weekdays=[],
            target_tiers=[],
            target_segments=[],
            target_channels=[],
            starts_at_0=starts[0],
            starts_at_1=starts[1],
            ends_at_0=ends[0],
            ends_at_1=ends[1],
            **{"variants-INITIAL_FORMS": "2"},
        ),
    )

    assert form_errors(response) == {"multiplier": ["The campaign is running: pause or copy to change its terms."]}
    campaign.refresh_from_db()
    assert campaign.multiplier == Decimal("2.00")
    assert AuditEntry.objects.filter(action="campaign.changed").count() == 0


def test_a_paused_campaigns_variants_change_through_the_form(marketer_client):
    campaign = create()
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    services.pause_campaign(actor="staff:seed", campaign_id=campaign.pk)
    variant_ids = list(CampaignVariant.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))
    starts, ends = split(campaign.starts_at), split(campaign.ends_at)

    response = marketer_client.post(
        change_url(campaign),
        {
            **campaign_form(
                ("a", 30, "2.00", "", variant_ids[0]),
                ("b", 70, "3.00", "", variant_ids[1]),
                name="Spring bonus",
                description="",
                priority="1",
                budget_points="1000",
                per_member_cap="",
                holdout_percent="0.00",
                condition_weekdays=[],
                target_tiers=[],
                target_segments=[],
                target_channels=[],
                starts_at_0=starts[0],
                starts_at_1=starts[1],
                ends_at_0=ends[0],
                ends_at_1=ends[1],
                **{"variants-INITIAL_FORMS": "2"},
            ),
        },
    )

    assert response.status_code == 302, form_errors(response)
    assert variants_of(campaign) == [("a", 30, Decimal("2.00"), None), ("b", 70, Decimal("3.00"), None)]
    audit = AuditEntry.objects.get(action="campaign.changed")
    assert (audit.actor, list(audit.old_values), list(audit.new_values)) == (
        "staff:marketing",
        ["variants"],
        ["variants"],
    )
    assert [v["weight"] for v in audit.new_values["variants"]] == [30, 70]


def test_once_members_are_assigned_the_split_is_read_only(marketer_client, member_a):
    campaign = create()
    CampaignAssignment.objects.create(campaign=campaign, member=member_a, group="a")

    page = marketer_client.get(change_url(campaign))

    form = page.context["adminform"].form
    assert (form.fields["holdout_percent"].disabled, form.fields["multiplier"].disabled) == (True, False)
    assert variants_formset(page).forms[0].has_changed() is False
    assert page.context["inline_admin_formsets"][0].has_change_permission is False


# --- Activate, pause, end, copy -------------------------------------------------------------------------------


def test_activate_pause_and_copy_buttons_go_through_the_services_with_the_admin_actor(marketer_client):
    campaign = create()
    page = marketer_client.get(change_url(campaign))
    assert [name for name, _label in page.context["campaign_actions"]] == ["activate", "copy"]
    assert f'action="{action_url(campaign, "activate")}"'.encode() in page.content

    response = marketer_client.post(action_url(campaign, "activate"))

    assert (response.status_code, response["Location"]) == (302, change_url(campaign))
    assert messages_of(response) == ["“Spring bonus” is now active."]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.activated_at is not None) == ("active", True)
    page = marketer_client.get(change_url(campaign))
    assert [name for name, _label in page.context["campaign_actions"]] == ["pause", "end", "copy"]

    response = marketer_client.post(action_url(campaign, "pause"))

    assert messages_of(response) == ["“Spring bonus” is now paused."]
    campaign.refresh_from_db()
    assert campaign.status == "paused"

    response = marketer_client.post(action_url(campaign, "copy"))

    copy = Campaign.objects.exclude(pk=campaign.pk).get()
    assert (response.status_code, response["Location"]) == (302, change_url(copy))
    assert (copy.name, copy.status, copy.copied_from_id, copy.budget_points, copy.budget_used, copy.created_by) == (
        "Spring bonus",
        "draft",
        campaign.pk,
        1000,
        0,
        "staff:marketing",
    )
    assert variants_of(copy) == variants_of(campaign)
    assert audit_actions() == [
        ("campaign.created", "staff:seed", str(campaign.pk)),
        ("campaign.activated", "staff:marketing", str(campaign.pk)),
        ("campaign.paused", "staff:marketing", str(campaign.pk)),
        ("campaign.created", "staff:marketing", str(copy.pk)),
    ]


def test_end_then_only_copy_is_offered_and_the_page_is_read_only(marketer_client):
    campaign = create()
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)

    response = marketer_client.post(action_url(campaign, "end"))

    assert messages_of(response) == ["“Spring bonus” is now ended."]
    campaign.refresh_from_db()
    assert campaign.status == "ended"
    page = marketer_client.get(change_url(campaign))
    assert [name for name, _label in page.context["campaign_actions"]] == ["copy"]
    assert page.context["has_change_permission"] is False
    assert marketer_client.post(change_url(campaign), campaign_form(name="x")).status_code == 403
    response = marketer_client.post(action_url(campaign, "pause"))
    assert messages_of(response) == ["invalid_status: A ended campaign cannot be paused."]
    assert campaign.name == Campaign.objects.get(pk=campaign.pk).name


def test_an_activation_the_service_refuses_is_reported_and_changes_nothing(marketer_client):
    campaign = create(target={"tiers": ["gold"]})
    Tier.objects.filter(code="gold").update(code="gold-2031")  # its tier is gone since it was saved

    response = marketer_client.post(action_url(campaign, "activate"))

    assert messages_of(response) == ["invalid: Invalid input: target.tiers. (target.tiers: ['Unknown codes: gold.'])"]
    campaign.refresh_from_db()
    assert campaign.status == "draft"
    assert AuditEntry.objects.filter(action="campaign.activated").count() == 0
    page = marketer_client.get(change_url(campaign))  # the form still shows (and keeps) the code
    assert page.context["adminform"].form.initial["target_tiers"] == ["gold"]
    assert ("gold", "gold (?)") in page.context["adminform"].form.fields["target_tiers"].choices


def test_the_action_urls_take_only_posts(marketer_client):
    campaign = create()

    assert marketer_client.get(action_url(campaign, "activate")).status_code == 405
    assert Campaign.objects.get().status == "draft"


def test_list_actions_activate_and_pause_each_campaign_through_the_service(marketer_client):
    first, second = create(name="One"), create(name="Two")

    response = marketer_client.post(
        CAMPAIGNS, {"action": "activate_selected", "_selected_action": [str(first.pk), str(second.pk)]}
    )

    assert messages_of(response) == ["Activated 2 campaign(s)."]
    assert sorted(Campaign.objects.values_list("status", flat=True)) == ["active", "active"]
    marketer_client.post(CAMPAIGNS, {"action": "pause_selected", "_selected_action": [str(first.pk)]})
    assert Campaign.objects.get(pk=first.pk).status == "paused"
    assert [a for a, _actor, _id in audit_actions()] == [
        "campaign.created",
        "campaign.created",
        "campaign.activated",
        "campaign.activated",
        "campaign.paused",
    ]


def test_a_draft_is_deleted_through_the_service_and_a_running_campaign_not_at_all(marketer_client):
    draft, running = create(name="Draft"), create(name="Running")
    services.activate_campaign(actor="staff:seed", campaign_id=running.pk)

    response = marketer_client.post(f"{CAMPAIGNS}{draft.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert list(Campaign.objects.values_list("name", flat=True)) == ["Running"]
    assert AuditEntry.objects.get(action="campaign.deleted").actor == "staff:marketing"
    assert marketer_client.post(f"{CAMPAIGNS}{running.pk}/delete/", {"post": "yes"}).status_code == 403
    assert "delete_selected" not in marketer_client.get(CAMPAIGNS).context["action_form"].fields["action"].choices[1:]


# --- The list and the panel -----------------------------------------------------------------------------------


def test_the_list_shows_effective_status_budget_burn_and_awards_and_filters_by_status(marketer_client, member_a):
    now = timezone.now()
    draft = create(name="Draft", budget_points=None)
    scheduled = create(name="Later", starts_at=now + timedelta(days=2), ends_at=now + timedelta(days=9))
    active = create(name="Now")
    over = create(name="Over", starts_at=now - timedelta(days=9), ends_at=now - timedelta(days=2))
    for campaign in (scheduled, active):
        services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    Campaign.objects.filter(pk=over.pk).update(status="active")  # it ran and its end has passed
    Campaign.objects.filter(pk=active.pk).update(budget_used=250)
    for points in (100, 150):
        CampaignAward.objects.create(
            campaign=active, member=member_a, group="a", points=points, business_date=timezone.localdate()
        )

    listing = marketer_client.get(CAMPAIGNS)

    admin_ = listing.context["cl"].model_admin
    rows = {
        c.name: (admin_.effective_status(c), admin_.budget_burn_shown(c), c.awards_total)
        for c in listing.context["cl"].result_list
    }
    assert rows == {
        "Draft": ("draft", "no budget", 0),
        "Later": ("scheduled", "0 / 1000 (0.0%)", 0),
        "Now": ("active", "250 / 1000 (25.0%)", 2),
        "Over": ("ended", "0 / 1000 (0.0%)", 0),
    }
    for status, names in (("active", ["Now"]), ("scheduled", ["Later"]), ("ended", ["Over"]), ("draft", ["Draft"])):
        filtered = marketer_client.get(f"{CAMPAIGNS}?status={status}")
        assert [c.name for c in filtered.context["cl"].result_list] == names
    assert [c.name for c in marketer_client.get(f"{CAMPAIGNS}?kind=bonus").context["cl"].result_list] == []
    assert draft.pk


def test_the_page_shows_budget_burn_and_results_not_available_while_results_do_not_work(
    marketer_client, member_a, monkeypatch
):
    campaign = create()
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    Campaign.objects.filter(pk=campaign.pk).update(budget_used=1000, budget_exhausted_at=timezone.now())
    CampaignAward.objects.create(
        campaign=campaign,
        member=member_a,
        group="a",
        points=1000,
        points_returned=40,
        business_date=timezone.localdate(),
    )

    def not_yet(campaign, **kwargs):
        raise NotImplementedError

    monkeypatch.setattr(results, "campaign_results", not_yet)
    page = marketer_client.get(change_url(campaign))

    panel = readonly_values(page)
    assert panel["budget_burn_shown"].startswith("1000 / 1000 (100.0%), spent ")
    assert panel["awards_summary"].startswith("1 awards, 1000 points (40 returned by refunds)")
    assert panel["results_table"] == "Results not available."
    assert panel["effective_status"] == "active"

    def refused(campaign, **kwargs):
        raise InvalidInput({"to": ["No window yet."]})

    monkeypatch.setattr(results, "campaign_results", refused)
    assert readonly_values(marketer_client.get(change_url(campaign)))["results_table"] == "Results not available."


def test_the_page_renders_results_when_they_work(marketer_client, monkeypatch):
    campaign = create()
    services.activate_campaign(actor="staff:seed", campaign_id=campaign.pk)
    calls = []

    def fake(campaign, **kwargs):
        calls.append(campaign.pk)
        return {
            "campaign_id": str(campaign.pk),
            "from": "2031-03-01",
            "to": "2031-03-31",
            "groups": [{"group": "a", "members": 7, "participants": 3, "revenue": "<b>12.00</b>"}],
            "lift": [{"group": "a", "metric": "repurchase_rate", "estimate": 0.25, "p_value": 0.04}],
            "points_per_extra_revenue": [{"group": "a", "points": "1.5"}],
        }

    monkeypatch.setattr(results, "campaign_results", fake)

    table = readonly_values(marketer_client.get(change_url(campaign)))["results_table"]

    assert set(calls) == {campaign.pk}
    assert "<p>Window: 2031-03-01 – 2031-03-31</p>" in table
    assert "<tr><td>a</td><td>7</td><td>3</td><td></td><td>&lt;b&gt;12.00&lt;/b&gt;</td>" in table
    assert "<tr><td>a</td><td>repurchase_rate</td><td>0.25</td><td></td><td></td><td>0.04</td></tr>" in table
    assert "<p>group: a, points: 1.5</p>" in table


def test_a_campaign_that_never_ran_has_no_results_yet(marketer_client):
    campaign = create()

    assert readonly_values(marketer_client.get(change_url(campaign)))["results_table"] == (
        "The campaign has not run yet."
    )


def readonly_values(response):
    assert response.status_code == 200
    return {
        field.field["name"]: str(field.contents())
        for fieldset in response.context["adminform"]
        for line in fieldset
        for field in line
        if field.is_readonly
    }


# --- Assignments and awards -------------------------------------------------------------------------------------


def test_assignments_and_awards_are_read_only_searchable_by_card_number_and_filtered(marketer_client, member_a):
    spring, summer = create(name="Spring"), create(name="Summer")
    other = MemberFactory()
    CampaignAssignment.objects.create(campaign=spring, member=member_a, group="a")
    CampaignAssignment.objects.create(campaign=spring, member=other, group="holdout")
    CampaignAssignment.objects.create(campaign=summer, member=member_a, group="b")
    CampaignAward.objects.create(
        campaign=spring, member=member_a, group="a", points=10, business_date=timezone.localdate()
    )
    CampaignAward.objects.create(
        campaign=summer, member=member_a, group="b", points=20, business_date=timezone.localdate()
    )
    assignments = "/admin/campaigns/campaignassignment/"

    def listed(url):
        response = marketer_client.get(url)
        assert response.status_code == 200
        return sorted((row.campaign.name, row.member_id, row.group) for row in response.context["cl"].result_list)

    assert listed(f"{assignments}?q={member_a.member_no}") == [
        ("Spring", member_a.pk, "a"),
        ("Summer", member_a.pk, "b"),
    ]
    assert listed(f"{assignments}?campaign__id__exact={spring.pk}") == [
        ("Spring", member_a.pk, "a"),
        ("Spring", other.pk, "holdout"),
    ]
    assert listed(f"{assignments}?campaign__id__exact={spring.pk}&group=holdout") == [("Spring", other.pk, "holdout")]
    assert listed(f"/admin/campaigns/campaignaward/?campaign__id__exact={summer.pk}") == [("Summer", member_a.pk, "b")]
    assert listed(f"/admin/campaigns/campaignaward/?q={other.member_no}") == []
    assert marketer_client.get(f"{assignments}add/").status_code == 403
    assert marketer_client.get("/admin/campaigns/campaignaward/add/").status_code == 403


def test_clerks_do_not_see_assignments_or_awards(client, clerk_a):
    client.force_login(clerk_a)

    for url in ("/admin/campaigns/campaignassignment/", "/admin/campaigns/campaignaward/"):
        assert client.get(url).status_code == 403
