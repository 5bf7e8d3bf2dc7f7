"""Campaigns that issue a coupon: each award also issues the member one coupon of the campaign's template, in the
earn's transaction, within the template's quantity and per-member limit (a skip leaves the points and records
why), once per award; a coupon-only campaign gives the coupon alone."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from campaigns.models import CampaignAward
from campaigns.models_coupons import Coupon, CouponTemplate
from loyalty.clock import business_date
from points.services import preview_purchase
from tests.campaigns.helpers import campaign_lines, running_campaign
from tests.coupons.helpers import template
from tests.factories import MemberFactory
from tests.points.helpers import event, purchase

pytestmark = pytest.mark.django_db
URL = "/api/v1/campaigns/"


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


def test_an_award_issues_one_coupon_of_the_template_and_a_replayed_purchase_none_more(member, store_a):
    coupon_template = template(valid_days=7)
    double = running_campaign(multiplier=Decimal("2"), coupon_template=str(coupon_template.pk))
    assert double.coupon_template_id == coupon_template.pk
    preview_purchase(member=member, amount=Decimal("100"), store=store_a)
    assert not Coupon.objects.exists()  # a preview issues nothing
    first = purchase(member, 100, order_no="P1", store=store_a)
    assert campaign_lines(first) == {double.pk: 100}
    coupon = Coupon.objects.get()
    today = business_date()
    assert (coupon.member_id, coupon.template_id, coupon.source, coupon.source_ref, coupon.status) == (
        member.pk,
        coupon_template.pk,
        "campaign",
        f"campaign:{double.pk}",
        "unused",
    )
    assert (coupon.valid_from, coupon.valid_until, coupon.issued_by) == (
        today,
        today + timedelta(days=6),
        f"campaign:{double.pk}",
    )
    award = CampaignAward.objects.get()
    assert (award.points, award.coupon_id, award.coupon_skipped) == (100, coupon.pk, "")
    again = purchase(member, 100, order_no="P1", store=store_a)  # the till retries the same order
    assert again == first
    assert (Coupon.objects.count(), CampaignAward.objects.count()) == (1, 1)
    coupon_template.refresh_from_db()
    assert coupon_template.issued_count == 1


def test_limit_and_quantity_skip_the_coupon_but_not_the_points(store_a):
    coupon_template = template(total_quantity=2, per_member_limit=1)
    bonus = running_campaign(
        kind="bonus",
        bonus_points=10,
        trigger={"action": "first_purchase_in_days", "days": 1},
        coupon_template=str(coupon_template.pk),
    )
    double = running_campaign(multiplier=Decimal("2"), coupon_template=str(coupon_template.pk))
    ann, bea, cat = MemberFactory.create_batch(3, home_store=store_a)
    # Ann's first purchase: two awards; the first campaign (id order) takes her one coupon, the second hits her limit.
    assert campaign_lines(purchase(ann, 50, store=store_a)) == {bonus.pk: 10, double.pk: 50}
    assert campaign_lines(purchase(bea, 30, store=store_a)) == {bonus.pk: 10, double.pk: 30}
    assert campaign_lines(purchase(cat, 20, store=store_a)) == {bonus.pk: 10, double.pk: 20}  # none left
    awards = {
        (award.member_id, award.campaign_id): (award.points, award.coupon_id is not None, award.coupon_skipped)
        for award in CampaignAward.objects.all()
    }
    assert awards == {
        (ann.pk, bonus.pk): (10, True, ""),
        (ann.pk, double.pk): (50, False, "limit_reached"),
        (bea.pk, bonus.pk): (10, True, ""),
        (bea.pk, double.pk): (30, False, "limit_reached"),
        (cat.pk, bonus.pk): (10, False, "out_of_stock"),
        (cat.pk, double.pk): (20, False, "out_of_stock"),
    }
    assert sorted(Coupon.objects.values_list("member_id", flat=True)) == sorted([ann.pk, bea.pk])
    assert CouponTemplate.objects.get().issued_count == 2


def test_an_inactive_template_skips_the_coupon(member, store_a):
    coupon_template = template()
    double = running_campaign(multiplier=Decimal("2"), coupon_template=str(coupon_template.pk))
    CouponTemplate.objects.filter(pk=coupon_template.pk).update(is_active=False)
    assert campaign_lines(purchase(member, 40, store=store_a)) == {double.pk: 40}
    award = CampaignAward.objects.get()
    assert (award.coupon_id, award.coupon_skipped) == (None, "template_inactive")
    assert not Coupon.objects.exists()


def test_a_coupon_only_event_campaign_gives_the_coupon_without_points(member):
    coupon_template = template()
    review = running_campaign(kind="bonus", trigger={"action": "share"}, coupon_template=str(coupon_template.pk))
    result = event(member, "share")
    assert campaign_lines(result) == {}
    award = CampaignAward.objects.get()
    assert (award.campaign_id, award.points, award.coupon_skipped) == (review.pk, 0, "")
    assert award.coupon.source_ref == f"campaign:{review.pk}"
    assert Coupon.objects.get().member_id == member.pk


def test_a_coupon_only_birthday_campaign_gives_one_coupon_a_year_and_holdout_members_none(store_a):
    coupon_template = template()
    today = business_date()
    birthday = running_campaign(kind="birthday", coupon_template=str(coupon_template.pk))
    member = MemberFactory(home_store=store_a, birthday=date(1990, today.month, 1))
    assert campaign_lines(purchase(member, 10, store=store_a)) == {}
    assert campaign_lines(purchase(member, 10, store=store_a)) == {}
    assert Coupon.objects.filter(member=member).count() == 1
    assert CampaignAward.objects.filter(campaign=birthday).count() == 1


def test_holdout_members_get_no_coupon(store_a):
    from campaigns.services.assignment import group_for, holdout_buckets

    coupon_template = template()
    split = running_campaign(
        multiplier=Decimal("2"), holdout_percent=Decimal("50"), coupon_template=str(coupon_template.pk)
    )
    members = MemberFactory.create_batch(12, home_store=store_a)
    held = {
        m.pk
        for m in members
        if group_for(split.pk, m.pk, holdout=holdout_buckets(Decimal("50")), variants=[("default", 100)]) == "holdout"
    }
    for m in members:
        purchase(m, 10, store=store_a)
    assert set(Coupon.objects.values_list("member_id", flat=True)) == {m.pk for m in members} - held
    assert CampaignAward.objects.count() == len(members) - len(held)


def _body(**overrides):
    return {
        "name": "Share and get 20 off",
        "kind": "bonus",
        "starts_at": "2030-01-01T00:00:00+08:00",
        "trigger": {"action": "share"},
        **overrides,
    }


def test_the_api_sets_shows_and_checks_the_coupon_template(marketer_api):
    coupon_template = template()
    response = marketer_api.post(URL, _body(coupon_template=str(coupon_template.pk)), format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["coupon_template"], response.json()["bonus_points"]) == (str(coupon_template.pk), None)
    campaign_id = response.json()["id"]
    assert marketer_api.get(f"{URL}{campaign_id}/").json()["coupon_template"] == str(coupon_template.pk)
    cleared = marketer_api.patch(f"{URL}{campaign_id}/", {"coupon_template": None, "bonus_points": 5}, format="json")
    assert cleared.status_code == 200, cleared.json()
    assert cleared.json()["coupon_template"] is None

    no_reward = marketer_api.post(URL, _body(), format="json")
    assert no_reward.status_code == 400
    assert "bonus_points" in no_reward.json()["errors"]
    unknown = marketer_api.post(URL, _body(coupon_template="999999"), format="json")
    assert unknown.status_code == 400
    assert unknown.json()["errors"]["coupon_template"] == ["No active coupon template with this id."]
    malformed = marketer_api.post(URL, _body(coupon_template="abc"), format="json")
    assert malformed.status_code == 400
    assert "coupon_template" in malformed.json()["errors"]
    inactive = template(is_active=False)
    refused = marketer_api.post(URL, _body(coupon_template=str(inactive.pk)), format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"]["coupon_template"] == ["No active coupon template with this id."]


def test_a_template_a_campaign_names_is_not_deleted(marketer_api):
    coupon_template = template()
    running_campaign(multiplier=Decimal("2"), coupon_template=str(coupon_template.pk))
    response = marketer_api.delete(f"/api/v1/coupon-templates/{coupon_template.pk}/")
    assert response.status_code == 409
    assert response.json()["code"] == "template_in_use"
    assert CouponTemplate.objects.filter(pk=coupon_template.pk).exists()


def test_a_running_campaign_keeps_its_coupon_template(marketer_api):
    coupon_template = template()
    campaign = running_campaign(multiplier=Decimal("2"))
    response = marketer_api.patch(f"{URL}{campaign.pk}/", {"coupon_template": str(coupon_template.pk)}, format="json")
    assert response.status_code == 409
    assert (response.json()["code"], response.json()["fields"]) == ("campaign_active", ["coupon_template"])
