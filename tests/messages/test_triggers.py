"""Tier changes and redemptions tell the member: the message is written with the change (a change rolled back
writes none) and sent after it commits; a retried request sends nothing twice."""

from datetime import date

import pytest
import time_machine

from loyalty.messaging import send_due_messages
from loyalty.models import Message
from loyalty.scheduling import run_inline
from points.models import Reward
from points.services import InsufficientPoints
from tests.factories import MemberFactory
from tests.messages.conftest import at
from tests.points.helpers import adjust, purchase, redeem

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a, phone="+8613812345678", name="Han Meimei")


def sms_of(member, kind):
    return list(Message.objects.filter(member=member, kind=kind, channel="sms").values_list("status", "body"))


def test_a_redemption_is_confirmed_after_commit_once_even_when_the_request_is_retried(
    member, provider, django_capture_on_commit_callbacks
):
    reward = Reward.objects.create(code="coffee", name="Coffee voucher", kind="voucher", cost_points=300, stock=10)
    adjust(member, 1000)
    with time_machine.travel(at(2026, 6, 10, 22, 15), tick=False):  # in the quiet hours: she is at the counter
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            result = redeem(member, reward, key="same-key")
        assert Message.objects.get(member=member, channel="sms").status == "queued"
        assert provider.calls == []  # nothing leaves before the commit
        for callback in callbacks:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            redeem(member, reward, key="same-key")  # the retry replays the first answer
    body = f"Han Meimei, you redeemed 1 × Coffee voucher for 300 points. {result['code']} 700 points left."
    assert sms_of(member, "redemption_confirmed") == [("sent", body)]
    assert list(Message.objects.filter(member=member, channel="inbox").values_list("status", "dedupe_key")) == [
        ("sent", f"redemption:{result['id']}")
    ]
    assert [call[3] for call in provider.calls] == [body]


def test_a_redemption_refused_writes_no_message(member, provider, django_capture_on_commit_callbacks):
    reward = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=300, stock=10)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(InsufficientPoints):
        redeem(member, reward)
    assert not Message.objects.filter(member=member).exists()


def test_an_upgrade_congratulates_the_member_with_her_new_tier(member, provider, django_capture_on_commit_callbacks):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False), django_capture_on_commit_callbacks(execute=True):
        purchase(member, "990.00")  # 1000 growth: silver, held until 2027-01-10
    assert sms_of(member, "tier_up") == [
        ("sent", "Congratulations, Han Meimei: you are now 银卡! You keep it at least until 2027-01-10.")
    ]
    with time_machine.travel(at(2026, 1, 11, 12), tick=False), django_capture_on_commit_callbacks(execute=True):
        purchase(member, "10.00")  # no change: no message
    assert Message.objects.filter(member=member, kind="tier_up").count() == 2  # inbox and sms


def test_the_nightly_downgrade_tells_each_member_who_went_down(member, provider, django_capture_on_commit_callbacks):
    kept = MemberFactory(phone="+8613812340000", name="Kept")
    with time_machine.travel(at(2026, 1, 10, 12), tick=False), django_capture_on_commit_callbacks(execute=True):
        purchase(member, "4990.00")  # gold
        purchase(kept, "4990.00")
    with time_machine.travel(at(2026, 12, 1, 12), tick=False), django_capture_on_commit_callbacks(execute=True):
        purchase(kept, "4000.00")  # keeps gold
    with time_machine.travel(at(2027, 1, 11, 3), tick=False), django_capture_on_commit_callbacks(execute=True):
        run = run_inline("tiers", date(2027, 1, 10))
    assert run.counts == {"evaluated": 2, "downgraded": 1}
    body = "Han Meimei, your tier is now 普通会员 (it was 金卡). Every purchase brings you closer to moving up again."
    assert sms_of(member, "tier_down") == [("queued", body)]  # 03:00: it waits for the end of the quiet hours
    assert Message.objects.get(member=member, kind="tier_down", channel="sms").send_after == at(2027, 1, 11, 9)
    with time_machine.travel(at(2027, 1, 11, 9), tick=False):
        assert send_due_messages() == 1
    assert sms_of(member, "tier_down") == [("sent", body)]
    assert not Message.objects.filter(member=kept, kind="tier_down").exists()
    with time_machine.travel(at(2027, 1, 11, 3), tick=False), django_capture_on_commit_callbacks(execute=True):
        run_inline("tiers", date(2027, 1, 10), force=True)
    assert Message.objects.filter(kind="tier_down").count() == 2  # inbox and sms, once


def test_a_campaign_is_announced_only_to_members_who_consented_once_per_campaign(
    member, provider, django_capture_on_commit_callbacks
):
    from campaigns.models import Campaign
    from campaigns.services.messages import launch_requests
    from loyalty.messaging import queue_messages

    member.consent_sms = True
    member.save()
    refusing = MemberFactory(phone="+8613812349999", consent_sms=False)
    campaign = Campaign.objects.create(
        name="Double points week", kind="multiplier", starts_at=at(2026, 6, 15, 0), ends_at=at(2026, 6, 22, 0)
    )
    with time_machine.travel(at(2026, 6, 10, 12), tick=False), django_capture_on_commit_callbacks(execute=True):
        queue_messages(launch_requests(campaign, [member.pk, refusing.pk]))
        queue_messages(launch_requests(campaign, [member.pk, refusing.pk]))  # the same campaign again: nothing
    assert sms_of(member, "campaign_launch") == [
        ("sent", "Han Meimei, Double points week starts on 2026-06-15. Join in!")
    ]
    assert list(
        Message.objects.filter(member=refusing, kind="campaign_launch")
        .order_by("channel")
        .values_list("channel", "status", "status_reason", "dedupe_key")
    ) == [
        ("inbox", "sent", "", f"campaign:{campaign.pk}"),
        ("sms", "skipped", "no consent for sms", f"campaign:{campaign.pk}"),
    ]
