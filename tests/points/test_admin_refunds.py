"""Refunds and redemption cancels from the member page at the counter: through the same services as the API
(points.services.record_refund, cancel_redemption), with the result and a clerk's refusals in words."""

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages

from members.models import Purchase, Refund
from points import services
from points.models import EntryKind, LedgerEntry, PointsAccount, Redemption, RedemptionStatus, Reward
from stored_value.models import Payment
from tests.points.test_admin import give_points

pytestmark = pytest.mark.django_db


def member_url(member, tail=""):
    return f"/admin/members/member/{member.pk}/{tail}"


def refund_url(member, purchase):
    return member_url(member, f"purchases/{purchase.pk}/refund/")


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def available(member):
    return PointsAccount.objects.get(member=member).available


def buy(member, store, order_no="A-1", amount="100.00", lines=(), points_used=0):
    services.record_purchase(
        actor="client:pos",
        source=f"store:{store.code}",
        member_id=member.pk,
        order_no=order_no,
        amount=Decimal(amount),
        store=store,
        lines=list(lines),
        points_used=points_used,
        fingerprint=str(uuid.uuid4()),
    )
    return Purchase.objects.get(order_no=order_no)


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


# --- Refunds ---------------------------------------------------------------------------------------------------


def test_the_member_page_offers_a_refund_and_lists_the_orders_left_to_refund(clerk_client, member_a, store_a):
    open_order = buy(member_a, store_a, "A-1", "100.00")
    done = buy(member_a, store_a, "A-2", "30.00")
    services.record_refund(actor="x", purchase_id=done.pk, refund_no="R0", amount=Decimal("30.00"), fingerprint="f")

    page = clerk_client.get(member_url(member_a, "change/"))
    chooser = clerk_client.get(member_url(member_a, "refund/"))

    assert ("Refund an order", member_url(member_a, "refund/")) in [
        (str(label), url) for label, url in page.context["counter_actions"]
    ]
    assert [row["purchase"] for row in chooser.context["purchases"]] == [open_order]
    assert chooser.context["purchases"][0]["refundable"] == "100.00"
    assert refund_url(member_a, open_order) in chooser.content.decode()


def test_a_whole_refund_reverses_all_the_orders_points(clerk_client, member_a, store_a):
    purchase = buy(member_a, store_a, "A-1", "100.00")
    give_points(member_a, 50)
    form = clerk_client.get(refund_url(member_a, purchase)).context["form"]
    refund_no = form["refund_no"].value()
    assert refund_no.startswith("R-")

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": refund_no, "amount": ""})

    assert response.status_code == 302, response.content[:2000]
    assert response["Location"] == member_url(member_a, "change/")
    purchase.refresh_from_db()
    assert (purchase.refunded_amount, purchase.points_reversed) == (Decimal("100.00"), 100)
    refund = Refund.objects.get()
    assert (refund.refund_no, refund.amount, refund.points_reversed) == (refund_no, Decimal("100.00"), 100)
    assert messages_of(response) == [
        f"Refund {refund_no} of order A-1: 100.00 refunded; 100 points reversed, 0 points used as cash returned; "
        "balance 50."
    ]
    entry = LedgerEntry.objects.filter(reason="refund").get()
    assert (entry.points, entry.actor, entry.reference) == (-100, "staff:clerk-a", f"A-1/{refund_no}")


def test_a_part_refund_by_amount_reverses_its_share(clerk_client, member_a, store_a):
    purchase = buy(member_a, store_a, "A-1", "200.00")

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": "50.00"})

    assert messages_of(response) == [
        "Refund R1 of order A-1: 50.00 refunded; 50 points reversed, 0 points used as cash returned; balance 0."
    ]
    purchase.refresh_from_db()
    assert (purchase.refunded_amount, purchase.points_reversed, purchase.refundable_amount) == (
        Decimal("50.00"),
        50,
        Decimal("150.00"),
    )


def test_a_part_refund_by_lines_refunds_their_value_and_quantities(clerk_client, member_a, store_a):
    lines = [
        {"sku": "TEA", "category": "drinks", "quantity": Decimal(2), "unit_price": Decimal("30.00")},
        {"sku": "CAKE", "category": "food", "quantity": Decimal(1), "unit_price": Decimal("40.00")},
    ]
    purchase = buy(member_a, store_a, "A-1", "100.00", lines=lines)
    form = clerk_client.get(refund_url(member_a, purchase)).context["form"]
    assert {name: str(form.fields[name].label) for name in form.line_fields} == {
        "line_0": "TEA (30.00 each): quantity refunded",
        "line_1": "CAKE (40.00 each): quantity refunded",
    }

    response = clerk_client.post(
        refund_url(member_a, purchase), {"refund_no": "R1", "amount": "", "line_0": "1", "line_1": ""}
    )

    assert messages_of(response) == [
        "Refund R1 of order A-1: 30.00 refunded; 30 points reversed, 0 points used as cash returned; balance 0."
    ]
    refund = Refund.objects.get()
    assert (refund.amount, refund.lines) == (Decimal("30.00"), [{"sku": "TEA", "quantity": "1"}])
    assert dict(purchase.lines.values_list("sku", "refunded_quantity")) == {"TEA": Decimal(1), "CAKE": Decimal(0)}
    # The tea left to refund is one cup now.
    again = clerk_client.get(refund_url(member_a, purchase)).context["form"]
    assert again.fields["line_0"].max_value == Decimal(1)


def test_more_of_a_line_than_was_bought_is_a_form_error(clerk_client, member_a, store_a):
    lines = [{"sku": "TEA", "category": "", "quantity": Decimal(2), "unit_price": Decimal("50.00")}]
    purchase = buy(member_a, store_a, "A-1", "100.00", lines=lines)

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "line_0": "3"})

    assert response.status_code == 200
    assert response.context["form"].errors == {"line_0": ["Ensure this value is less than or equal to 2."]}
    assert Refund.objects.count() == 0


def test_a_refund_returns_points_used_as_cash(clerk_client, member_a, store_a):
    give_points(member_a, 1000)
    purchase = buy(member_a, store_a, "A-1", "100.00", points_used=100)

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": ""})

    refund = Refund.objects.get()
    assert (refund.points_reversed, refund.points_returned) == (purchase.points_awarded, 100)
    assert messages_of(response) == [
        f"Refund R1 of order A-1: 100.00 refunded; {purchase.points_awarded} points reversed, 100 points used as "
        "cash returned; balance 1000."
    ]


def test_more_than_is_left_to_refund_shows_the_refundable_amount(clerk_client, member_a, store_a):
    purchase = buy(member_a, store_a, "A-1", "100.00")
    services.record_refund(actor="x", purchase_id=purchase.pk, refund_no="R0", amount=Decimal("70.00"), fingerprint="f")

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": "40.00"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "refund_exceeds_purchase: The refund is more than the purchase's remaining refundable amount. "
        "(refundable: 30.00)"
    ]
    assert Refund.objects.count() == 1


def test_an_order_refunded_in_full_says_so(clerk_client, member_a, store_a):
    purchase = buy(member_a, store_a, "A-1", "100.00")
    services.record_refund(
        actor="x", purchase_id=purchase.pk, refund_no="R0", amount=Decimal("100.00"), fingerprint="f"
    )

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": ""})

    assert response.context["form"].non_field_errors() == ["Order A-1 is already refunded in full."]
    assert Refund.objects.count() == 1


def test_posting_the_same_refund_twice_refunds_once(clerk_client, member_a, store_a):
    purchase = buy(member_a, store_a, "A-1", "100.00")
    clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": "40.00"})

    second = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": "40.00"})

    assert Refund.objects.count() == 1
    purchase.refresh_from_db()
    assert purchase.refunded_amount == Decimal("40.00")
    assert messages_of(second)[-1:] == [
        "Already refunded, nothing changed. Refund R1 of order A-1: 40.00 refunded; 40 points reversed, 0 points "
        "used as cash returned; balance 0."
    ]


def test_the_same_refund_number_for_another_amount_is_refused(clerk_client, member_a, store_a):
    purchase = buy(member_a, store_a, "A-1", "100.00")
    clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": "40.00"})

    response = clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": "10.00"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()[0].startswith("idempotency_conflict: ")
    assert Refund.objects.count() == 1


def test_the_refund_result_names_the_coupons_back_and_the_stored_value_paid(admin_client, member_a, store_a):
    from campaigns.models_coupons import Coupon, CouponStatus
    from tests.coupons.helpers import issue, redeem, template
    from tests.stored_value.helpers import pay, top_up

    (coupon,) = Coupon.objects.filter(pk__in=[c.pk for c in issue(template(), member_a)])
    redeem(coupon.code, store=store_a, amount="150.00", order_no="A-1", member_id=member_a.pk)
    top_up(member_a, 10000)
    pay(member_a, 5000, order_no="A-1", store=store_a)
    purchase = buy(member_a, store_a, "A-1", "150.00")

    response = admin_client.post(refund_url(member_a, purchase), {"refund_no": "R1", "amount": ""})

    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.UNUSED
    assert messages_of(response) == [
        "Refund R1 of order A-1: 150.00 refunded; 150 points reversed, 0 points used as cash returned; balance 0. "
        f"Coupons back to her: {coupon.code}. 50.00 of this order was paid from stored value (0.00 refunded so "
        "far): refund it with the stored-value payment's refund."
    ]
    assert Payment.objects.get().refunded_cents == 0


def test_a_clerk_cannot_refund_another_stores_order(clerk_client, member_a, store_a, store_b):
    purchase = buy(member_a, store_b, "B-1", "100.00")

    assert clerk_client.get(refund_url(member_a, purchase)).status_code == 404
    assert clerk_client.post(refund_url(member_a, purchase), {"refund_no": "R1"}).status_code == 404
    assert clerk_client.get(member_url(member_a, "refund/")).context["purchases"] == []


def test_an_order_of_another_member_is_not_refunded_from_her_page(admin_client, member_a, member_b, store_a):
    purchase = buy(member_b, store_a, "A-1", "100.00")

    assert admin_client.post(refund_url(member_a, purchase), {"refund_no": "R1"}).status_code == 404
    assert Refund.objects.count() == 0


# --- Cancelling one redemption -------------------------------------------------------------------------------


@pytest.fixture
def redemption(member_a):
    gift = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=5)
    give_points(member_a, 300)
    services.redeem_reward(
        actor="staff:seed",
        scope="test",
        key="r1",
        fingerprint="x",
        member_id=member_a.pk,
        reward_id=gift.pk,
        quantity=2,
    )
    return Redemption.objects.get()


def cancel_url(member, redemption):
    return member_url(member, f"redemptions/{redemption.pk}/cancel/")


def test_each_completed_redemption_on_the_member_page_has_a_cancel_button(clerk_client, member_a, redemption):
    page = clerk_client.get(member_url(member_a, "change/")).content.decode()

    assert f'href="{cancel_url(member_a, redemption)}"' in page


def test_cancelling_one_redemption_from_the_member_page_returns_points_and_stock(clerk_client, member_a, redemption):
    assert available(member_a) == 100

    response = clerk_client.post(cancel_url(member_a, redemption), {})

    assert response.status_code == 302
    assert response["Location"] == member_url(member_a, "change/")
    redemption.refresh_from_db()
    assert redemption.status == RedemptionStatus.CANCELLED
    assert available(member_a) == 300
    assert Reward.objects.get(code="mug").stock == 5
    cancel = LedgerEntry.objects.get(kind=EntryKind.CANCEL)
    assert (cancel.points, cancel.actor) == (200, "staff:clerk-a")
    assert messages_of(response) == [
        f"Cancelled redemption {redemption.pk}: 200 points and 2 × Mug back in stock; balance 300."
    ]
    page = clerk_client.get(member_url(member_a, "change/")).content.decode()
    assert cancel_url(member_a, redemption) not in page


def test_cancelling_a_cancelled_redemption_again_says_so(clerk_client, member_a, redemption):
    clerk_client.post(cancel_url(member_a, redemption), {})

    shown = clerk_client.get(cancel_url(member_a, redemption))
    response = clerk_client.post(cancel_url(member_a, redemption), {})

    assert str(shown.context["form"].notice).startswith("This redemption was already cancelled on ")
    assert response.context["form"].non_field_errors() == ["already_cancelled: The redemption was already cancelled."]
    assert available(member_a) == 300


def test_without_change_redemption_a_clerk_cannot_cancel_from_the_member_page(client, clerk_a, member_a, redemption):
    clerk_a.groups.get().permissions.remove(Permission.objects.get(codename="change_redemption"))
    client.force_login(clerk_a)

    assert client.post(cancel_url(member_a, redemption), {}).status_code == 403
    redemption.refresh_from_db()
    assert redemption.status == RedemptionStatus.COMPLETED


def test_a_redemption_of_another_member_is_not_cancelled_from_her_page(admin_client, member_b, redemption):
    assert admin_client.post(cancel_url(member_b, redemption), {}).status_code == 404
    redemption.refresh_from_db()
    assert redemption.status == RedemptionStatus.COMPLETED
