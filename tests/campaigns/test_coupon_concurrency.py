"""A campaign's coupons under real concurrency on PostgreSQL: tills of different members earning at the same moment
against a template with a small quantity, each its own connection."""

from collections import Counter
from decimal import Decimal

import pytest

from campaigns.models import CampaignAward
from campaigns.models_coupons import Coupon, CouponTemplate
from tests.campaigns.helpers import running_campaign
from tests.coupons.helpers import template
from tests.factories import MemberFactory
from tests.points.helpers import assert_ledger_consistent
from tests.points.test_concurrency import outcome, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 20


def test_twenty_awards_against_a_template_of_five_issue_exactly_five_coupons(api, store_a):
    members = MemberFactory.create_batch(THREADS, home_store=store_a)
    coupon_template = template(total_quantity=5)
    double = running_campaign(multiplier=Decimal("2"), coupon_template=str(coupon_template.pk))
    responses = run_together(
        THREADS,
        lambda i: api().post(
            "/api/v1/purchases/",
            {"member": str(members[i].pk), "order_no": f"T{i}", "amount": "100.00", "store": "A001"},
            format="json",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: THREADS}
    assert sorted(response.json()["points"]["awarded"] for response in responses) == [200] * THREADS
    awards = CampaignAward.objects.filter(campaign=double)
    assert awards.count() == THREADS
    assert Counter(awards.values_list("coupon_skipped", flat=True)) == {"": 5, "out_of_stock": 15}
    coupons = Coupon.objects.filter(template=coupon_template)
    assert coupons.count() == 5
    assert len(set(coupons.values_list("member_id", flat=True))) == 5
    assert set(awards.exclude(coupon=None).values_list("coupon_id", flat=True)) == set(
        coupons.values_list("id", flat=True)
    )
    assert CouponTemplate.objects.get(pk=coupon_template.pk).issued_count == 5
    assert_ledger_consistent()
