"""Configuration once typed as raw JSON, as real widgets: a reward's eligible tiers are ticked from the ladder, an
earning rule's excluded categories and a coupon's categories are words separated by commas, a coupon's stores are
ticked; each cleans into the JSON list the services expect, and errors show on the field."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models_coupons import CouponTemplate
from points.models import EarningRule, Reward
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


def reward_form(**changes):
    return {
        "code": "tea",
        "name": "Tea",
        "kind": "gift",
        "description": "",
        "cost_points": "300",
        "stock": "",
        "per_member_limit": "",
        "voucher_amount": "",
        "valid_from_0": "",
        "valid_from_1": "",
        "valid_until_0": "",
        "valid_until_1": "",
        "is_active": "on",
        **changes,
    }


def test_a_rewards_eligible_tiers_are_ticked_from_the_ladder(marketer_client):
    form = marketer_client.get("/admin/points/reward/add/").context["adminform"].form
    field = form.fields["eligible_tiers"]
    assert [(code, str(label)) for code, label in field.choices] == [
        ("regular", "普通会员 (regular)"),
        ("silver", "银卡 (silver)"),
        ("gold", "金卡 (gold)"),
        ("diamond", "钻石 (diamond)"),
    ]
    assert 'type="checkbox" name="eligible_tiers" value="gold"' in str(form["eligible_tiers"])

    response = marketer_client.post("/admin/points/reward/add/", reward_form(eligible_tiers=["diamond", "gold"]))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Reward.objects.get(code="tea").eligible_tiers == ["gold", "diamond"]  # in the ladder's order


def test_an_unknown_tier_code_is_a_form_error(marketer_client):
    response = marketer_client.post("/admin/points/reward/add/", reward_form(eligible_tiers=["platinum"]))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["eligible_tiers"] == [
        "Select a valid choice. platinum is not one of the available choices."
    ]
    assert not Reward.objects.exists()


def test_a_saved_tier_no_longer_on_the_ladder_stays_shown_and_ticked(marketer_client):
    reward = Reward.objects.create(code="tea", name="Tea", kind="gift", cost_points=300, eligible_tiers=["vip"])

    form = marketer_client.get(f"/admin/points/reward/{reward.pk}/change/").context["adminform"].form

    assert ("vip", "vip (unknown code)") in [
        (code, str(label)) for code, label in form.fields["eligible_tiers"].choices
    ]
    assert 'value="vip" id="id_eligible_tiers_4" checked' in str(form["eligible_tiers"])


@pytest.fixture
def rule(db):
    return EarningRule.objects.create(
        channel="purchase",
        name="Base",
        points_per_unit=Decimal("1.00"),
        valid_from=timezone.now() - timedelta(days=30),
        excluded_categories=["tobacco", "gift cards"],
    )


def test_excluded_categories_show_as_words_and_are_saved_as_a_list(marketer_client, rule):
    form = marketer_client.get(f"/admin/points/earningrule/{rule.pk}/change/").context["adminform"].form
    assert form["excluded_categories"].value() == "tobacco, gift cards"
    assert 'value="tobacco, gift cards"' in str(form["excluded_categories"])

    cleaned = type(form)(data={"excluded_categories": " 烟草，礼品卡; tobacco ,\ntobacco "}).fields
    assert cleaned["excluded_categories"].clean(" 烟草，礼品卡; tobacco ,\ntobacco ") == ["烟草", "礼品卡", "tobacco"]
    assert cleaned["excluded_categories"].clean('["a", "b"]') == ["a", "b"]  # JSON as typed before
    assert cleaned["excluded_categories"].clean("") == []


def test_an_unchanged_word_list_is_no_change(rule):
    from points.admin import EarningRuleForm

    field = EarningRuleForm.base_fields["excluded_categories"]

    assert field.has_changed(["tobacco", "gift cards"], "tobacco,gift cards") is False
    assert field.has_changed(["tobacco"], "tobacco, wine") is True


def test_a_too_long_category_is_a_form_error():
    from points.admin import EarningRuleForm

    field = EarningRuleForm.base_fields["excluded_categories"]
    with pytest.raises(Exception) as refused:
        field.clean("x" * 65)

    assert refused.value.messages == [f"“{'x' * 65}” is too long: at most 64 characters per entry."]


def coupon_form(**changes):
    return {
        "name": "Spring 10 off",
        "description": "",
        "kind": "amount_off",
        "amount_off": "10.00",
        "percent_off": "",
        "max_discount": "",
        "threshold": "50.00",
        "valid_days": "14",
        "valid_from": "",
        "valid_until": "",
        "total_quantity": "100",
        "per_member_limit": "1",
        "stackable_with_points": "on",
        "issue_on": "",
        "reward_code": "",
        "is_active": "on",
        **changes,
    }


def test_a_coupons_stores_are_ticked_and_its_categories_typed(marketer_client, store_a, store_b):
    form = marketer_client.get("/admin/campaigns/coupontemplate/add/").context["adminform"].form
    assert [(code, str(label)) for code, label in form.fields["stores"].choices] == [
        ("A001", "Store A (A001)"),
        ("B001", "Store B (B001)"),
    ]

    response = marketer_client.post(
        "/admin/campaigns/coupontemplate/add/", coupon_form(stores=["B001"], categories="drinks, 甜点")
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    saved = CouponTemplate.objects.get()
    assert (saved.stores, saved.categories) == (["B001"], ["drinks", "甜点"])
