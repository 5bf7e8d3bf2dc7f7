"""The REST contract of the points endpoints (API.md "Purchases", "Engagement events", "Points", "Rewards and
redemptions", "Member self-service"): exact status codes, error codes and bodies; bad input is a 400 naming the
field and writes nothing; who may see and do what; and the OpenAPI schema that describes it all.

Every test runs at a fixed instant (noon in the business time zone, the clock does not tick), so "the same day",
pending periods and validity windows are deterministic.
"""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from django.conf import settings
from django.core.management import call_command

from members.models import Member, Purchase, Refund
from points.models import Deduction, Event, IdempotencyRecord, LedgerEntry, PointsLot, Redemption, Reward
from tests.conftest import member_client, staff_client
from tests.factories import MemberFactory, StaffUserFactory

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
MISSING = object()
ON_POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")

PURCHASES = "/api/v1/purchases/"
PREVIEW = "/api/v1/purchases/preview/"
EVENTS = "/api/v1/events/"
REWARDS = "/api/v1/rewards/"
REDEMPTIONS = "/api/v1/redemptions/"


@pytest.fixture(autouse=True)
def fixed_clock():
    with time_machine.travel(NOW, tick=False):
        yield


# --- helpers ----------------------------------------------------------------------------------------------------


def points_url(member, suffix=""):
    return f"/api/v1/members/{member.pk}/points/{suffix}"


def counts():
    """Rows of everything a points write could leave behind."""
    return {
        model.__name__: model.objects.count()
        for model in (Purchase, LedgerEntry, PointsLot, IdempotencyRecord, Redemption, Event, Deduction, Refund)
    }


def with_key(key="key-1"):
    return {"HTTP_IDEMPOTENCY_KEY": key}


def post(client, path, body, key=None):
    headers = with_key(key) if key else {}
    return client.post(path, body, format="json", **headers)


def post_raw(client, path, text, key=None):
    headers = with_key(key) if key else {}
    return client.post(path, data=text, content_type="application/json", **headers)


def assert_invalid(response, field):
    assert response.status_code == 400, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == "invalid", body
    assert isinstance(body["detail"], str) and body["detail"]
    # A list-level error of a nested field is reported under it, e.g. "lines.non_field_errors".
    named = [key for key in body["errors"] if key == field or key.startswith(f"{field}.")]
    assert named, body
    assert all(isinstance(body["errors"][key], list) and body["errors"][key] for key in named), body


def assert_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def purchase_body(who, /, **changes):
    body = {"member": str(who.pk), "order_no": "A1001", "amount": "129.90"}
    for field, value in changes.items():
        if value is MISSING:
            body.pop(field, None)
        else:
            body[field] = value
    return body


def give_points(member, points, key=None):
    """Available points for the member, by an admin adjustment (admins have no limit)."""
    admin = staff_client(StaffUserFactory(role="admin"))
    response = post(
        admin,
        points_url(member, "adjustments/"),
        {"points": points, "reason": "setup"},
        key=key or f"setup-{member.pk}-{points}-{LedgerEntry.objects.count()}",
    )
    assert response.status_code == 201, response.content
    return response.json()


def make_reward(**fields):
    values = {"code": "mug", "name": "Mug", "kind": "coupon", "cost_points": 100}
    values.update(fields)
    return Reward.objects.create(**values)


@pytest.fixture
def purchase_a(pos_a, member_a):
    response = post(pos_a, PURCHASES, purchase_body(member_a))
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def reward(db):
    return make_reward()


# --- 1. Bad input: 400 naming the field, never a 500, nothing written ------------------------------------------

PURCHASE_BAD_INPUT = [
    ("amount", -5),
    ("amount", "-1.00"),
    ("amount", 0),
    ("amount", "0.00"),
    ("amount", "0.001"),
    ("amount", "1e400"),
    ("amount", 2**53 + 1),
    ("amount", str(2**53 + 1)),
    ("amount", "abc"),
    ("amount", "NaN"),
    ("amount", "-Infinity"),
    ("amount", None),
    ("amount", []),
    ("amount", {}),
    ("amount", MISSING),
    ("points_used", 1.5),
    ("points_used", -1),
    ("points_used", "10"),
    ("points_used", True),
    ("points_used", 2**63),
    ("member", "999999"),
    ("member", "abc"),
    ("member", MISSING),
    ("occurred_at", "yesterday"),
    ("occurred_at", "2026-13-01T00:00:00Z"),
    ("occurred_at", 12345),
    ("lines.0.quantity", [{"sku": "X1", "quantity": -1, "unit_price": "10.00"}]),
    ("lines.0.sku", [{"quantity": 1, "unit_price": "10.00"}]),
    ("lines.0.unit_price", [{"sku": "X1", "quantity": 1, "unit_price": "x"}]),
    ("lines", "not-a-list"),
    ("order_no", ""),
    ("order_no", "A" * 200),
    ("order_no", "A 1001"),
    ("order_no", MISSING),
    ("channel", "teleport"),
    ("store", "NOPE"),
]


@pytest.mark.parametrize("path", [PURCHASES, PREVIEW])
@pytest.mark.parametrize(
    ("field", "value"), PURCHASE_BAD_INPUT, ids=[f"{field}={value!r}"[:60] for field, value in PURCHASE_BAD_INPUT]
)
def test_purchase_bad_input_is_400_naming_the_field_and_writes_nothing(pos_a, member_a, path, field, value):
    assert not Member.objects.filter(pk=999999).exists()
    top = field.split(".")[0]
    before = counts()
    response = post(pos_a, path, purchase_body(member_a, **{top: value}))
    assert_invalid(response, field)
    assert counts() == before


@pytest.mark.parametrize("raw", ["1e400", "-1e400", str(2**53 + 1), "1.005"])
def test_purchase_amount_as_raw_json_number_is_400(pos_a, member_a, raw):
    text = json.dumps(purchase_body(member_a, amount="__RAW__")).replace('"__RAW__"', raw)
    before = counts()
    assert_invalid(post_raw(pos_a, PURCHASES, text), "amount")
    assert counts() == before


OUT_OF_RANGE_TIMES = [
    "9999-12-31T12:00:00+08:00",
    "9999-12-25T00:00:00Z",
    "1999-12-31T23:59:59+08:00",
    "0001-01-01T00:00:00+08:00",
    (NOW + timedelta(days=2)).isoformat(),
]


@pytest.mark.parametrize("path", [PURCHASES, PREVIEW])
@pytest.mark.parametrize("occurred_at", OUT_OF_RANGE_TIMES)
def test_purchase_occurred_at_out_of_range_is_400_not_500(pos_a, member_a, path, occurred_at):
    before = counts()
    response = post(pos_a, path, purchase_body(member_a, occurred_at=occurred_at))
    assert_invalid(response, "occurred_at")
    assert counts() == before


def test_purchase_occurred_at_in_the_past_is_accepted(pos_a, member_a):
    response = post(pos_a, PURCHASES, purchase_body(member_a, occurred_at="2026-03-01T10:00:00+08:00"))
    assert response.status_code == 201, response.content
    # Pending 7 days from when it happened: already over, so the points are available at once.
    assert response.json()["points"]["status"] == "available"
    assert response.json()["points"]["available_at"] == "2026-03-08T10:00:00+08:00"


@pytest.mark.parametrize("occurred_at", OUT_OF_RANGE_TIMES)
@pytest.mark.parametrize("event_type", ["sign_in", "share"])
def test_event_occurred_at_out_of_range_is_400_not_500(pos_a, member_a, event_type, occurred_at):
    before = counts()
    response = post(
        pos_a, EVENTS, {"member": str(member_a.pk), "type": event_type, "occurred_at": occurred_at}, key="eot"
    )
    assert_invalid(response, "occurred_at")
    assert counts() == before


@pytest.mark.parametrize("occurred_at", OUT_OF_RANGE_TIMES[:2])
def test_refund_occurred_at_out_of_range_is_400(pos_a, purchase_a, occurred_at):
    before = counts()
    response = post(
        pos_a,
        f"{PURCHASES}{purchase_a['id']}/refunds/",
        {"amount": "1.00", "refund_no": "R1", "occurred_at": occurred_at},
    )
    assert_invalid(response, "occurred_at")
    assert counts() == before


ID_FIELD_TARGETS = [
    "purchases.member",
    "preview.member",
    "events.member",
    "redemptions.member",
    "redemptions.reward",
    "me-redemptions.reward",
]


@pytest.mark.parametrize("digits", ["\u00b2", "1\u00b3"])  # superscript two / three: str.isdigit() is True
@pytest.mark.parametrize("target", ID_FIELD_TARGETS)
def test_id_fields_with_non_ascii_digits_are_400(admin_api, pos_a, member_a, reward, target, digits):
    endpoint, field = target.split(".")
    give_points(member_a, 1000)
    client, path, body = {
        "purchases": (pos_a, PURCHASES, purchase_body(member_a)),
        "preview": (pos_a, PREVIEW, purchase_body(member_a)),
        "events": (pos_a, EVENTS, {"member": str(member_a.pk), "type": "share"}),
        "redemptions": (admin_api, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(reward.pk)}),
        "me-redemptions": (member_client(member_a), "/api/v1/me/redemptions/", {"reward": str(reward.pk)}),
    }[endpoint]
    body[field] = digits
    before = counts()
    assert_invalid(post(client, path, body, key="ids"), field)
    assert counts() == before


EVENT_BAD_INPUT = [
    ("type", ""),
    ("type", "no-such-type"),
    ("type", MISSING),
    ("member", "999999"),
    ("member", MISSING),
    ("payload", "not-an-object"),
]


@pytest.mark.parametrize(("field", "value"), EVENT_BAD_INPUT, ids=[f"{f}={v!r}" for f, v in EVENT_BAD_INPUT])
def test_event_bad_input_is_400_naming_the_field_and_writes_nothing(pos_a, member_a, field, value):
    body = {"member": str(member_a.pk), "type": "share"}
    if value is MISSING:
        body.pop(field)
    else:
        body[field] = value
    before = counts()
    assert_invalid(post(pos_a, EVENTS, body, key="ev-bad"), field)
    assert counts() == before


def test_event_without_idempotency_key_is_400_idempotency_key_required(pos_a, member_a):
    before = counts()
    response = post(pos_a, EVENTS, {"member": str(member_a.pk), "type": "sign_in"})
    body = assert_error(response, 400, "idempotency_key_required")
    assert "errors" not in body
    assert counts() == before


def test_event_with_an_overlong_idempotency_key_is_400(pos_a, member_a):
    before = counts()
    response = post(pos_a, EVENTS, {"member": str(member_a.pk), "type": "sign_in"}, key="k" * 201)
    assert_invalid(response, "Idempotency-Key")
    assert counts() == before


ADJUSTMENT_BAD_INPUT = [
    ("points", 0),
    ("points", 1.5),
    ("points", "5"),
    ("points", True),
    ("points", 10**12),
    ("points", -(10**12)),
    ("points", MISSING),
    ("reason", MISSING),
    ("reason", ""),
    ("reason", "x" * 201),
]


@pytest.mark.parametrize(
    ("field", "value"), ADJUSTMENT_BAD_INPUT, ids=[f"{f}={v!r}"[:40] for f, v in ADJUSTMENT_BAD_INPUT]
)
def test_adjustment_bad_input_is_400_and_writes_nothing(admin_api, member_a, field, value):
    body = {"points": 10, "reason": "goodwill"}
    if value is MISSING:
        body.pop(field)
    else:
        body[field] = value
    before = counts()
    assert_invalid(post(admin_api, points_url(member_a, "adjustments/"), body, key="adj-bad"), field)
    assert counts() == before


def test_adjustment_without_idempotency_key_is_400(admin_api, member_a):
    before = counts()
    response = post(admin_api, points_url(member_a, "adjustments/"), {"points": 10, "reason": "x"})
    assert_error(response, 400, "idempotency_key_required")
    assert counts() == before


DEDUCTION_BAD_INPUT = [
    ("points", 0),
    ("points", -5),
    ("points", 2.5),
    ("points", "100"),
    ("order_no", MISSING),
    ("order_no", "has space"),
    ("amount", "-1.00"),
    ("amount", "abc"),
]


@pytest.mark.parametrize(("field", "value"), DEDUCTION_BAD_INPUT, ids=[f"{f}={v!r}" for f, v in DEDUCTION_BAD_INPUT])
def test_deduction_bad_input_is_400_and_writes_nothing(admin_api, member_a, field, value):
    give_points(member_a, 1000)
    body = {"order_no": "D-1", "points": 100, "amount": "20.00"}
    if value is MISSING:
        body.pop(field)
    else:
        body[field] = value
    before = counts()
    assert_invalid(post(admin_api, points_url(member_a, "deductions/"), body, key="ded-bad"), field)
    assert counts() == before


REDEMPTION_BAD_INPUT = [
    ("reward", "999999"),
    ("reward", "abc"),
    ("reward", MISSING),
    ("quantity", 0),
    ("quantity", 1.5),
    ("quantity", "1"),
    ("member", "999999"),
]


@pytest.mark.parametrize(("field", "value"), REDEMPTION_BAD_INPUT, ids=[f"{f}={v!r}" for f, v in REDEMPTION_BAD_INPUT])
def test_redemption_bad_input_is_400_and_writes_nothing(admin_api, member_a, reward, field, value):
    give_points(member_a, 1000)
    body = {"member": str(member_a.pk), "reward": str(reward.pk), "quantity": 1}
    if value is MISSING:
        body.pop(field)
    else:
        body[field] = value
    before = counts()
    assert_invalid(post(admin_api, REDEMPTIONS, body, key="red-bad"), field)
    assert counts() == before
    assert Reward.objects.get(pk=reward.pk).stock is None


REFUND_BAD_INPUT = [
    ("amount", -1),
    ("amount", "abc"),
    ("amount", "0.00"),
    ("amount", MISSING),
    ("refund_no", MISSING),
    ("refund_no", ""),
    ("lines.0.quantity", [{"sku": "X1", "quantity": 0}]),
]


@pytest.mark.parametrize(("field", "value"), REFUND_BAD_INPUT, ids=[f"{f}={v!r}" for f, v in REFUND_BAD_INPUT])
def test_refund_bad_input_is_400_and_writes_nothing(pos_a, purchase_a, field, value):
    body = {"amount": "10.00", "refund_no": "R1"}
    top = field.split(".")[0]
    if value is MISSING:
        body.pop(top)
    else:
        body[top] = value
    before = counts()
    assert_invalid(post(pos_a, f"{PURCHASES}{purchase_a['id']}/refunds/", body), field)
    assert counts() == before


def test_refund_of_a_sku_not_on_the_order_is_400_and_writes_nothing(pos_a, purchase_a):
    before = counts()
    response = post(
        pos_a,
        f"{PURCHASES}{purchase_a['id']}/refunds/",
        {"amount": "10.00", "refund_no": "R1", "lines": [{"sku": "NOT-BOUGHT", "quantity": 1}]},
    )
    assert_invalid(response, "lines.0.sku")
    assert counts() == before


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("kind=bogus", "kind"),
        ("created_after=garbage", "created_after"),
        ("created_before=2026-02-30T00:00:00Z", "created_before"),
        ("page_size=501", "page_size"),
        ("page_size=0", "page_size"),
        ("cursor=garbage", "cursor"),
    ],
)
def test_ledger_bad_filters_are_400(admin_api, member_a, query, field):
    assert_invalid(admin_api.get(points_url(member_a, f"ledger/?{query}")), field)


def test_my_ledger_bad_filter_is_400(member_a):
    assert_invalid(member_client(member_a).get("/api/v1/me/points/ledger/?kind=bogus"), "kind")


MALFORMED = '{"member": "1", "amount": '


@pytest.mark.parametrize(
    "target",
    [
        "purchases",
        "preview",
        "refunds",
        "events",
        "adjustments",
        "deductions",
        "rewards",
        "redemptions",
        "earning-rules",
        "me-sign-in",
        "me-redemptions",
    ],
)
def test_malformed_json_is_400_parse_error_and_writes_nothing(admin_api, pos_a, member_a, purchase_a, target):
    paths = {
        "purchases": (pos_a, PURCHASES),
        "preview": (pos_a, PREVIEW),
        "refunds": (pos_a, f"{PURCHASES}{purchase_a['id']}/refunds/"),
        "events": (pos_a, EVENTS),
        "adjustments": (admin_api, points_url(member_a, "adjustments/")),
        "deductions": (admin_api, points_url(member_a, "deductions/")),
        "rewards": (admin_api, REWARDS),
        "redemptions": (admin_api, REDEMPTIONS),
        "earning-rules": (admin_api, "/api/v1/earning-rules/"),
        "me-sign-in": (member_client(member_a), "/api/v1/me/sign-in/"),
        "me-redemptions": (member_client(member_a), "/api/v1/me/redemptions/"),
    }
    client, path = paths[target]
    before = counts()
    rewards_before = Reward.objects.count()
    response = post_raw(client, path, MALFORMED, key="malformed")
    body = assert_error(response, 400, "parse_error")
    assert "errors" not in body
    assert counts() == before
    assert Reward.objects.count() == rewards_before


# --- 2. Contract shapes: purchases, preview, refunds ------------------------------------------------------------

PURCHASE_FIELDS = {"id", "order_no", "member", "amount", "points", "growth_awarded", "tier_change"}


def test_purchase_201_has_the_contract_fields_and_default_rule_points(pos_a, member_a):
    response = post(pos_a, PURCHASES, purchase_body(member_a))
    assert response.status_code == 201, response.content
    assert "Idempotent-Replayed" not in response
    body = response.json()
    # API.md's fields, plus `points_used` (an extension API.md allows: extra fields are the service's to design).
    assert set(body) == PURCHASE_FIELDS | {"points_used"}
    purchase = Purchase.objects.get()
    assert body == {
        "id": str(purchase.pk),
        "order_no": "A1001",
        "member": str(member_a.pk),
        "amount": "129.90",
        "points": {
            "awarded": 129,
            "status": "pending",
            "available_at": "2026-03-17T12:00:00+08:00",
            "breakdown": [{"source": "base", "points": 129}],
        },
        "points_used": None,
        "growth_awarded": body["growth_awarded"],
        "tier_change": None,
    }
    assert isinstance(body["growth_awarded"], int)
    assert set(body["points"]) == {"awarded", "status", "available_at", "breakdown"}
    summary = pos_a.get(points_url(member_a)).json()
    assert (summary["available"], summary["pending"], summary["lifetime_earned"]) == (0, 129, 129)


def test_purchase_replay_is_200_with_the_original_result(pos_a, member_a):
    first = post(pos_a, PURCHASES, purchase_body(member_a))
    assert first.status_code == 201
    before = counts()
    # The same body, keys in another order.
    replay = post(pos_a, PURCHASES, dict(reversed(list(purchase_body(member_a).items()))))
    assert replay.status_code == 200, replay.content
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert counts() == before


def test_purchase_same_order_no_other_body_is_409_idempotency_conflict(pos_a, member_a):
    assert post(pos_a, PURCHASES, purchase_body(member_a)).status_code == 201
    before = counts()
    response = post(pos_a, PURCHASES, purchase_body(member_a, amount="99.00"))
    assert_error(response, 409, "idempotency_conflict")
    assert counts() == before


def test_purchase_same_order_no_from_another_client_app_is_another_order(pos_a, app_client, member_a):
    first = post(pos_a, PURCHASES, purchase_body(member_a))
    second = post(app_client, PURCHASES, purchase_body(member_a))
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert Purchase.objects.count() == 2
    assert pos_a.get(points_url(member_a)).json()["pending"] == 258


def test_purchase_for_a_frozen_member_is_409_member_frozen(admin_api, pos_a, member_a):
    assert post(admin_api, f"/api/v1/members/{member_a.pk}/freeze/", {"reason": "x"}).status_code == 200
    before = counts()
    assert_error(post(pos_a, PURCHASES, purchase_body(member_a)), 409, "member_frozen")
    assert counts() == before


def test_purchase_with_more_points_used_than_available_is_409_and_writes_nothing(pos_a, member_a):
    give_points(member_a, 100)
    before = counts()
    assert_error(post(pos_a, PURCHASES, purchase_body(member_a, points_used=200)), 409, "insufficient_points")
    assert counts() == before


def test_purchase_with_points_used_over_the_share_is_409_deduction_limit(pos_a, member_a):
    give_points(member_a, 10000)
    before = counts()
    response = post(pos_a, PURCHASES, purchase_body(member_a, amount="20.00", points_used=1001))
    assert_error(response, 409, "deduction_limit")
    assert counts() == before


def test_purchase_with_points_used_earns_on_the_paid_amount(pos_a, member_a):
    give_points(member_a, 1000)
    response = post(pos_a, PURCHASES, purchase_body(member_a, amount="20.00", points_used=1000))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["points_used"] == {"points": 1000, "amount": "10.00"}
    assert body["points"]["awarded"] == 10
    summary = pos_a.get(points_url(member_a)).json()
    assert (summary["available"], summary["pending"], summary["lifetime_spent"]) == (0, 10, 1000)


def test_preview_is_200_and_writes_nothing(pos_a, member_a):
    before = counts()
    response = post(pos_a, PREVIEW, purchase_body(member_a))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["points"] == {
        "awarded": 129,
        "status": "pending",
        "available_at": "2026-03-17T12:00:00+08:00",
        "breakdown": [{"source": "base", "points": 129}],
    }
    assert isinstance(body["growth_awarded"], int)
    assert counts() == before
    # The previewed order can still be recorded afterwards.
    assert post(pos_a, PURCHASES, purchase_body(member_a)).status_code == 201


def test_refund_over_the_remaining_amount_is_409_and_replay_is_200(pos_a, member_a, purchase_a):
    url = f"{PURCHASES}{purchase_a['id']}/refunds/"
    before = counts()
    body = assert_error(post(pos_a, url, {"amount": "129.91", "refund_no": "R0"}), 409, "refund_exceeds_purchase")
    assert "errors" not in body
    assert counts() == before

    first = post(pos_a, url, {"amount": "29.90", "refund_no": "R1"})
    assert first.status_code == 201, first.content
    refund = first.json()
    assert {"points_reversed", "growth_reversed"} <= set(refund)
    assert refund["points_reversed"] == 29  # floor(129 * 29.90 / 129.90)
    assert refund["amount"] == "29.90"
    after_first = counts()

    replay = post(pos_a, url, {"amount": "29.90", "refund_no": "R1"})
    assert replay.status_code == 200, replay.content
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == refund
    assert counts() == after_first

    assert_error(post(pos_a, url, {"amount": "50.00", "refund_no": "R1"}), 409, "idempotency_conflict")
    assert_error(post(pos_a, url, {"amount": "100.01", "refund_no": "R2"}), 409, "refund_exceeds_purchase")
    rest = post(pos_a, url, {"amount": "100.00", "refund_no": "R3"})
    assert rest.status_code == 201
    assert rest.json()["points_reversed"] == 100
    assert pos_a.get(points_url(member_a)).json()["pending"] == 0
    assert counts()["Refund"] == 2


def test_refund_of_an_unknown_purchase_is_404(pos_a):
    assert_error(post(pos_a, f"{PURCHASES}999999/refunds/", {"amount": "1.00", "refund_no": "R1"}), 404, "not_found")


def test_refund_of_another_client_apps_purchase_is_404(pos_a, app_client, purchase_a):
    response = post(app_client, f"{PURCHASES}{purchase_a['id']}/refunds/", {"amount": "1.00", "refund_no": "R1"})
    assert_error(response, 404, "not_found")


# --- 2. Contract shapes: engagement events ----------------------------------------------------------------------

EVENT_FIELDS = {"id", "type", "points", "growth_awarded", "capped", "tier_change"}


def event(client, member, event_type, key, **extra):
    return post(client, EVENTS, {"member": str(member.pk), "type": event_type, **extra}, key=key)


def test_sign_in_event_201_then_409_already_signed_in(pos_a, member_a):
    first = event(pos_a, member_a, "sign_in", key="s1")
    assert first.status_code == 201, first.content
    body = first.json()
    assert set(body) == EVENT_FIELDS
    assert body["type"] == "sign_in"
    assert body["points"] == {"awarded": 5, "breakdown": [{"source": "base", "points": 5}]}
    assert body["capped"] is False
    assert body["tier_change"] is None

    replay = event(pos_a, member_a, "sign_in", key="s1")
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == body

    before = counts()
    assert_error(event(pos_a, member_a, "sign_in", key="s2"), 409, "already_signed_in")
    assert counts() == before
    assert pos_a.get(points_url(member_a)).json()["available"] == 5


def test_event_same_key_other_body_is_409_idempotency_conflict(pos_a, member_a, member_b):
    assert event(pos_a, member_a, "share", key="k").status_code == 201
    assert_error(event(pos_a, member_b, "share", key="k"), 409, "idempotency_conflict")


def test_review_of_another_members_order_is_409_order_not_eligible(admin_api, pos_a, member_a, member_b):
    response = post(admin_api, PURCHASES, purchase_body(member_b, order_no="B-77", store="B001"))
    assert response.status_code == 201, response.content
    before = counts()
    assert_error(event(pos_a, member_a, "review", key="r1", order_no="B-77"), 409, "order_not_eligible")
    assert_error(event(pos_a, member_a, "review", key="r2", order_no="NO-SUCH"), 409, "order_not_eligible")
    assert counts() == before


def test_review_of_her_own_order_201_then_409_already_reviewed(pos_a, member_a, purchase_a):
    first = event(pos_a, member_a, "review", key="r1", order_no="A1001")
    assert first.status_code == 201, first.content
    assert first.json()["points"]["awarded"] == 10
    assert_error(event(pos_a, member_a, "review", key="r2", order_no="A1001"), 409, "already_reviewed")


def test_fourth_share_of_a_day_is_capped_with_zero_points(pos_a, member_a):
    for n in range(3):
        response = event(pos_a, member_a, "share", key=f"share-{n}")
        assert response.status_code == 201, response.content
        assert (response.json()["points"]["awarded"], response.json()["capped"]) == (2, False)
    fourth = event(pos_a, member_a, "share", key="share-3")
    assert fourth.status_code == 201, fourth.content
    body = fourth.json()
    assert body["capped"] is True
    assert body["points"]["awarded"] == 0
    assert pos_a.get(points_url(member_a)).json()["available"] == 6


def test_event_for_a_frozen_member_is_409_member_frozen(admin_api, pos_a, member_a):
    assert post(admin_api, f"/api/v1/members/{member_a.pk}/freeze/", {"reason": "x"}).status_code == 200
    before = counts()
    assert_error(event(pos_a, member_a, "sign_in", key="s1"), 409, "member_frozen")
    assert counts() == before


# --- 2. Contract shapes: balances, ledger, adjustments, deductions ----------------------------------------------

SUMMARY_FIELDS = {"available", "pending", "lifetime_earned", "lifetime_spent", "lifetime_expired", "expiring"}
ENTRY_FIELDS = {"id", "kind", "points", "balance_after", "reason", "reference", "created_at", "expires_at"}


def test_points_summary_has_exactly_the_contract_fields(pos_a, member_a):
    empty = pos_a.get(points_url(member_a))
    assert empty.status_code == 200
    assert empty.json() == {
        "available": 0,
        "pending": 0,
        "lifetime_earned": 0,
        "lifetime_spent": 0,
        "lifetime_expired": 0,
        "expiring": [],
    }
    give_points(member_a, 300)
    body = pos_a.get(points_url(member_a)).json()
    assert set(body) == SUMMARY_FIELDS
    # Rolling 12 months: earned 2026-03-10, the last valid day is 2027-03-10.
    assert body["expiring"] == [{"date": "2027-03-10", "points": 300}]
    assert (body["available"], body["lifetime_earned"]) == (300, 300)


def test_ledger_is_a_cursor_page_newest_first_and_filters_by_kind(pos_a, member_a):
    give_points(member_a, 50)
    assert post(pos_a, PURCHASES, purchase_body(member_a)).status_code == 201
    response = pos_a.get(points_url(member_a, "ledger/"))
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"next", "previous", "results"}
    assert (page["next"], page["previous"]) == (None, None)
    entries = page["results"]
    assert [entry["kind"] for entry in entries] == ["earn", "adjust"]
    for entry in entries:
        assert set(entry) == ENTRY_FIELDS
        assert isinstance(entry["id"], str)
    earn = entries[0]
    assert (earn["points"], earn["balance_after"], earn["reference"], earn["reason"]) == (129, 50, "A1001", "purchase")
    assert earn["expires_at"] == "2027-03-11T00:00:00+08:00"

    earned = pos_a.get(points_url(member_a, "ledger/?kind=earn")).json()["results"]
    assert [entry["kind"] for entry in earned] == ["earn"]
    later = pos_a.get(points_url(member_a, "ledger/?created_after=2026-03-11T00:00:00%2B08:00")).json()
    assert later["results"] == []


def test_ledger_pages_with_a_cursor(admin_api, member_a):
    for n in range(3):
        give_points(member_a, n + 1, key=f"p{n}")
    first = admin_api.get(points_url(member_a, "ledger/?page_size=2")).json()
    assert [entry["points"] for entry in first["results"]] == [3, 2]
    assert first["next"] and first["previous"] is None
    second = admin_api.get(first["next"]).json()
    assert [entry["points"] for entry in second["results"]] == [1]
    assert second["next"] is None


def test_adjustment_201_returns_a_ledger_entry_and_replays(admin_api, member_a):
    url = points_url(member_a, "adjustments/")
    response = post(admin_api, url, {"points": 250, "reason": "goodwill"}, key="adj-1")
    assert response.status_code == 201, response.content
    entry = response.json()
    assert set(entry) == ENTRY_FIELDS
    assert (entry["kind"], entry["points"], entry["balance_after"], entry["reason"]) == ("adjust", 250, 250, "goodwill")
    replay = post(admin_api, url, {"points": 250, "reason": "goodwill"}, key="adj-1")
    assert replay.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == entry
    assert_error(post(admin_api, url, {"points": 251, "reason": "goodwill"}, key="adj-1"), 409, "idempotency_conflict")
    assert admin_api.get(points_url(member_a)).json()["available"] == 250


@pytest.mark.parametrize("points", [501, -501])
def test_clerk_adjustment_over_500_is_403_adjustment_limit(clerk_api, member_a, points):
    give_points(member_a, 1000)
    before = counts()
    assert_error(
        post(clerk_api, points_url(member_a, "adjustments/"), {"points": points, "reason": "x"}, key="clerk-1"),
        403,
        "adjustment_limit",
    )
    assert counts() == before


def test_clerk_adjustment_within_500_is_201(clerk_api, member_a):
    response = post(clerk_api, points_url(member_a, "adjustments/"), {"points": 500, "reason": "x"}, key="c")
    assert response.status_code == 201, response.content


def test_adjustment_below_zero_is_409_insufficient_points(admin_api, member_a):
    give_points(member_a, 10)
    before = counts()
    assert_error(
        post(admin_api, points_url(member_a, "adjustments/"), {"points": -11, "reason": "x"}, key="neg"),
        409,
        "insufficient_points",
    )
    assert counts() == before
    response = post(admin_api, points_url(member_a, "adjustments/"), {"points": -10, "reason": "x"}, key="neg2")
    assert response.status_code == 201
    assert response.json()["balance_after"] == 0


def test_deduction_201_then_deduction_limit_and_insufficient_points(admin_api, member_a):
    give_points(member_a, 1000)
    url = points_url(member_a, "deductions/")
    before = counts()
    assert_error(
        post(admin_api, url, {"order_no": "D-1", "points": 1100, "amount": "20.00"}, key="d0"), 409, "deduction_limit"
    )
    assert counts() == before

    response = post(admin_api, url, {"order_no": "D-1", "points": 1000, "amount": "20.00"}, key="d1")
    assert response.status_code == 201, response.content
    body = response.json()
    assert {"points": body["points"], "amount": body["amount"]} == {"points": 1000, "amount": "10.00"}
    assert admin_api.get(points_url(member_a)).json()["available"] == 0

    replay = post(admin_api, url, {"order_no": "D-1", "points": 1000, "amount": "20.00"}, key="d1")
    assert (replay.status_code, replay.json()) == (201, body)

    before = counts()
    assert_error(
        post(admin_api, url, {"order_no": "D-2", "points": 100, "amount": "20.00"}, key="d2"),
        409,
        "insufficient_points",
    )
    assert counts() == before


def test_deduction_more_than_available_is_409_insufficient_points(admin_api, member_a):
    give_points(member_a, 1000)
    before = counts()
    response = post(
        admin_api,
        points_url(member_a, "deductions/"),
        {"order_no": "D-9", "points": 1500, "amount": "100.00"},
        key="d9",
    )
    assert_error(response, 409, "insufficient_points")
    assert counts() == before


def test_deduction_of_an_unrecorded_order_without_amount_is_400(admin_api, member_a):
    give_points(member_a, 1000)
    before = counts()
    response = post(admin_api, points_url(member_a, "deductions/"), {"order_no": "D-5", "points": 100}, key="d5")
    assert_error(response, 400, "invalid")
    assert counts() == before


def test_refund_of_a_purchase_with_points_used_returns_them(pos_a, member_a):
    give_points(member_a, 1000)
    purchase = post(pos_a, PURCHASES, purchase_body(member_a, amount="20.00", points_used=1000)).json()
    refund = post(pos_a, f"{PURCHASES}{purchase['id']}/refunds/", {"amount": "20.00", "refund_no": "R1"})
    assert refund.status_code == 201, refund.content
    assert (refund.json()["points_reversed"], refund.json()["points_returned"]) == (10, 1000)
    summary = pos_a.get(points_url(member_a)).json()
    assert (summary["available"], summary["pending"], summary["lifetime_spent"]) == (1000, 0, 0)


def _deduct_then_record(pos_a, member_a):
    give_points(member_a, 1000)
    deducted = post(
        pos_a, points_url(member_a, "deductions/"), {"order_no": "D-1", "points": 1000, "amount": "20.00"}, key="pre-1"
    )
    assert deducted.status_code == 201, deducted.content
    recorded = post(pos_a, PURCHASES, purchase_body(member_a, order_no="D-1", amount="20.00"))
    assert recorded.status_code == 201, recorded.content
    return recorded.json()


def test_deduction_before_the_purchase_is_returned_on_full_refund(pos_a, member_a):
    purchase = _deduct_then_record(pos_a, member_a)
    refund = post(pos_a, f"{PURCHASES}{purchase['id']}/refunds/", {"amount": "20.00", "refund_no": "R1"})
    assert refund.status_code == 201, refund.content
    assert refund.json()["points_returned"] == 1000
    assert pos_a.get(points_url(member_a)).json()["available"] == 1000


def test_deduction_before_the_purchase_earns_on_the_paid_amount(pos_a, member_a):
    purchase = _deduct_then_record(pos_a, member_a)
    assert purchase["points"]["awarded"] == 10


# --- 2. Contract shapes: rewards and redemptions -----------------------------------------------------------------

REWARD_BODY = {"code": "tote", "name": "Tote bag", "kind": "gift", "cost_points": 300, "stock": 5}


def test_rewards_are_readable_by_members_client_apps_and_staff(
    reward, member_a, app_client, pos_a, clerk_api, admin_api, anonymous
):
    for client in (member_client(member_a), app_client, pos_a, clerk_api, admin_api):
        listed = client.get(REWARDS)
        assert listed.status_code == 200, listed.content
        assert [item["id"] for item in listed.json()["results"]] == [str(reward.pk)]
        one = client.get(f"{REWARDS}{reward.pk}/")
        assert one.status_code == 200
        assert one.json()["code"] == "mug"
    assert_error(anonymous.get(REWARDS), 401, "not_authenticated")


def test_rewards_written_by_marketers_not_clerks_or_members(marketer_api, clerk_api, pos_a, member_a):
    created = post(marketer_api, REWARDS, REWARD_BODY)
    assert created.status_code == 201, created.content
    assert created.json()["code"] == "tote"
    assert created.json()["available"] is True
    assert_error(post(clerk_api, REWARDS, {**REWARD_BODY, "code": "tote-2"}), 403, "permission_denied")
    assert_error(post(pos_a, REWARDS, {**REWARD_BODY, "code": "tote-3"}), 403, "permission_denied")
    assert_error(post(member_client(member_a), REWARDS, {**REWARD_BODY, "code": "tote-4"}), 403, "permission_denied")
    assert Reward.objects.count() == 1


def test_redemption_201_shape_and_cancel_twice(admin_api, member_a):
    gift = make_reward(code="tote", name="Tote", kind="gift", cost_points=300, stock=5)
    give_points(member_a, 1000)
    response = post(admin_api, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(gift.pk)}, key="red-1")
    assert response.status_code == 201, response.content
    body = response.json()
    assert {"id", "status", "points_spent", "reward"} <= set(body)
    assert (body["status"], body["points_spent"]) == ("completed", 300)
    assert body["reward"]["id"] == str(gift.pk)
    assert Reward.objects.get(pk=gift.pk).stock == 4
    assert admin_api.get(points_url(member_a)).json()["available"] == 700

    cancelled = post(admin_api, f"{REDEMPTIONS}{body['id']}/cancel/", {})
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert Reward.objects.get(pk=gift.pk).stock == 5
    assert admin_api.get(points_url(member_a)).json()["available"] == 1000

    before = counts()
    assert_error(post(admin_api, f"{REDEMPTIONS}{body['id']}/cancel/", {}), 409, "already_cancelled")
    assert counts() == before
    assert Reward.objects.get(pk=gift.pk).stock == 5


def test_coupon_redemption_has_a_code(admin_api, member_a, reward):
    give_points(member_a, 100)
    response = post(admin_api, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(reward.pk)}, key="c1")
    assert response.status_code == 201, response.content
    assert isinstance(response.json()["code"], str) and len(response.json()["code"]) >= 6


def test_redemption_of_a_frozen_member_is_409_member_frozen(admin_api, member_a, reward):
    give_points(member_a, 1000)
    assert post(admin_api, f"/api/v1/members/{member_a.pk}/freeze/", {"reason": "x"}).status_code == 200
    before = counts()
    response = post(admin_api, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(reward.pk)}, key="f1")
    assert_error(response, 409, "member_frozen")
    assert counts() == before


@pytest.mark.parametrize("window", ["expired", "not_yet", "inactive"])
def test_redemption_outside_validity_is_409_reward_unavailable(admin_api, member_a, window):
    fields = {
        "expired": {"valid_until": NOW - timedelta(days=1)},
        "not_yet": {"valid_from": NOW + timedelta(days=1)},
        "inactive": {"is_active": False},
    }[window]
    gift = make_reward(code="old", **fields)
    give_points(member_a, 1000)
    before = counts()
    response = post(admin_api, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(gift.pk)}, key="v1")
    assert_error(response, 409, "reward_unavailable")
    assert counts() == before


def test_redemption_conflicts_insufficient_points_out_of_stock_limit_reached(admin_api, member_a):
    scarce = make_reward(code="scarce", kind="gift", cost_points=100, stock=1, per_member_limit=1)
    before = counts()
    body = {"member": str(member_a.pk), "reward": str(scarce.pk)}
    assert_error(post(admin_api, REDEMPTIONS, body, key="x1"), 409, "insufficient_points")
    assert counts() == before
    give_points(member_a, 1000)
    assert post(admin_api, REDEMPTIONS, body, key="x2").status_code == 201
    assert_error(post(admin_api, REDEMPTIONS, body, key="x3"), 409, "limit_reached")
    other = MemberFactory(home_store=member_a.home_store)
    give_points(other, 1000)
    assert_error(
        post(admin_api, REDEMPTIONS, {"member": str(other.pk), "reward": str(scarce.pk)}, key="x4"), 409, "out_of_stock"
    )
    assert Reward.objects.get(pk=scarce.pk).stock == 0


def test_redemption_without_idempotency_key_is_400(admin_api, member_a, reward):
    before = counts()
    response = post(admin_api, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(reward.pk)})
    assert_error(response, 400, "idempotency_key_required")
    assert counts() == before


def test_rewards_available_filter(admin_api):
    live = make_reward(code="live")
    make_reward(code="gone", valid_until=NOW - timedelta(days=1))
    make_reward(code="empty", stock=0)
    ids = [item["id"] for item in admin_api.get(f"{REWARDS}?available=true").json()["results"]]
    assert ids == [str(live.pk)]


def test_rewards_tier_filter(admin_api):
    everyone = make_reward(code="everyone")
    gold = make_reward(code="gold-only", eligible_tiers=["gold"])
    make_reward(code="silver-only", eligible_tiers=["silver"])
    response = admin_api.get(f"{REWARDS}?tier=gold")
    assert response.status_code == 200, response.content
    assert sorted(item["id"] for item in response.json()["results"]) == sorted([str(everyone.pk), str(gold.pk)])


def test_store_bound_key_redemption_for_another_stores_member_is_consistent(pos_a, member_b, reward):
    give_points(member_b, 1000)
    created = post(pos_a, REDEMPTIONS, {"member": str(member_b.pk), "reward": str(reward.pk)}, key="rb")
    if created.status_code == 201:
        # Allowed to create it: then its creator must be able to cancel it.
        assert post(pos_a, f"{REDEMPTIONS}{created.json()['id']}/cancel/", {}).status_code == 200
    else:
        assert_error(created, 404, "not_found")
        assert Redemption.objects.count() == 0


# --- 2. Member self-service --------------------------------------------------------------------------------------


def test_my_redemptions_create_and_list_only_hers(admin_api, member_a, member_b, reward):
    give_points(member_a, 500)
    give_points(member_b, 500)
    theirs = post(admin_api, REDEMPTIONS, {"member": str(member_b.pk), "reward": str(reward.pk)}, key="b1")
    assert theirs.status_code == 201
    me = member_client(member_a)
    assert_error(post(me, "/api/v1/me/redemptions/", {"reward": str(reward.pk)}), 400, "idempotency_key_required")
    mine = post(me, "/api/v1/me/redemptions/", {"reward": str(reward.pk), "quantity": 2}, key="m1")
    assert mine.status_code == 201, mine.content
    assert (mine.json()["points_spent"], mine.json()["status"]) == (200, "completed")
    listed = me.get("/api/v1/me/redemptions/")
    assert listed.status_code == 200
    page = listed.json()
    assert set(page) == {"next", "previous", "results"}
    assert [item["id"] for item in page["results"]] == [mine.json()["id"]]
    # A member body cannot name another member: the redemption is always hers.
    other = post(me, "/api/v1/me/redemptions/", {"reward": str(reward.pk), "member": str(member_b.pk)}, key="m2")
    assert other.status_code == 201
    assert Redemption.objects.filter(member=member_b).count() == 1
    assert Redemption.objects.filter(member=member_a).count() == 2


def test_my_points_and_ledger_show_only_hers(admin_api, member_a, member_b):
    give_points(member_a, 120)
    give_points(member_b, 700)
    me = member_client(member_a)
    summary = me.get("/api/v1/me/points/")
    assert summary.status_code == 200
    assert set(summary.json()) == SUMMARY_FIELDS
    assert summary.json()["available"] == 120
    ledger = me.get("/api/v1/me/points/ledger/")
    assert ledger.status_code == 200
    page = ledger.json()
    assert set(page) == {"next", "previous", "results"}
    assert [(entry["kind"], entry["points"]) for entry in page["results"]] == [("adjust", 120)]
    assert set(page["results"][0]) == ENTRY_FIELDS
    # A member id in the query is no way out of her own ledger.
    assert [e["points"] for e in me.get(f"/api/v1/me/points/ledger/?member={member_b.pk}").json()["results"]] == [120]


def test_my_sign_in_with_a_new_key_is_409_already_signed_in(member_a):
    me = member_client(member_a)
    first = post(me, "/api/v1/me/sign-in/", {}, key="day-1")
    assert first.status_code == 201, first.content
    assert set(first.json()) == EVENT_FIELDS
    assert first.json()["points"]["awarded"] == 5
    assert_error(post(me, "/api/v1/me/sign-in/", {}, key="day-1-again"), 409, "already_signed_in")


def test_my_sign_in_twice_is_201_then_409_already_signed_in(member_a):
    me = member_client(member_a)
    first = me.post("/api/v1/me/sign-in/", {}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["points"]["awarded"] == 5
    second = me.post("/api/v1/me/sign-in/", {}, format="json")
    assert_error(second, 409, "already_signed_in")


def test_my_sign_in_with_a_bad_body_is_400(member_a):
    me = member_client(member_a)
    before = counts()
    assert_invalid(post(me, "/api/v1/me/sign-in/", {"occurred_at": "garbage"}), "occurred_at")
    assert counts() == before


def test_sign_in_event_after_my_sign_in_is_409(pos_a, member_a):
    assert member_client(member_a).post("/api/v1/me/sign-in/", {}, format="json").status_code == 201
    assert_error(event(pos_a, member_a, "sign_in", key="pos-s1"), 409, "already_signed_in")


def test_next_day_sign_in_is_allowed(member_a):
    me = member_client(member_a)
    assert post(me, "/api/v1/me/sign-in/", {}, key="d1").status_code == 201
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        me = member_client(member_a)
        second = post(me, "/api/v1/me/sign-in/", {}, key="d2")
        assert second.status_code == 201, second.content
        assert me.get("/api/v1/me/points/").json()["available"] == 10


# --- 3. Authorization --------------------------------------------------------------------------------------------


def test_api_key_bound_to_store_a_cannot_see_a_store_b_member(pos_a, member_a, member_b):
    assert pos_a.get(points_url(member_a)).status_code == 200
    assert_error(pos_a.get(points_url(member_b)), 404, "not_found")
    assert_error(pos_a.get(points_url(member_b, "ledger/")), 404, "not_found")
    # Paying with points for a member of another store needs her card number (tests/security/
    # test_writes_for_unseen_members.py): without it 404, as for an unknown member, and nothing is written.
    before = counts()
    assert_error(
        post(pos_a, points_url(member_b, "deductions/"), {"order_no": "D1", "points": 100, "amount": "20.00"}, key="d"),
        404,
        "not_found",
    )
    assert counts() == before
    # With it, she is served; member_b has no points, so nothing is written.
    body = {"order_no": "D1", "points": 100, "amount": "20.00", "member_no": member_b.member_no}
    assert_error(post(pos_a, points_url(member_b, "deductions/"), body, key="d"), 409, "insufficient_points")
    assert counts() == before


@pytest.mark.parametrize("member_fixture", ["member_a", "member_b"])
def test_client_apps_cannot_adjust_points(request, pos_a, app_client, member_fixture):
    member = request.getfixturevalue(member_fixture)
    before = counts()
    for client in (pos_a, app_client):
        response = post(client, points_url(member, "adjustments/"), {"points": 10, "reason": "x"}, key="a1")
        assert_error(response, 403, "permission_denied")
    assert counts() == before


def test_member_token_cannot_use_staff_points_endpoints(member_a, reward):
    me = member_client(member_a)
    assert_error(me.get(points_url(member_a)), 403, "permission_denied")
    assert_error(me.get(points_url(member_a, "ledger/")), 403, "permission_denied")
    before = counts()
    assert_error(
        post(me, points_url(member_a, "adjustments/"), {"points": 10, "reason": "x"}, key="a"), 403, "permission_denied"
    )
    assert_error(post(me, PURCHASES, purchase_body(member_a)), 403, "permission_denied")
    assert_error(post(me, EVENTS, {"member": str(member_a.pk), "type": "sign_in"}, key="e"), 403, "permission_denied")
    assert_error(
        post(me, REDEMPTIONS, {"member": str(member_a.pk), "reward": str(reward.pk)}, key="r"), 403, "permission_denied"
    )
    assert counts() == before


def test_clerk_of_store_a_sees_404_for_a_store_b_member(clerk_api, member_a, member_b):
    assert clerk_api.get(points_url(member_a)).status_code == 200
    assert_error(clerk_api.get(points_url(member_b)), 404, "not_found")
    assert_error(clerk_api.get(points_url(member_b, "ledger/")), 404, "not_found")
    before = counts()
    assert_error(
        post(clerk_api, points_url(member_b, "adjustments/"), {"points": 10, "reason": "x"}, key="a"), 404, "not_found"
    )
    assert counts() == before


def test_unknown_member_points_is_404(admin_api):
    assert_error(admin_api.get("/api/v1/members/999999/points/"), 404, "not_found")
    assert_error(admin_api.get("/api/v1/members/9999999999999999999999/points/"), 404, "not_found")


def test_anonymous_is_401_on_points_endpoints(anonymous, member_a):
    assert_error(anonymous.get(points_url(member_a)), 401, "not_authenticated")
    assert_error(anonymous.get("/api/v1/me/points/"), 401, "not_authenticated")
    assert_error(post(anonymous, PURCHASES, purchase_body(member_a)), 401, "not_authenticated")


def test_staff_and_client_apps_cannot_use_me_endpoints(admin_api, pos_a):
    assert_error(admin_api.get("/api/v1/me/points/"), 403, "permission_denied")
    assert_error(pos_a.post("/api/v1/me/sign-in/", {}, format="json"), 403, "permission_denied")


# --- 4. OpenAPI ---------------------------------------------------------------------------------------------------

POINTS_ROUTES = [
    ("/api/v1/purchases/", "post"),
    ("/api/v1/purchases/preview/", "post"),
    ("/api/v1/purchases/{id}/refunds/", "post"),
    ("/api/v1/events/", "post"),
    ("/api/v1/members/{id}/points/", "get"),
    ("/api/v1/members/{id}/points/ledger/", "get"),
    ("/api/v1/members/{id}/points/adjustments/", "post"),
    ("/api/v1/members/{id}/points/deductions/", "post"),
    ("/api/v1/rewards/", "get"),
    ("/api/v1/rewards/", "post"),
    ("/api/v1/rewards/{id}/", "get"),
    ("/api/v1/redemptions/", "post"),
    ("/api/v1/redemptions/{id}/cancel/", "post"),
    ("/api/v1/me/points/", "get"),
    ("/api/v1/me/points/ledger/", "get"),
    ("/api/v1/me/sign-in/", "post"),
    ("/api/v1/me/redemptions/", "post"),
    ("/api/v1/me/redemptions/", "get"),
    ("/api/v1/earning-rules/", "get"),
    ("/api/v1/earning-rules/", "post"),
]


def test_openapi_schema_validates_and_describes_the_points_routes(tmp_path, db):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    missing = [(path, method) for path, method in POINTS_ROUTES if method not in schema["paths"].get(path, {})]
    assert missing == []
    purchase = schema["paths"]["/api/v1/purchases/"]["post"]["responses"]
    assert {"200", "201", "400", "409"} <= set(purchase)
    events = schema["paths"]["/api/v1/events/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" and p["required"] for p in events["parameters"])
    summary = schema["components"]["schemas"]["PointsSummary"]["properties"]
    assert set(summary) == SUMMARY_FIELDS
    entry = schema["components"]["schemas"]["LedgerEntry"]["properties"]
    assert set(entry) == ENTRY_FIELDS
