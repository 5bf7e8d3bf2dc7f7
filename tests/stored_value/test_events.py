"""Webhook events of stored value, written to the outbox in the transaction of the change: stored_value.topped_up,
.paid, .refunded, .withdrawn (stored_value.bonus_expired: test_bonus_expiry). Data: the member, what moved
(amount = principal + bonus, unsigned decimal strings), the reference and the balance after it."""

import pytest
import time_machine

from loyalty.models import OutboxEvent, WebhookSubscription
from stored_value.services import InsufficientBalance
from tests.factories import MemberFactory
from tests.stored_value.helpers import pay, refund, rule, top_up, withdraw

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(store_a):
    rule([{"amount": 10_000, "bonus": 1_000, "points": 50}], bonus_valid_days=30)
    return MemberFactory(home_store=store_a)


def subscribe(events):
    WebhookSubscription.objects.create(url="https://crm.example.com/hook", events=events, secret="s")


@pytest.fixture(autouse=True)
def no_delivery(settings):
    settings.WEBHOOKS_KICK_ON_COMMIT = False


def emitted():
    return [(row.type, row.member_id, row.data) for row in OutboxEvent.objects.order_by("id")]


def test_a_top_up_a_payment_its_refund_and_a_withdrawal_each_emit_one_event(member, store_a):
    subscribe(["stored_value.*"])
    with time_machine.travel("2026-03-01 10:00 +08:00", tick=False):
        topped = top_up(member, 10_000, ref="WX-1", store=store_a)
        paid = pay(member, 3_300, order_no="A-77")
        refunded = refund(paid["id"], 1_100, refund_no="R-1")
        withdrawn = withdraw(topped["id"], 5_000)

    m = str(member.pk)
    assert emitted() == [
        (
            "stored_value.topped_up",
            member.pk,
            {
                "member": m,
                "amount": "110.00",
                "principal": "100.00",
                "bonus": "10.00",
                "reference": "wechat_pay:WX-1",
                "balance_after": "110.00",
                "top_up": topped["id"],
                "payment_method": "wechat_pay",
                "payment_ref": "WX-1",
                "store": "A001",
                "bonus_points": 50,
                "bonus_expires_at": "2026-03-31T00:00:00+08:00",
            },
        ),
        (
            "stored_value.paid",
            member.pk,
            {
                "member": m,
                "amount": "33.00",
                "principal": "30.00",
                "bonus": "3.00",
                "reference": "A-77",
                "balance_after": "77.00",
                "order_no": "A-77",
                "payment": paid["id"],
                "store": None,
            },
        ),
        (
            "stored_value.refunded",
            member.pk,
            {
                "member": m,
                "amount": "11.00",
                "principal": "10.00",
                "bonus": "1.00",
                "reference": "A-77",
                "balance_after": "88.00",
                "order_no": "A-77",
                "payment": paid["id"],
                "refund_no": "R-1",
                "bonus_expired": "0.00",
            },
        ),
        (
            "stored_value.withdrawn",
            member.pk,
            {
                "member": m,
                "amount": "55.00",
                "principal": "50.00",
                "bonus": "5.00",  # 50.00 of the 80.00 unspent principal: 5/8 of the 8.00 bonus left
                "reference": f"top-up:{topped['id']}",
                "balance_after": "33.00",
                "top_up": topped["id"],
                "withdrawal": withdrawn["id"],
                "bonus_forfeited": "5.00",
            },
        ),
    ]
    assert (refunded["balance_after"], withdrawn["balance_after"]) == ("88.00", "33.00")


def test_only_wanted_types_are_written_and_a_refused_payment_emits_nothing(member):
    subscribe(["stored_value.paid"])
    top_up(member, 10_000)
    with pytest.raises(InsufficientBalance):
        pay(member, 20_000)

    assert OutboxEvent.objects.count() == 0
    pay(member, 100)
    assert [row[0] for row in emitted()] == ["stored_value.paid"]
