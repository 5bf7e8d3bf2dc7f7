"""A reward of kind coupon issues a real coupon when a member exchanges points for it (SPEC §10)."""

import pytest

from campaigns.models_coupons import Coupon, CouponStatus
from points.models import Reward
from tests.coupons.helpers import template
from tests.points.test_api_contract import give_points

pytestmark = pytest.mark.django_db
REDEMPTIONS = "/api/v1/redemptions/"


@pytest.fixture
def coupon_reward(db):
    template(reward_code="coffee-coupon", total_quantity=1, kind="free_item", amount_off=18, threshold=None)
    return Reward.objects.create(code="coffee-coupon", name="A free coffee", kind="coupon", cost_points=100)


def redeem(client, member, reward, key):
    body = {"member": str(member.pk), "reward": str(reward.pk)}
    return client.post(REDEMPTIONS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_exchanging_points_for_a_coupon_reward_issues_a_real_coupon(pos_a, member_a, coupon_reward):
    give_points(member_a, 300)
    response = redeem(pos_a, member_a, coupon_reward, "x1")
    assert response.status_code == 201, response.content
    coupon = Coupon.objects.get()
    assert response.json()["code"] == coupon.code
    assert (coupon.member, coupon.source, coupon.status) == (member_a, "reward", "unused")
    assert coupon.source_ref == f"redemption:{response.json()['id']}"
    sold_out = redeem(pos_a, member_a, coupon_reward, "x2")
    assert (sold_out.status_code, sold_out.json()["code"]) == (409, "out_of_stock")
    assert Coupon.objects.count() == 1
    assert response.json()["balance"] == 200


def test_cancelling_the_redemption_voids_its_coupon_unless_it_was_used(pos_a, member_a, coupon_reward):
    give_points(member_a, 300)
    first = redeem(pos_a, member_a, coupon_reward, "x1").json()
    cancelled = pos_a.post(f"{REDEMPTIONS}{first['id']}/cancel/")
    assert cancelled.status_code == 200, cancelled.content
    assert Coupon.objects.get(code=first["code"]).status == CouponStatus.VOID

    coupon_reward_template = Coupon.objects.get().template
    coupon_reward_template.total_quantity = 2
    coupon_reward_template.save()
    second = redeem(pos_a, member_a, coupon_reward, "x2").json()
    used = pos_a.post(
        "/api/v1/coupons/redeem/",
        {"code": second["code"], "order_no": "A1", "amount": "30.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="r1",
    )
    assert used.status_code == 201
    refused = pos_a.post(f"{REDEMPTIONS}{second['id']}/cancel/")
    assert (refused.status_code, refused.json()["code"]) == (409, "coupon_used")
    assert Coupon.objects.get(code=second["code"]).status == CouponStatus.USED


def test_a_coupon_reward_without_a_template_keeps_its_plain_code(pos_a, member_a):
    reward = Reward.objects.create(code="other", name="Other", kind="coupon", cost_points=10)
    give_points(member_a, 10)
    response = redeem(pos_a, member_a, reward, "x1")
    assert response.status_code == 201
    assert len(response.json()["code"]) == 12
    assert not Coupon.objects.exists()
