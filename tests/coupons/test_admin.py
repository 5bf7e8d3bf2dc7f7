"""The admin: marketers keep coupon templates through the services; coupons are read-only and found by code."""

import pytest
from django.db import transaction

from campaigns.models_coupons import CouponTemplate
from tests.coupons.helpers import issue, template
from tests.factories import MemberFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


def _form(**changes):
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
        "stores": "[]",
        "categories": "[]",
        "total_quantity": "100",
        "per_member_limit": "1",
        "stackable_with_points": "on",
        "issue_on": "",
        "reward_code": "",
        "is_active": "on",
        **changes,
    }


def test_a_marketer_adds_a_template_and_the_service_refuses_bad_terms(marketer_client):
    refused = marketer_client.post("/admin/campaigns/coupontemplate/add/", _form(amount_off=""))
    assert refused.status_code == 200
    assert "needs the amount it takes off" in refused.content.decode()
    assert not CouponTemplate.objects.exists()
    response = marketer_client.post("/admin/campaigns/coupontemplate/add/", _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    saved = CouponTemplate.objects.get()
    assert (saved.name, saved.valid_days, saved.created_by) == ("Spring 10 off", 14, "staff:marketing")


def test_a_template_in_use_keeps_its_terms_in_the_admin(marketer_client, member_a):
    offer = template(total_quantity=100)
    with transaction.atomic():
        issue(offer, member_a)
    url = f"/admin/campaigns/coupontemplate/{offer.pk}/change/"
    refused = marketer_client.post(url, _form(name=offer.name, amount_off="30.00", threshold="100.00", valid_days="30"))
    assert "template_in_use" in refused.content.decode()
    offer.refresh_from_db()
    assert offer.amount_off == 20


def test_a_clerk_finds_a_coupon_by_its_code_as_typed_and_cannot_change_it(clerk_client, member_a, store_b):
    with transaction.atomic():
        (coupon,) = issue(template(), member_a)
        (elsewhere,) = issue(template(), MemberFactory(home_store=store_b))
    listing = clerk_client.get("/admin/campaigns/coupon/", {"q": coupon.code.lower()})
    assert listing.status_code == 200
    text = listing.content.decode()
    assert coupon.code in text and elsewhere.code not in text
    assert "0 results" in clerk_client.get("/admin/campaigns/coupon/", {"q": elsewhere.code}).content.decode()
    page = clerk_client.get(f"/admin/campaigns/coupon/{coupon.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert clerk_client.get("/admin/campaigns/coupontemplate/").status_code == 200
    assert clerk_client.get("/admin/campaigns/coupontemplate/add/").status_code == 403
