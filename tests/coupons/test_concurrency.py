"""Real concurrency on PostgreSQL: threads with their own connections hit the coupon API at the same moment."""

from collections import Counter

import pytest
from django.db import transaction

from campaigns.models_coupons import Coupon, CouponTemplate
from loyalty.credentials import create_api_client
from tests.conftest import ALL_SCOPES, _client, staff_client
from tests.coupons.helpers import issue, template
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.test_concurrency import outcome, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pos(store_a):
    """A factory of API clients for one client app of store A (one client per thread: 20 tills)."""
    _, key = create_api_client(name="POS", stores=[store_a], scopes=ALL_SCOPES)
    return lambda: _client(HTTP_AUTHORIZATION=f"Api-Key {key}")


def test_twenty_tills_redeem_one_code_and_exactly_one_wins(pos, store_a):
    member = MemberFactory(home_store=store_a)
    with transaction.atomic():
        (coupon,) = issue(template(), member)

    responses = run_together(
        20,
        lambda i: pos().post(
            "/api/v1/coupons/redeem/",
            {"code": coupon.code, "order_no": f"O{i}", "amount": "150.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"till-{i}",
        ),
    )

    assert Counter(map(outcome, responses)) == {201: 1, "coupon_used": 19}
    winner = next(response.json() for response in responses if response.status_code == 201)
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no, coupon.discount) == ("used", winner["order_no"], 20)


def test_twenty_concurrent_issues_never_pass_the_total_quantity(store_a):
    offer = template(total_quantity=25, per_member_limit=None)
    members = [MemberFactory(home_store=store_a) for _ in range(20)]
    marketer = StaffUserFactory(username="marketer", role="marketer")

    responses = run_together(
        20,
        lambda i: staff_client(marketer).post(
            f"/api/v1/coupon-templates/{offer.pk}/issue/",
            {"members": [str(members[i].pk), str(members[(i + 1) % 20].pk)]},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"issue-{i}",
        ),
    )

    assert Counter(map(outcome, responses)) == {201: 12, "out_of_stock": 8}
    assert CouponTemplate.objects.get(pk=offer.pk).issued_count == 24
    assert Coupon.objects.count() == 24


def test_concurrent_issues_to_one_member_keep_her_limit(store_a):
    offer = template(per_member_limit=3)
    member = MemberFactory(home_store=store_a)
    marketer = StaffUserFactory(username="marketer", role="marketer")

    responses = run_together(
        10,
        lambda i: staff_client(marketer).post(
            f"/api/v1/coupon-templates/{offer.pk}/issue/",
            {"members": [str(member.pk)]},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"issue-{i}",
        ),
    )

    assert Counter(map(outcome, responses)) == {201: 3, "limit_reached": 7}
    assert Coupon.objects.filter(member=member).count() == 3


def test_the_counter_form_double_clicked_from_five_threads_redeems_once(clerk_a, store_a):
    """The admin counter's hidden key: five submits of one form at the same moment are one redemption; the others
    answer it (replayed) rather than "already used"."""
    from django.test import Client

    member = MemberFactory(home_store=store_a)
    with transaction.atomic():
        (coupon,) = issue(template(), member)
    form = {
        "code": coupon.code,
        "amount": "150.00",
        "order_no": "DBL-1",
        "store": str(store_a.pk),
        "categories": "",
        "member": "",
        "key": "5b0e7a5c-2f8e-4c1e-9d1c-0d6a3c0f4b11",
        "action": "redeem",
    }

    def submit(_index):
        client = Client()
        client.force_login(clerk_a)
        return client.post("/admin/campaigns/coupon/counter/", form)

    responses = run_together(5, submit)

    # The page's text, not response.context: the test client's template signals are shared between threads.
    pages = [response.content.decode() for response in responses]
    verdicts = Counter(
        "replayed" if "This form was already submitted, nothing changed." in page else "redeemed" for page in pages
    )
    assert verdicts == {"redeemed": 1, "replayed": 4}
    assert [page.count("on order DBL-1: discount 20.00 on 150.00.") for page in pages] == [1] * 5
    assert ["coupon-refusal" in page for page in pages] == [False] * 5
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no) == ("used", "DBL-1")
