"""The coupon counter in the admin: a clerk checks, redeems and undoes a coupon typed or scanned, through the
services the API uses; the page says why in plain words; the form's hidden key makes a double submit redeem once;
the member page shows her coupons."""

import html as html_text
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models_coupons import Coupon
from loyalty.clock import business_date
from tests.coupons.helpers import issue, redeem, template
from tests.factories import StaffUserFactory, StoreFactory

pytestmark = pytest.mark.django_db

COUNTER = "/admin/campaigns/coupon/counter/"


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


@pytest.fixture
def coupon(member_a):
    with transaction.atomic():
        (issued,) = issue(template(name="20 off 100"), member_a)
    return issued


def texts(response, element_id):
    html = response.content.decode()
    match = re.search(rf'id="{element_id}">(.*?)</li>', html, flags=re.S)
    return match and html_text.unescape(re.sub(r"\s+", " ", match.group(1)).strip())


def verdict(response):
    assert response.status_code == 200, response.content[:500]
    return texts(response, "coupon-verdict")


def refusal(response):
    assert response.status_code == 200, response.content[:500]
    return texts(response, "coupon-refusal")


def posted(client, *, action, key, member=None, **fields):
    shown = client.get(COUNTER, {"member": member} if member else {}).context["form"]
    data = {
        "code": "",
        "amount": "150.00",
        "order_no": "",
        "store": str(shown["store"].value() or ""),
        "categories": "",
        "member": member or "",
        "key": key or str(shown["key"].value()),
        "action": action,
        **fields,
    }
    return client.post(COUNTER, data)


def test_the_clerks_only_store_is_preselected_and_the_only_choice(clerk_client, store_a, store_b):
    form = clerk_client.get(COUNTER).context["form"]
    assert form["store"].value() == store_a.pk
    assert list(form.fields["store"].queryset) == [store_a]
    assert form["key"].value()


def test_check_says_valid_with_the_discount_and_writes_nothing(clerk_client, coupon, member_a):
    response = posted(clerk_client, action="check", key=None, code=coupon.code.lower())

    assert verdict(response) == (
        f"Valid: {coupon.code}, “20 off 100” of {member_a}. Discount 20.00 on 150.00; "
        f"valid until {coupon.valid_until.isoformat()}."
    )
    coupon.refresh_from_db()
    assert coupon.status == "unused"


def test_check_below_the_threshold_says_so_in_plain_words(clerk_client, coupon):
    response = posted(clerk_client, action="check", key=None, code=coupon.code, amount="99.99")
    assert refusal(response) == "Not valid: The order is below this coupon's minimum of 100.00."


def test_a_mistyped_code_is_refused_before_any_lookup(clerk_client, coupon):
    typo = coupon.code[:-1] + ("2" if coupon.code[-1] != "2" else "3")
    with CaptureQueriesContext(connection) as queries:
        response = posted(clerk_client, action="redeem", key=None, code=typo, order_no="T-1")
    assert not [query for query in queries if "campaigns_coupon" in query["sql"]]
    assert response.status_code == 200
    assert response.context["form"].errors["code"] == [
        "This is not a valid coupon code (This is not a valid coupon code: a character was probably mistyped.) "
        "Check it and type it again."
    ]
    assert Coupon.objects.get().status == "unused"


def test_an_unknown_code_is_said_plainly(clerk_client, coupon):
    from campaigns.coupon_codes import new_code

    response = posted(clerk_client, action="check", key=None, code=new_code())
    assert refusal(response) == "No coupon with this code."


def test_redeem_redeems_through_the_service_and_offers_the_undo(clerk_client, coupon, member_a, store_a):
    response = posted(clerk_client, action="redeem", key=None, code=coupon.code, order_no="A-100")

    assert verdict(response) == (
        f"Redeemed {coupon.code}, “20 off 100” of {member_a} on order A-100: discount 20.00 on 150.00."
    )
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no, coupon.store, coupon.discount) == ("used", "A-100", store_a, Decimal(20))
    assert (coupon.redeemed_source, coupon.redeemed_by) == ("store:A001", "staff:clerk-a")
    assert response.context["undo_code"] == coupon.code
    assert 'name="undo_code"' in response.content.decode()
    assert str(response.context["form"]["key"].value()) != str(response.wsgi_request.POST["key"])  # a fresh key

    undone = clerk_client.post(COUNTER, {"action": "undo", "undo_code": coupon.code})
    assert verdict(undone) == f"Undone: coupon {coupon.code} is unused again."
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no) == ("unused", "")


def test_the_same_form_submitted_twice_redeems_once(clerk_client, coupon, member_a):
    key = str(clerk_client.get(COUNTER).context["form"]["key"].value())
    first = posted(clerk_client, action="redeem", key=key, code=coupon.code, order_no="A-1")
    second = posted(clerk_client, action="redeem", key=key, code=coupon.code, order_no="A-1")

    assert verdict(first).startswith("Redeemed ")
    assert verdict(second) == (
        "This form was already submitted, nothing changed. "
        f"Redeemed {coupon.code}, “20 off 100” of {member_a} on order A-1: discount 20.00 on 150.00."
    )
    assert Coupon.objects.filter(status="used").count() == 1


def test_a_key_reused_for_another_order_redeems_nothing_and_the_form_gets_a_new_key(clerk_client, coupon):
    with transaction.atomic():
        (other,) = issue(template(name="5 off"), coupon.member)
    key = str(clerk_client.get(COUNTER).context["form"]["key"].value())
    posted(clerk_client, action="redeem", key=key, code=coupon.code, order_no="A-1")

    response = posted(clerk_client, action="redeem", key=key, code=other.code, order_no="A-2")

    assert refusal(response) == "This form was already used for another order: press Redeem again to redeem."
    assert str(response.context["form"]["key"].value()) != key
    other.refresh_from_db()
    assert other.status == "unused"


def test_a_used_coupon_is_refused_with_when_and_the_order(clerk_client, coupon, store_a):
    redeem(coupon.code, store=store_a, order_no="FIRST")
    coupon.refresh_from_db()
    used_at = timezone.localtime(coupon.used_at).strftime("%Y-%m-%d %H:%M")

    response = posted(clerk_client, action="redeem", key=None, code=coupon.code, order_no="SECOND")

    assert refusal(response) == f"Not redeemed: This coupon was already used on {used_at} (order FIRST)."


def test_an_expired_coupon_is_refused_with_its_last_day(clerk_client, coupon):
    last_day = business_date() - timedelta(days=1)
    Coupon.objects.filter(pk=coupon.pk).update(valid_from=last_day - timedelta(days=5), valid_until=last_day)

    response = posted(clerk_client, action="redeem", key=None, code=coupon.code, order_no="X-1")

    assert refusal(response) == f"Not redeemed: This coupon expired: its last day was {last_day.isoformat()}."


def test_wrong_store_and_category_are_said_in_plain_words(clerk_client, member_a):
    with transaction.atomic():
        (coupon,) = issue(template(stores=["B001"], categories=["shoes", "bags"]), member_a)
    StoreFactory(code="B001", name="Store B")
    response = posted(clerk_client, action="redeem", key=None, code=coupon.code, order_no="X-2")
    assert refusal(response) == "Not redeemed: This coupon cannot be used at this store (only at B001)."

    with transaction.atomic():
        (other,) = issue(template(categories=["shoes", "bags"]), member_a)
    response = posted(clerk_client, action="check", key=None, code=other.code, categories="food, drinks")
    assert refusal(response) == "Not valid: This coupon is for shoes, bags only: none is in this order."


def test_for_a_member_another_members_coupon_is_refused(clerk_client, coupon, store_a):
    from tests.factories import MemberFactory

    other = MemberFactory(home_store=store_a)
    response = posted(clerk_client, action="check", key=None, member=other.pk, code=coupon.code)
    assert refusal(response) == "Not valid: This coupon belongs to another member."


def test_the_undo_after_its_window_is_refused(clerk_client, coupon, store_a, settings):
    redeem(coupon.code, store=store_a, order_no="OLD")
    Coupon.objects.filter(pk=coupon.pk).update(used_at=timezone.now() - timedelta(minutes=11))

    response = clerk_client.post(COUNTER, {"action": "undo", "undo_code": coupon.code})

    assert refusal(response) == (
        f"The 10 minutes to undo coupon {coupon.code} have passed: refund the order to return it."
    )
    assert Coupon.objects.get().status == "used"


def test_a_clerk_cannot_undo_a_use_at_another_store(clerk_client, coupon, store_b):
    redeem(coupon.code, store=store_b, order_no="B-1", source="store:B001")
    response = clerk_client.post(COUNTER, {"action": "undo", "undo_code": coupon.code})
    assert refusal(response) == "No coupon with this code used at your stores."
    assert Coupon.objects.get().status == "used"


def test_marketers_use_it_without_a_store_and_members_of_other_stores_are_not_opened_by_id(client, coupon, member_b):
    client.force_login(StaffUserFactory(username="mk", role="marketer"))
    form = client.get(COUNTER).context["form"]
    assert form.fields["store"].required is False
    response = posted(client, action="redeem", key=None, code=coupon.code, order_no="HQ-1")
    assert verdict(response).startswith(f"Redeemed {coupon.code}")
    assert Coupon.objects.get().redeemed_source == "staff"

    clerk = StaffUserFactory(username="clerk-x", role="clerk", stores=[StoreFactory(code="X001")])
    client.force_login(clerk)
    assert client.get(COUNTER, {"member": member_b.pk}).status_code == 404


def test_the_coupon_list_links_the_counter(clerk_client):
    html = clerk_client.get("/admin/campaigns/coupon/").content.decode()
    assert f'<a href="{COUNTER}" id="coupon-counter-link">Coupon counter</a>' in html


# --- The member page -----------------------------------------------------------------------------------------


def glance(response):
    html = response.content.decode()
    start = html.index('id="member-glance"')
    block = html[start : html.index("</table>", start)]
    rows = re.findall(r'<tr><th scope="row">(.*?)</th><td>(.*?)</td></tr>', block, flags=re.S)
    return dict(rows)


def test_the_member_page_shows_her_unused_coupons_and_the_next_last_day(clerk_client, member_a, store_a):
    today = business_date()
    with transaction.atomic():
        soon = issue(template(valid_days=5), member_a)[0]
        issue(template(valid_days=30), member_a, member_a)
        used = issue(template(valid_days=2), member_a)[0]
    redeem(used.code, store=store_a)

    row = glance(clerk_client.get(f"/admin/members/member/{member_a.pk}/change/"))["Coupons"]

    assert soon.valid_until == today + timedelta(days=4)
    assert row == (
        f"3 unused (next expires {soon.valid_until.isoformat()}) "
        f'<a href="/admin/campaigns/coupon/?member__id__exact={member_a.pk}">Her coupons</a> '
        f'<a href="{COUNTER}?member={member_a.pk}">Check or redeem a coupon</a>'
    )
    listed = clerk_client.get("/admin/campaigns/coupon/", {"member__id__exact": member_a.pk})
    assert listed.status_code == 200
    assert len(listed.context["cl"].result_list) == 4
    counter = clerk_client.get(COUNTER, {"member": member_a.pk})
    assert counter.context["form"]["member"].value() == member_a.pk
    assert f"For {member_a}: a coupon of another member is refused." in counter.content.decode()


def test_the_member_page_says_none_unused(clerk_client, member_a):
    row = glance(clerk_client.get(f"/admin/members/member/{member_a.pk}/change/"))["Coupons"]
    assert row.startswith("none unused <a ")


def test_the_counter_refuses_a_coupon_not_stackable_with_the_points_the_order_uses(clerk_client, member_a):
    with transaction.atomic():
        (alone,) = issue(template(name="20 off 100", stackable_with_points=False), member_a)

    checked = posted(clerk_client, action="check", key=None, code=alone.code, points_used="300")
    assert refusal(checked) == "Not valid: This coupon cannot be used with points as cash on the same order."
    redeemed = posted(clerk_client, action="redeem", key=None, code=alone.code, order_no="C1", points_used="300")
    assert "cannot be used with points as cash" in refusal(redeemed)
    alone.refresh_from_db()
    assert alone.status == "unused"
    assert verdict(posted(clerk_client, action="redeem", key=None, code=alone.code, order_no="C1")).startswith(
        "Redeemed"
    )
