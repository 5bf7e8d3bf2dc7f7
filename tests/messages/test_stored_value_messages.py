"""A payment from the stored-value balance sends the member her receipt (stored_value_paid): written with the
payment, sent after commit even in the quiet hours (she is at the counter), once however often the request is
retried, and nothing for a payment refused."""

import pytest
import time_machine

from loyalty.models import Message
from stored_value.services import InsufficientBalance
from tests.factories import MemberFactory
from tests.messages.conftest import at
from tests.stored_value.helpers import pay, rule, top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(store_a):
    rule([{"amount": 10_000, "bonus": 1_000}])
    member = MemberFactory(home_store=store_a, phone="+8613812345678", name="Han Meimei")
    top_up(member, 10_000)
    return member


def test_a_payment_sends_its_receipt_after_commit_once_even_when_retried(
    member, provider, store_a, django_capture_on_commit_callbacks
):
    with time_machine.travel(at(2026, 6, 10, 22, 15), tick=False):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            result = pay(member, 3_300, order_no="A1001", key="same-key", store=store_a)
        assert Message.objects.get(member=member, channel="sms").status == "queued"
        assert provider.calls == []  # nothing leaves before the commit
        for callback in callbacks:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            pay(member, 3_300, order_no="A1001", key="same-key", store=store_a)  # replays the first answer

    body = "Han Meimei, 33.00 was paid from your balance (order A1001). Balance now: 77.00."
    sent = Message.objects.filter(member=member, kind="stored_value_paid").order_by("channel")
    assert list(sent.values_list("channel", "status", "dedupe_key")) == [
        ("inbox", "sent", f"stored-value-payment:{result['id']}"),
        ("sms", "sent", f"stored-value-payment:{result['id']}"),
    ]
    assert Message.objects.get(member=member, channel="sms").body == body
    assert [call[3] for call in provider.calls] == [body]


def test_a_refused_payment_writes_no_message(member, provider, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(InsufficientBalance):
        pay(member, 50_000)
    assert not Message.objects.filter(member=member).exists()
