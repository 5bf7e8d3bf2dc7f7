"""A client retrying a purchase or a refund after its idempotency record was purged (kept 30 days): the order or
refund is already recorded under its natural key (order_no, refund_no), so nothing is done again. Its original
answer is no longer kept and cannot be rebuilt exactly (the tier change and the balance of that moment), so the
answer is a clear 409 `already_recorded` naming what was recorded, never a 500 nor a second purchase or refund."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty import scheduling
from members.models import Purchase, Refund
from points.models import IdempotencyRecord, LedgerEntry, LotMovement, PointsAccount, PointsLot

SHANGHAI = ZoneInfo("Asia/Shanghai")
PURCHASES = "/api/v1/purchases/"
pytestmark = pytest.mark.django_db


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def books():
    """Every row a purchase or refund writes, and the member's balances."""
    return (
        {model.__name__: model.objects.count() for model in (Purchase, Refund, LedgerEntry, PointsLot, LotMovement)},
        list(PointsAccount.objects.values_list("member_id", "available", "pending", "lifetime_earned")),
    )


def purge_on(*when):
    with time_machine.travel(local(*when), tick=False):
        run = scheduling.run_inline("purge_idempotency", triggered_by="test")
    assert run.status == "done"
    return run


def test_a_purchase_retried_after_its_record_was_purged_is_409_already_recorded(pos_a, member_a):
    body = {"member": str(member_a.pk), "order_no": "A1001", "amount": "129.90"}
    with time_machine.travel(local(2026, 3, 10, 12), tick=False):
        first = pos_a.post(PURCHASES, body, format="json")
        assert first.status_code == 201, first.content
        assert pos_a.post(PURCHASES, body, format="json").status_code == 200  # a replay while it is kept
    assert purge_on(2026, 4, 11, 4, 30).counts == {"deleted": 1}
    before = books()

    with time_machine.travel(local(2026, 4, 11, 9), tick=False):
        retry = pos_a.post(PURCHASES, body, format="json")

    assert retry.status_code == 409, retry.content
    assert retry.json() == {
        "code": "already_recorded",
        "detail": "Order A1001 was already recorded on 2026-03-10; its first answer is no longer kept, so it is not "
        "repeated.",
        "purchase": first.json()["id"],
    }
    assert books() == before  # no second purchase, no points
    assert IdempotencyRecord.objects.count() == 0  # the refused retry claims no key


def test_a_refund_retried_after_its_record_was_purged_is_409_already_recorded(pos_a, member_a):
    with time_machine.travel(local(2026, 3, 10, 12), tick=False):
        order = pos_a.post(
            PURCHASES, {"member": str(member_a.pk), "order_no": "A1001", "amount": "129.90"}, format="json"
        ).json()
        first = pos_a.post(f"{PURCHASES}{order['id']}/refunds/", {"amount": "29.90", "refund_no": "R1"}, format="json")
        assert first.status_code == 201, first.content
    assert purge_on(2026, 4, 11, 4, 30).counts == {"deleted": 2}
    before = books()

    with time_machine.travel(local(2026, 4, 11, 9), tick=False):
        retry = pos_a.post(f"{PURCHASES}{order['id']}/refunds/", {"amount": "29.90", "refund_no": "R1"}, format="json")

    assert retry.status_code == 409, retry.content
    assert retry.json() == {
        "code": "already_recorded",
        "detail": "Refund R1 of order A1001 was already recorded on 2026-03-10; its first answer is no longer "
        "kept, so it is not repeated.",
        "refund": first.json()["id"],
    }
    assert books() == before  # the points were reversed once
    assert PointsAccount.objects.get(member=member_a).pending == 100
    assert IdempotencyRecord.objects.count() == 0


def test_an_order_imported_without_a_key_and_then_posted_is_409_already_recorded(pos_a, member_a):
    """The same check covers an order that never had a record (imported by file under the client's source)."""
    with time_machine.travel(local(2026, 3, 10, 12), tick=False):
        first = pos_a.post(
            PURCHASES, {"member": str(member_a.pk), "order_no": "A1001", "amount": "129.90"}, format="json"
        )
    IdempotencyRecord.objects.all().delete()
    before = books()
    with time_machine.travel(local(2026, 3, 10, 13), tick=False):
        other_body = pos_a.post(
            PURCHASES, {"member": str(member_a.pk), "order_no": "A1001", "amount": "99.00"}, format="json"
        )
    assert other_body.status_code == 409
    assert (other_body.json()["code"], other_body.json()["purchase"]) == ("already_recorded", first.json()["id"])
    assert books() == before
