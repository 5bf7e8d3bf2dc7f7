from datetime import date
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from campaigns.models_coupons import Coupon, CouponStatus, CouponTemplate
from loyalty.models import AuditEntry
from tests.conftest import member_client
from tests.coupons.helpers import issue, template
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

TEMPLATES = "/api/v1/coupon-templates/"
CHECK, REDEEM = "/api/v1/coupons/check/", "/api/v1/coupons/redeem/"
NOON = "2026-03-10 12:00:00+08:00"


def post(client, path, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(path, body, format="json", **headers)


def coupon_of(member, **terms):
    with transaction.atomic():
        return issue(template(**terms), member)[0]


def template_body(**changes):
    return {
        "name": "满100减20",
        "kind": "amount_off",
        "amount_off": "20.00",
        "threshold": "100.00",
        "valid_days": 30,
        "stores": ["A001"],
        "total_quantity": 1000,
        "per_member_limit": 2,
        "stackable_with_points": False,
        **changes,
    }


# --- Templates ---------------------------------------------------------------------------------------------------


def test_a_marketer_creates_a_template_in_the_fixed_shape(marketer_api, store_a):
    response = post(marketer_api, TEMPLATES, template_body())
    assert response.status_code == 201, response.content
    body = response.json()
    assert {key: body[key] for key in template_body()} == template_body()
    assert body["id"] == str(CouponTemplate.objects.get().pk)
    assert (body["percent_off"], body["max_discount"], body["valid_from"], body["valid_until"]) == (None,) * 4
    assert AuditEntry.objects.filter(action="coupon_template.created").count() == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount_off": None}, "amount_off"),
        ({"kind": "percent_off", "amount_off": None}, "percent_off"),
        ({"valid_days": None}, "valid_days"),
        ({"valid_from": "2026-03-01", "valid_until": "2026-03-31"}, "valid_days"),
        ({"valid_days": None, "valid_from": "2026-03-31", "valid_until": "2026-03-01"}, "valid_until"),
        ({"stores": ["NOPE"]}, "stores"),
        ({"kind": "cashback"}, "kind"),
        ({"percent_off": "120"}, "percent_off"),
    ],
)
def test_a_template_without_the_terms_of_its_kind_is_refused(marketer_api, store_a, changes, field):
    response = post(marketer_api, TEMPLATES, template_body(**changes))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert not CouponTemplate.objects.exists()


def test_only_marketers_and_admins_write_templates_and_clerks_read_them(clerk_api, admin_api, store_a):
    assert post(clerk_api, TEMPLATES, template_body()).status_code == 403
    assert post(admin_api, TEMPLATES, template_body()).status_code == 201
    assert [row["name"] for row in clerk_api.get(TEMPLATES).json()["results"]] == ["满100减20"]


def test_the_terms_of_a_template_in_use_stay_but_its_name_and_activity_change(marketer_api, member_a):
    offer = template(total_quantity=10)
    with transaction.atomic():
        issue(offer, member_a)
    url = f"{TEMPLATES}{offer.pk}/"
    refused = marketer_api.patch(url, {"amount_off": "30.00"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "template_in_use")
    assert marketer_api.patch(url, {"name": "spring", "is_active": False}, format="json").status_code == 200
    offer.refresh_from_db()
    assert (offer.name, offer.is_active, offer.amount_off) == ("spring", False, Decimal("20.00"))
    assert marketer_api.delete(url).json()["code"] == "template_in_use"
    assert marketer_api.delete(f"{TEMPLATES}{template().pk}/").status_code == 204


# --- Issuing -----------------------------------------------------------------------------------------------------


def test_issue_answers_each_member_with_her_code_and_a_retry_replays(marketer_api, member_a, member_b):
    offer = template(total_quantity=5)
    body = {"members": [str(member_a.pk), str(member_b.pk)]}
    response = post(marketer_api, f"{TEMPLATES}{offer.pk}/issue/", body, key="issue-1")
    assert response.status_code == 201, response.content
    issued = response.json()["issued"]
    assert [row["member"] for row in issued] == [str(member_a.pk), str(member_b.pk)]
    assert {row["code"] for row in issued} == set(Coupon.objects.values_list("code", flat=True))
    again = post(marketer_api, f"{TEMPLATES}{offer.pk}/issue/", body, key="issue-1")
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (201, response.json(), "true")
    offer.refresh_from_db()
    assert offer.issued_count == 2
    assert set(Coupon.objects.values_list("source", flat=True)) == {"api"}


def test_issue_refuses_beyond_the_quantity_the_limit_or_1000_members(marketer_api, member_a, member_b):
    offer = template(total_quantity=1, per_member_limit=1)
    url = f"{TEMPLATES}{offer.pk}/issue/"
    two = post(marketer_api, url, {"members": [str(member_a.pk), str(member_b.pk)]}, key="k1")
    assert (two.status_code, two.json()["code"], two.json()["left"]) == (409, "out_of_stock", 1)
    assert post(marketer_api, url, {"members": [str(member_a.pk)]}, key="k2").status_code == 201
    offer.total_quantity = 5
    offer.save()
    limit = post(marketer_api, url, {"members": [str(member_a.pk)]}, key="k3")
    assert (limit.status_code, limit.json()["code"], limit.json()["members"]) == (
        409,
        "limit_reached",
        [str(member_a.pk)],
    )
    many = post(marketer_api, url, {"members": [str(n) for n in range(1, 1002)]}, key="k4")
    assert (many.status_code, list(many.json()["errors"])) == (400, ["members"])
    twice = post(marketer_api, url, {"members": [str(member_b.pk)] * 2}, key="k5")
    assert twice.status_code == 400
    unknown = post(marketer_api, url, {"members": ["999999"]}, key="k6")
    assert (unknown.status_code, list(unknown.json()["errors"])) == (400, ["members"])
    assert post(marketer_api, url, {"members": [str(member_b.pk)]}).json()["code"] == "idempotency_key_required"
    assert Coupon.objects.count() == 1


def test_a_clerk_issues_only_to_members_of_her_store(clerk_api, member_a, member_b):
    offer = template()
    url = f"{TEMPLATES}{offer.pk}/issue/"
    assert post(clerk_api, url, {"members": [str(member_b.pk)]}, key="k1").status_code == 404
    response = post(clerk_api, url, {"members": [str(member_a.pk)]}, key="k2")
    assert response.status_code == 201
    assert Coupon.objects.get().source == "clerk"


# --- Check and redeem --------------------------------------------------------------------------------------------


@time_machine.travel(NOON, tick=False)
def test_check_answers_valid_and_the_discount_or_the_reason(pos_a, member_a, member_b):
    coupon = coupon_of(member_a, stores=["A001"])
    ok = post(pos_a, CHECK, {"code": coupon.code.lower(), "amount": "150.00"})
    assert ok.status_code == 200
    assert {key: ok.json()[key] for key in ("valid", "discount", "code", "member")} == {
        "valid": True,
        "discount": "20.00",
        "code": coupon.code,
        "member": str(member_a.pk),
    }
    assert "reason" not in ok.json()
    low = post(pos_a, CHECK, {"code": coupon.code, "amount": "99.00"}).json()
    assert (low["valid"], low["reason"], low["discount"]) == (False, "below_threshold", "0.00")
    other = post(pos_a, CHECK, {"code": coupon.code, "amount": "150.00", "member": str(member_b.pk)}).json()
    assert other["reason"] == "not_owner"


def test_a_mistyped_code_is_refused_before_any_lookup(pos_a, member_a, django_assert_max_num_queries):
    code = coupon_of(member_a).code
    # Two neighbours swapped; the first pair that differs (a random code may repeat a character: swapping two equal
    # ones is no typo at all).
    i = next(i for i in range(len(code) - 1) if code[i] != code[i + 1])
    typo = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
    with django_assert_max_num_queries(6):  # authentication and the store: no coupon query
        response = post(pos_a, CHECK, {"code": typo, "amount": "150.00"})
    assert (response.status_code, response.json()["code"], list(response.json()["errors"])) == (
        400,
        "invalid",
        ["code"],
    )
    redeem = post(pos_a, REDEEM, {"code": typo, "order_no": "O1", "amount": "150.00"}, key="k")
    assert (redeem.status_code, redeem.json()["code"]) == (400, "invalid")


def test_a_well_formed_unknown_code_is_not_found(pos_a):
    from campaigns.coupon_codes import new_code

    assert post(pos_a, CHECK, {"code": new_code(), "amount": "1.00"}).status_code == 404


def test_redeem_answers_201_once_then_409_coupon_used(pos_a, member_a):
    coupon = coupon_of(member_a)
    body = {"code": coupon.code, "order_no": "A1001", "amount": "150.00"}
    response = post(pos_a, REDEEM, body, key="r1")
    assert response.status_code == 201, response.content
    assert {key: response.json()[key] for key in ("code", "order_no", "discount", "status", "store")} == {
        "code": coupon.code,
        "order_no": "A1001",
        "discount": "20.00",
        "status": "used",
        "store": "A001",
    }
    assert post(pos_a, REDEEM, body, key="r1").json() == response.json()
    again = post(pos_a, REDEEM, {**body, "order_no": "A1002"}, key="r2")
    assert (again.status_code, again.json()["code"]) == (409, "coupon_used")


def test_redeem_refuses_expired_and_inapplicable_coupons_with_the_reason(pos_a, member_a):
    with time_machine.travel("2026-03-01 12:00:00+08:00", tick=False):
        old = coupon_of(member_a, valid_days=3)
    expired = post(pos_a, REDEEM, {"code": old.code, "order_no": "O1", "amount": "150.00"}, key="r1")
    assert (expired.status_code, expired.json()["code"]) == (409, "coupon_expired")
    elsewhere = coupon_of(member_a, stores=["B001"])
    refused = post(pos_a, REDEEM, {"code": elsewhere.code, "order_no": "O2", "amount": "150.00"}, key="r2")
    assert (refused.status_code, refused.json()["code"], refused.json()["reason"]) == (
        409,
        "coupon_not_applicable",
        "wrong_store",
    )
    assert set(Coupon.objects.values_list("status", flat=True)) == {"unused"}


def test_a_clerk_undoes_a_use_at_her_store_and_no_other_clerk_can(clerk_api, clerk_b_api, pos_a, member_a):
    coupon = coupon_of(member_a)
    post(pos_a, REDEEM, {"code": coupon.code, "order_no": "O1", "amount": "150.00"}, key="r1")
    url = f"/api/v1/coupons/{coupon.code}/undo/"
    assert clerk_b_api.post(url).status_code == 404
    assert pos_a.post(url).status_code == 403
    response = clerk_api.post(url)
    assert (response.status_code, response.json()["status"], response.json()["order_no"]) == (200, "unused", None)
    assert clerk_api.post(url).json()["code"] == "coupon_not_used"
    assert clerk_api.post("/api/v1/coupons/NOTACODE1234/undo/").json()["code"] == "invalid"


def test_refunding_the_order_in_full_returns_the_coupon(pos_a, member_a):
    coupon = coupon_of(member_a)
    post(pos_a, REDEEM, {"code": coupon.code, "order_no": "A1001", "amount": "150.00"}, key="r1")
    purchase = post(pos_a, "/api/v1/purchases/", {"member": str(member_a.pk), "order_no": "A1001", "amount": "130.00"})
    assert purchase.status_code == 201, purchase.content
    url = f"/api/v1/purchases/{purchase.json()['id']}/refunds/"
    part = post(pos_a, url, {"refund_no": "R1", "amount": "30.00"})
    assert "coupons_returned" not in part.json()
    coupon.refresh_from_db()
    assert coupon.status == CouponStatus.USED
    rest = post(pos_a, url, {"refund_no": "R2", "amount": "100.00"})
    assert rest.json()["coupons_returned"] == [coupon.code]
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no, coupon.used_at, coupon.discount) == ("unused", "", None, None)


# --- Wallets -----------------------------------------------------------------------------------------------------


def test_the_wallets_list_coupons_by_status_as_shown(clerk_api, clerk_b_api, member_a, pos_a):
    with time_machine.travel("2026-03-01 12:00:00+08:00", tick=False):
        lapsed = coupon_of(member_a, valid_days=3)
    used, fresh = coupon_of(member_a), coupon_of(member_a)
    post(pos_a, REDEEM, {"code": used.code, "order_no": "O1", "amount": "150.00"}, key="r1")
    coupon_of(MemberFactory(home_store=member_a.home_store))  # another member's

    url = f"/api/v1/members/{member_a.pk}/coupons/"
    everything = clerk_api.get(url).json()["results"]
    assert [(row["code"], row["status"]) for row in everything] == [
        (fresh.code, "unused"),
        (used.code, "used"),
        (lapsed.code, "expired"),
    ]
    assert [row["code"] for row in clerk_api.get(url, {"status": "unused"}).json()["results"]] == [fresh.code]
    assert [row["code"] for row in clerk_api.get(url, {"status": "expired"}).json()["results"]] == [lapsed.code]
    assert clerk_b_api.get(url).status_code == 404

    mine = member_client(member_a).get("/api/v1/me/coupons/", {"status": "used"}).json()["results"]
    assert [(row["code"], row["order_no"], row["discount"]) for row in mine] == [(used.code, "O1", "20.00")]
    assert member_client(member_a).get(url).status_code == 403


def test_fixed_dates_come_from_the_template(member_a):
    coupon = coupon_of(member_a, valid_from=date(2026, 1, 1), valid_until=date(2099, 1, 31))
    assert (coupon.valid_from, coupon.valid_until) == (date(2026, 1, 1), date(2099, 1, 31))


# --- Stacking with points as cash ----------------------------------------------------------------------------------


def test_a_coupon_not_stackable_with_points_is_refused_when_the_order_uses_points(pos_a, member_a):
    alone = coupon_of(member_a, stackable_with_points=False)
    stacks = coupon_of(member_a)  # stackable_with_points: True by default
    body = {"code": alone.code, "amount": "150.00", "points_used": 500}

    check = post(pos_a, CHECK, body).json()
    assert (check["valid"], check["reason"], check["discount"]) == (False, "not_stackable_with_points", "0.00")
    assert post(pos_a, CHECK, {**body, "points_used": 0}).json()["valid"] is True
    assert post(pos_a, CHECK, {**body, "code": stacks.code}).json()["valid"] is True

    refused = post(pos_a, REDEEM, {**body, "order_no": "P1"}, key="s1")
    assert (refused.status_code, refused.json()["code"], refused.json()["reason"]) == (
        409,
        "coupon_not_applicable",
        "not_stackable_with_points",
    )
    alone.refresh_from_db()
    assert alone.status == CouponStatus.UNUSED
    used = post(pos_a, REDEEM, {**body, "code": stacks.code, "order_no": "P1"}, key="s2")
    assert (used.status_code, used.json()["discount"]) == (201, "20.00")


def test_points_already_deducted_on_the_order_refuse_a_coupon_not_stackable_with_them(pos_a, member_a):
    from tests.points.test_api_contract import give_points

    give_points(member_a, 1000)
    alone = coupon_of(member_a, stackable_with_points=False)
    deducted = post(
        pos_a,
        f"/api/v1/members/{member_a.pk}/points/deductions/",
        {"order_no": "P2", "points": 1000, "amount": "150.00"},
        key="d1",
    )
    assert deducted.status_code == 201, deducted.content

    refused = post(pos_a, REDEEM, {"code": alone.code, "order_no": "P2", "amount": "150.00"}, key="s1")
    assert (refused.status_code, refused.json()["reason"]) == (409, "not_stackable_with_points")
    other_order = post(pos_a, REDEEM, {"code": alone.code, "order_no": "P3", "amount": "150.00"}, key="s2")
    assert (other_order.status_code, other_order.json()["order_no"]) == (201, "P3")


# --- Refunds ---------------------------------------------------------------------------------------------------------


def test_a_partial_refund_keeps_the_coupon_used_even_below_the_threshold(pos_a, member_a):
    """README "Coupons": the coupon comes back only when the order is refunded in full (SPEC §10 "refunding the
    order"); a partial refund leaving less than the threshold does not return it (the member kept the discount on
    what she kept)."""
    coupon = coupon_of(member_a)  # 20 off from 100
    post(pos_a, REDEEM, {"code": coupon.code, "order_no": "A2001", "amount": "150.00"}, key="r1")
    purchase = post(pos_a, "/api/v1/purchases/", {"member": str(member_a.pk), "order_no": "A2001", "amount": "130.00"})
    url = f"/api/v1/purchases/{purchase.json()['id']}/refunds/"

    part = post(pos_a, url, {"refund_no": "R1", "amount": "80.00"})  # 50.00 left, under the 100.00 threshold

    assert part.status_code == 201, part.content
    assert "coupons_returned" not in part.json()
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no, coupon.discount) == ("used", "A2001", Decimal("20.00"))
    rest = post(pos_a, url, {"refund_no": "R2", "amount": "50.00"})
    assert rest.json()["coupons_returned"] == [coupon.code]


def test_a_full_refund_after_the_coupons_last_day_leaves_it_expired(pos_a, member_a):
    with time_machine.travel(NOON, tick=False):
        coupon = coupon_of(member_a, valid_days=1)
        post(pos_a, REDEEM, {"code": coupon.code, "order_no": "A3001", "amount": "150.00"}, key="r1")
        body = {"member": str(member_a.pk), "order_no": "A3001", "amount": "130.00"}
        purchase = post(pos_a, "/api/v1/purchases/", body)
    with time_machine.travel("2026-03-12 12:00:00+08:00", tick=False):
        refund = post(
            pos_a, f"/api/v1/purchases/{purchase.json()['id']}/refunds/", {"refund_no": "R1", "amount": "130.00"}
        )

    assert refund.status_code == 201, refund.content
    assert "coupons_returned" not in refund.json()
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no, coupon.used_at) == ("expired", "", None)
