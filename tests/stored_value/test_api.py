"""The stored-value API of API.md: paths, fields, status and error codes, and whom each caller may act for."""

import pytest

from loyalty.models import AuditEntry
from stored_value.models import StoredValueAccount, TopUp
from tests.conftest import member_client
from tests.stored_value.helpers import balances, rule

pytestmark = pytest.mark.django_db

TIERS = [{"amount": 10_000, "bonus": 1_000}, {"amount": 50_000, "bonus": 8_000, "points": 200}]


@pytest.fixture(autouse=True)
def bonus_rule(db):
    return rule(TIERS)


def post_top_up(client, member, amount="100.00", ref="WX-100", **extra):
    body = {"member": str(member.pk), "amount": amount, "payment_method": "wechat_pay", "payment_ref": ref, **extra}
    return client.post("/api/v1/stored-value/top-ups/", body, format="json")


def post_payment(client, member, amount, order_no="A1001", key="pay-1", **extra):
    body = {"member": str(member.pk), "order_no": order_no, "amount": amount, **extra}
    return client.post("/api/v1/stored-value/payments/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_the_account_shows_principal_bonus_and_total_in_cents_and_as_decimal_strings(pos_a, member_a):
    assert post_top_up(pos_a, member_a).status_code == 201

    response = pos_a.get(f"/api/v1/members/{member_a.pk}/stored-value/")

    assert response.status_code == 200
    assert response.json() == {
        "member": str(member_a.pk),
        "principal": "100.00",
        "bonus": "10.00",
        "total": "110.00",
        "principal_cents": 10_000,
        "bonus_cents": 1_000,
        "total_cents": 11_000,
        "has_pin": False,
        "pin_locked": False,
    }


def test_a_top_up_answers_201_then_200_for_the_same_payment_reference(pos_a, member_a):
    first = post_top_up(pos_a, member_a, amount="500.00")
    again = post_top_up(pos_a, member_a, amount="500.00")
    other = post_top_up(pos_a, member_a, amount="400.00")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    body = first.json()
    assert (body["amount"], body["bonus"], body["bonus_points"], body["store"]) == ("500.00", "80.00", 200, "A001")
    assert body["balance"]["total"] == "580.00"
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_conflict")
    assert TopUp.objects.count() == 1


def test_a_top_up_is_open_for_any_member_of_the_chain_but_only_at_the_callers_store(pos_a, member_b, store_b):
    assert post_top_up(pos_a, member_b).status_code == 201
    refused = post_top_up(pos_a, member_b, ref="WX-2", store="B001")
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert balances(member_b) == (10_000, 1_000)


def test_a_payment_answers_the_fixed_shape(pos_a, member_a):
    post_top_up(pos_a, member_a)

    response = post_payment(pos_a, member_a, "33.33")

    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("order_no", "amount", "principal_used", "bonus_used", "balance_after")} == {
        "order_no": "A1001",
        "amount": "33.33",
        "principal_used": "30.30",
        "bonus_used": "3.03",
        "balance_after": "76.67",
    }
    assert body["id"] and body["balance"]["principal"] == "69.70"
    replay = post_payment(pos_a, member_a, "33.33")
    assert (replay.status_code, replay.json()) == (201, body)
    conflict = post_payment(pos_a, member_a, "33.34")
    assert (conflict.status_code, conflict.json()["code"]) == (409, "idempotency_conflict")
    again = post_payment(pos_a, member_a, "33.33", key="pay-2")
    assert (again.status_code, again.json()["code"], again.json()["payment"]) == (409, "already_paid", body["id"])


def test_payment_refusals_answer_their_codes(pos_a, member_a):
    post_top_up(pos_a, member_a)

    no_key = pos_a.post(
        "/api/v1/stored-value/payments/",
        {"member": str(member_a.pk), "order_no": "X", "amount": "1.00"},
        format="json",
    )
    too_much = post_payment(pos_a, member_a, "110.01")
    bad_amount = post_payment(pos_a, member_a, "1.001", key="k-bad")
    bad_pin = post_payment(pos_a, member_a, "1.00", key="k-pin", pin="12ab56")

    assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_required")
    assert (too_much.status_code, too_much.json()["code"]) == (409, "insufficient_balance")
    assert too_much.json()["available"] == "110.00"
    assert (bad_amount.status_code, list(bad_amount.json()["errors"])) == (400, ["amount"])
    assert (bad_pin.status_code, list(bad_pin.json()["errors"])) == (400, ["pin"])
    assert balances(member_a) == (10_000, 1_000)


def test_pin_required_and_pin_invalid_through_the_api(pos_a, clerk_api, member_a):
    post_top_up(pos_a, member_a)
    set_pin = clerk_api.post(f"/api/v1/members/{member_a.pk}/stored-value/pin/", {"pin": "135790"}, format="json")
    assert set_pin.status_code == 200 and set_pin.json() == {
        "member": str(member_a.pk),
        "has_pin": True,
        "locked": False,
    }

    missing = post_payment(pos_a, member_a, "1.00", key="k1")
    wrong = post_payment(pos_a, member_a, "1.00", key="k1", pin="000000")
    right = post_payment(pos_a, member_a, "1.00", key="k1", pin="135790")

    assert (missing.status_code, missing.json()["code"]) == (403, "pin_required")
    assert (wrong.status_code, wrong.json()["code"], wrong.json()["attempts_left"]) == (403, "pin_invalid", 4)
    assert right.status_code == 201
    assert "pin" not in right.json()


def test_a_client_app_cannot_set_a_pin(pos_a, member_a):
    response = pos_a.post(f"/api/v1/members/{member_a.pk}/stored-value/pin/", {"pin": "135790"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")


def test_the_daily_limit_answers_409_daily_limit(pos_a, member_a):
    from stored_value.models import StoredValuePolicy
    from tests.stored_value.test_services import LONG_AGO

    StoredValuePolicy.objects.create(daily_limit_cents=2_000, valid_from=LONG_AGO)
    post_top_up(pos_a, member_a)
    assert post_payment(pos_a, member_a, "15.00", key="k1", order_no="O1").status_code == 201

    over = post_payment(pos_a, member_a, "5.01", key="k2", order_no="O2")

    assert (over.status_code, over.json()["code"], over.json()["left"]) == (409, "daily_limit", "5.00")


def test_spending_the_money_of_another_stores_member_needs_her_card_number(pos_a, member_b, store_b):
    post_top_up(pos_a, member_b)

    hidden = post_payment(pos_a, member_b, "1.00", key="k1")
    with_card = post_payment(pos_a, member_b, "1.00", key="k2", member_no=member_b.member_no)

    assert (hidden.status_code, hidden.json()["code"]) == (404, "not_found")
    assert with_card.status_code == 201
    assert pos_a.get(f"/api/v1/members/{member_b.pk}/stored-value/").status_code == 404  # nor may it read hers


def test_a_refund_of_a_payment_and_its_retry(pos_a, pos_b, member_a):
    post_top_up(pos_a, member_a)
    payment = post_payment(pos_a, member_a, "33.33").json()
    path = f"/api/v1/stored-value/payments/{payment['id']}/refunds/"

    first = pos_a.post(path, {"amount": "10.00", "refund_no": "R1"}, format="json")
    again = pos_a.post(path, {"amount": "10.00", "refund_no": "R1"}, format="json")
    too_much = pos_a.post(path, {"amount": "23.34", "refund_no": "R2"}, format="json")
    elsewhere = pos_b.post(path, {"amount": "1.00", "refund_no": "R3"}, format="json")

    assert first.status_code == 201
    assert {k: first.json()[k] for k in ("amount", "principal", "bonus", "balance_after")} == {
        "amount": "10.00",
        "principal": "9.10",
        "bonus": "0.90",
        "balance_after": "86.67",
    }
    assert (again.status_code, again.json()) == (200, first.json())
    assert (too_much.status_code, too_much.json()["code"], too_much.json()["refundable"]) == (
        409,
        "refund_exceeds_payment",
        "23.33",
    )
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (404, "not_found")


def test_withdrawals_are_for_store_managers_and_admins(pos_a, clerk_api, manager_api, admin_api, member_a):
    top_up = post_top_up(pos_a, member_a).json()
    body = {"top_up": top_up["id"], "amount": "50.00", "reason": "moving away"}

    def post(client, key, **changes):
        return client.post(
            "/api/v1/stored-value/withdrawals/", {**body, **changes}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )

    by_client, by_clerk = post(pos_a, "w1"), post(clerk_api, "w2")
    no_reason = post(manager_api, "w3", reason="")
    by_manager = post(manager_api, "w4")
    by_admin = post(admin_api, "w5", amount=None)

    assert (by_client.status_code, by_client.json()["code"]) == (403, "permission_denied")
    assert (by_clerk.status_code, by_clerk.json()["code"]) == (403, "permission_denied")
    assert (no_reason.status_code, list(no_reason.json()["errors"])) == (400, ["reason"])
    assert by_manager.status_code == 201
    assert {k: by_manager.json()[k] for k in ("amount", "bonus_forfeited", "unspent_left", "balance_after")} == {
        "amount": "50.00",
        "bonus_forfeited": "5.00",
        "unspent_left": "50.00",
        "balance_after": "55.00",
    }
    assert by_admin.status_code == 201 and by_admin.json()["amount"] == "50.00"
    assert balances(member_a) == (0, 0)
    assert AuditEntry.objects.filter(action="stored_value.withdrawn", actor="staff:manager-a").count() == 1


def test_a_manager_of_another_store_cannot_withdraw_a_top_up_of_a_member_not_hers(pos_b, manager_api, member_b):
    top_up = post_top_up(pos_b, member_b).json()
    response = manager_api.post(
        "/api/v1/stored-value/withdrawals/",
        {"top_up": top_up["id"], "reason": "x"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="w1",
    )
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_adjustments_by_a_manager(pos_a, manager_api, clerk_api, member_a):
    post_top_up(pos_a, member_a)
    path = f"/api/v1/members/{member_a.pk}/stored-value/adjustments/"

    by_clerk = clerk_api.post(path, {"bonus": "1.00", "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="a1")
    too_much = manager_api.post(path, {"bonus": "-10.01", "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="a2")
    done = manager_api.post(
        path, {"principal": "-1.50", "bonus": "2.00", "reason": "till error"}, format="json", HTTP_IDEMPOTENCY_KEY="a3"
    )

    assert (by_clerk.status_code, by_clerk.json()["code"]) == (403, "permission_denied")
    assert (too_much.status_code, too_much.json()["code"]) == (409, "insufficient_balance")
    assert done.status_code == 201
    assert {k: done.json()[k] for k in ("kind", "principal", "bonus", "balance_after", "reason")} == {
        "kind": "adjust",
        "principal": "-1.50",
        "bonus": "2.00",
        "balance_after": "110.50",
        "reason": "till error",
    }


def test_the_ledger_lists_entries_newest_first(pos_a, member_a):
    post_top_up(pos_a, member_a)
    post_payment(pos_a, member_a, "1.00")

    response = pos_a.get(f"/api/v1/members/{member_a.pk}/stored-value/ledger/")
    only_pay = pos_a.get(f"/api/v1/members/{member_a.pk}/stored-value/ledger/?kind=pay")

    assert response.status_code == 200
    rows = [(r["kind"], r["principal"], r["bonus"], r["balance_after"]) for r in response.json()["results"]]
    assert rows == [
        ("pay", "-0.91", "-0.09", "109.00"),
        ("bonus", "0.00", "10.00", "110.00"),
        ("top_up", "100.00", "0.00", "100.00"),
    ]
    assert [r["kind"] for r in only_pay.json()["results"]] == ["pay"]


def test_the_member_reads_her_own_stored_value_and_sets_her_pin(pos_a, member_a):
    post_top_up(pos_a, member_a)
    me = member_client(member_a)

    summary = me.get("/api/v1/me/stored-value/")
    ledger = me.get("/api/v1/me/stored-value/ledger/")
    pin = me.post("/api/v1/me/stored-value/pin/", {"pin": "864213"}, format="json")
    change_without = me.post("/api/v1/me/stored-value/pin/", {"pin": "111111"}, format="json")
    not_hers = me.get(f"/api/v1/members/{member_a.pk}/stored-value/")

    assert (summary.status_code, summary.json()["total"]) == (200, "110.00")
    assert [r["kind"] for r in ledger.json()["results"]] == ["bonus", "top_up"]
    assert pin.status_code == 200 and StoredValueAccount.objects.get(member=member_a).pin_matches("864213")
    assert (change_without.status_code, change_without.json()["code"]) == (403, "pin_required")
    assert not_hers.status_code == 403
