"""The rules every message to a member obeys, each with its exact outcome: consent for marketing kinds, nothing to
frozen, anonymised or merged members, quiet hours (the message waits), one message of a kind per period, one per
thing it is about, a status for every message, and retries with backoff when the provider fails."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail

from loyalty import messaging
from loyalty.messaging import DeliveryFailed, MessageRequest, notify, queue_messages, send_due_messages
from loyalty.models import Message, MessageTemplate
from loyalty.tasks import deliver_message_task
from members.models import MemberStatus, WechatIdentity
from tests.factories import MemberFactory
from tests.messages.conftest import NOON, at

pytestmark = pytest.mark.django_db

WIN_BACK = {"lifecycle": "dormant"}
TIER_DOWN = {"tier": "Silver", "previous_tier": "Gold"}


@pytest.fixture
def send(django_capture_on_commit_callbacks):
    """notify() as a trigger calls it, with what it sends after commit run at the end of the call."""

    def send_one(member, kind="win_back", key="k1", variables=None):
        variables = variables if variables is not None else (WIN_BACK if kind == "win_back" else TIER_DOWN)
        with django_capture_on_commit_callbacks(execute=True):
            notify(member_id=member.pk, kind=kind, dedupe_key=key, variables=variables)
        return outcome(member, kind)

    return send_one


def outcome(member, kind=None):
    rows = Message.objects.filter(member=member).order_by("id")
    if kind:
        rows = rows.filter(kind=kind)
    return sorted(rows.values_list("channel", "status", "status_reason"))


def member_with(**values):
    return MemberFactory(phone=values.pop("phone", "+8613811112222"), name=values.pop("name", "Li Lei"), **values)


# --- consent ------------------------------------------------------------------------------------------------------


def test_a_marketing_kind_goes_only_on_the_channels_she_consented_to(noon, send, provider):
    consenting = member_with(consent_sms=True)
    assert send(consenting) == [("inbox", "sent", ""), ("sms", "sent", "")]
    assert provider.calls == [
        (
            Message.objects.get(member=consenting, channel="sms").pk,
            "sms",
            "+8613811112222",
            "Li Lei, we miss you! A welcome-back treat is waiting for you.",
        ),
    ]
    refusing = member_with(phone="+8613833334444", consent_sms=False)
    assert send(refusing) == [("inbox", "sent", ""), ("sms", "skipped", "no consent for sms")]
    assert len(provider.calls) == 1


def test_a_transactional_kind_goes_without_consent(noon, send, provider):
    member = member_with(consent_sms=False)
    assert send(member, kind="tier_down") == [("inbox", "sent", ""), ("sms", "sent", "")]
    assert [call[3] for call in provider.calls] == [
        "Li Lei, your tier is now Silver (it was Gold). Every purchase brings you closer to moving up again."
    ]


def test_the_wechat_and_email_channels_need_consent_and_an_address(noon, send, provider, settings):
    MessageTemplate.objects.filter(kind="win_back", language="en").update(is_active=True)
    settings.WECHAT_APP_ID = "wx-official"
    member = member_with(consent_sms=True, consent_wechat=True, consent_email=False, email="li@example.com")
    WechatIdentity.objects.create(member=member, app_id="wx-official", openid="o-li")
    WechatIdentity.objects.create(member=member, app_id="wx-mini", openid="o-li-mini")
    assert send(member) == [
        ("email", "skipped", "no consent for email"),
        ("inbox", "sent", ""),
        ("sms", "sent", ""),
        ("wechat", "sent", ""),
    ]
    assert Message.objects.get(member=member, channel="wechat").recipient == "o-li"
    no_openid = member_with(phone="+8613855556666", consent_wechat=True, consent_email=True)
    assert send(no_openid) == [
        ("email", "skipped", "no email address"),
        ("inbox", "sent", ""),
        ("sms", "skipped", "no consent for sms"),
        ("wechat", "skipped", "no WeChat openid"),
    ]


# --- member status ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [MemberStatus.FROZEN, MemberStatus.ANONYMISED, MemberStatus.MERGED])
def test_frozen_anonymised_and_merged_members_get_nothing_and_the_log_says_why(noon, send, provider, status):
    survivor = member_with(phone="+8613899990000")
    member = member_with(
        consent_sms=True, status=status, merged_into=survivor if status == MemberStatus.MERGED else None
    )
    reason = f"member is {status}"
    assert send(member, kind="tier_down") == [("inbox", "skipped", reason), ("sms", "skipped", reason)]
    assert provider.calls == []


def test_a_member_frozen_after_her_message_was_queued_gets_nothing_when_it_is_due(send, provider):
    member = member_with(consent_sms=True)
    with time_machine.travel(at(2026, 6, 10, 22, 30), tick=False):
        send(member)
    member.status = MemberStatus.FROZEN
    member.save()
    with time_machine.travel(at(2026, 6, 11, 9, 0), tick=False):
        assert send_due_messages() == 1
    assert outcome(member) == [("inbox", "sent", ""), ("sms", "skipped", "member is frozen")]
    assert provider.calls == []


# --- quiet hours --------------------------------------------------------------------------------------------------


def test_in_the_quiet_hours_a_message_waits_until_they_end_and_the_sweep_sends_it(send, provider):
    member = member_with(consent_sms=True)
    with time_machine.travel(at(2026, 6, 10, 22, 30), tick=False):
        assert send(member) == [("inbox", "sent", ""), ("sms", "queued", "")]
    sms = Message.objects.get(member=member, channel="sms")
    assert sms.send_after == at(2026, 6, 11, 9, 0)
    with time_machine.travel(at(2026, 6, 11, 8, 59), tick=False):
        assert send_due_messages() == 0
    assert provider.calls == []
    with time_machine.travel(at(2026, 6, 11, 9, 0), tick=False):
        assert send_due_messages() == 1
    sms.refresh_from_db()
    assert (sms.status, sms.sent_at, sms.attempts) == ("sent", at(2026, 6, 11, 9, 0), 1)
    assert len(provider.calls) == 1


def test_quiet_hours_before_midnight_after_midnight_and_outside(settings):
    assert messaging.quiet_until(at(2026, 6, 10, 20, 59)) is None
    assert messaging.quiet_until(at(2026, 6, 10, 21, 0)) == at(2026, 6, 11, 9, 0)
    assert messaging.quiet_until(at(2026, 6, 11, 3, 0)) == at(2026, 6, 11, 9, 0)
    assert messaging.quiet_until(at(2026, 6, 11, 9, 0)) is None
    settings.MESSAGE_QUIET_HOURS = "12:00-14:00"
    assert messaging.quiet_until(at(2026, 6, 11, 13, 0)) == at(2026, 6, 11, 14, 0)
    settings.MESSAGE_QUIET_HOURS = ""
    assert messaging.quiet_until(at(2026, 6, 11, 3, 0)) is None


def test_a_message_she_waits_for_is_not_held_by_the_quiet_hours(send, provider):
    member = member_with()
    variables = {"reward": "Coffee", "quantity": 1, "points": 500, "balance": 80, "code": "K7M2"}
    with time_machine.travel(at(2026, 6, 10, 23, 0), tick=False):
        assert send(member, kind="redemption_confirmed", variables=variables) == [
            ("inbox", "sent", ""),
            ("sms", "sent", ""),
        ]
    assert [call[3] for call in provider.calls] == [
        "Li Lei, you redeemed 1 × Coffee for 500 points. K7M2 80 points left."
    ]


# --- one per period, one per thing ---------------------------------------------------------------------------------


def test_at_most_one_message_of_a_kind_per_member_and_channel_in_seven_days(send, provider):
    member = member_with(consent_sms=True)
    with time_machine.travel(NOON, tick=False):
        send(member, key="rfm:2026-06-09")
    with time_machine.travel(NOON + timedelta(days=6, hours=23), tick=False):
        cap = "frequency cap: one win_back per 7 days on sms"
        assert send(member, key="rfm:2026-06-16") == [
            ("inbox", "sent", ""),
            ("inbox", "skipped", "frequency cap: one win_back per 7 days on inbox"),
            ("sms", "sent", ""),
            ("sms", "skipped", cap),
        ]
    with time_machine.travel(NOON + timedelta(days=7), tick=False):
        assert send(member, key="rfm:2026-06-17").count(("sms", "sent", "")) == 2
    assert len(provider.calls) == 2


def test_kinds_about_one_thing_are_not_capped_by_period_but_sent_once_per_thing(noon, send, provider):
    member = member_with()
    send(member, kind="tier_down", key="tier_change:1")
    send(member, kind="tier_down", key="tier_change:2")
    send(member, kind="tier_down", key="tier_change:2")  # the same change again: nothing new
    sms = Message.objects.filter(member=member, channel="sms").order_by("id")
    assert list(sms.values_list("dedupe_key", "status")) == [
        ("tier_change:1", "sent"),
        ("tier_change:2", "sent"),
    ]
    assert len(provider.calls) == 2


def test_one_batch_queues_in_bulk_and_applies_the_cap_within_the_batch(noon, django_assert_max_num_queries):
    members = [member_with(phone=f"+86138000000{i:02d}", consent_sms=True) for i in range(20)]
    requests = [MessageRequest(m.pk, "win_back", f"rfm:{day}", WIN_BACK) for m in members for day in (1, 2)]
    with django_assert_max_num_queries(4):  # templates, recipients, recent messages, one INSERT
        queued = queue_messages(requests)
    assert queued.counts == {"sent": 20, "queued": 20, "skipped": 40}
    assert Message.objects.filter(status="skipped", status_reason__startswith="frequency cap").count() == 40


# --- status, provider failures and retries -----------------------------------------------------------------------


def test_a_provider_that_fails_twice_is_retried_after_60_then_120_seconds_and_the_message_is_sent(
    noon, send, provider, monkeypatch
):
    countdowns = []
    original = deliver_message_task.apply_async

    def spy(args=None, countdown=None, **options):
        countdowns.append(countdown)
        sms = Message.objects.get(pk=args[0])
        assert (sms.status, sms.attempts, sms.send_after) == (
            "queued",
            args[1],
            NOON + timedelta(seconds=countdown + 600),
        )
        return original(args=args, countdown=countdown, **options)

    monkeypatch.setattr(deliver_message_task, "apply_async", spy)
    provider.answers = [DeliveryFailed("HTTP 503: busy"), DeliveryFailed("timed out")]
    member = member_with(consent_sms=True)
    assert send(member) == [("inbox", "sent", ""), ("sms", "sent", "attempt 2: timed out")]
    assert countdowns == [60, 120]
    sms = Message.objects.get(member=member, channel="sms")
    assert (sms.attempts, sms.provider_message_id) == (3, f"provider-{sms.pk}")
    assert len(provider.calls) == 3


def test_a_provider_that_keeps_failing_is_tried_five_times_then_the_message_fails_with_its_answer(
    noon, send, provider, monkeypatch
):
    countdowns = []
    original = deliver_message_task.apply_async
    monkeypatch.setattr(
        deliver_message_task,
        "apply_async",
        lambda args=None, countdown=None, **o: countdowns.append(countdown) or original(args=args, **o),
    )
    provider.answers = [DeliveryFailed(f"HTTP 503: busy {n}") for n in range(1, 9)]
    member = member_with(consent_sms=True)
    assert send(member) == [("inbox", "sent", ""), ("sms", "failed", "attempt 5: HTTP 503: busy 5")]
    assert countdowns == [60, 120, 240, 480]
    assert len(provider.calls) == 5


def test_a_refusal_by_the_provider_fails_at_once(noon, send, provider):
    provider.answers = [DeliveryFailed("HTTP 400: invalid number", permanent=True)]
    member = member_with(consent_sms=True)
    assert send(member) == [("inbox", "sent", ""), ("sms", "failed", "attempt 1: HTTP 400: invalid number")]
    assert len(provider.calls) == 1


def test_a_task_delivers_only_the_attempt_it_was_sent_for(noon, send, provider, settings):
    settings.MESSAGE_QUIET_HOURS = "00:00-23:59"
    member = member_with(consent_sms=True)
    send(member)
    sms = Message.objects.get(member=member, channel="sms")
    assert messaging.deliver_message(sms.pk, 0) == "sent"
    assert messaging.deliver_message(sms.pk, 0) is None  # the same task delivered twice: nothing more
    assert messaging.deliver_message(sms.pk, 1) is None  # sent already
    assert len(provider.calls) == 1


def test_a_message_a_worker_died_with_goes_again_when_its_lease_ends(noon, send, provider, settings):
    settings.MESSAGE_QUIET_HOURS = "00:00-23:59"
    member = member_with(consent_sms=True)
    send(member)
    sms = Message.objects.get(member=member, channel="sms")
    # a worker took it (attempt 1 leased for 10 minutes) and died before the provider answered
    Message.objects.filter(pk=sms.pk).update(attempts=1, send_after=NOON + timedelta(minutes=10))
    settings.MESSAGE_QUIET_HOURS = ""
    assert send_due_messages(now=NOON + timedelta(minutes=9)) == 0
    with time_machine.travel(NOON + timedelta(minutes=10), tick=False):
        assert send_due_messages() == 1
    sms.refresh_from_db()
    assert (sms.status, sms.attempts) == ("sent", 2)
    Message.objects.filter(pk=sms.pk).update(status="queued", attempts=5, send_after=NOON)
    assert send_due_messages(now=NOON + timedelta(hours=1)) == 0
    sms.refresh_from_db()
    assert (sms.status, sms.status_reason) == ("failed", "no answer after 5 attempts (the worker was lost)")


def test_the_workers_get_the_messages_in_batches(noon, settings, monkeypatch, django_capture_on_commit_callbacks):
    from loyalty.tasks import deliver_messages_task

    settings.MESSAGE_BATCH_SIZE = 2
    batches = []
    monkeypatch.setattr(deliver_messages_task, "delay", lambda items: batches.append(items))
    members = [member_with(phone=f"+86138000001{i:02d}") for i in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        queue_messages([MessageRequest(m.pk, "tier_down", "t", TIER_DOWN) for m in members])
    ids = list(Message.objects.filter(channel="sms").order_by("id").values_list("id", flat=True))
    assert batches == [[[ids[0], 0], [ids[1], 0]], [[ids[2], 0], [ids[3], 0]], [[ids[4], 0]]]


def test_nothing_is_written_when_the_change_that_asked_for_it_rolls_back(noon):
    from django.db import transaction

    member = member_with()
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(member_id=member.pk, kind="tier_down", dedupe_key="t", variables=TIER_DOWN)
        raise RuntimeError("the change failed")
    assert not Message.objects.filter(member=member).exists()


# --- the email and WeChat backends ---------------------------------------------------------------------------------


def test_email_goes_through_djangos_email_backend_with_an_html_and_a_text_part(noon, send, settings):
    settings.MESSAGE_BACKENDS = {**settings.MESSAGE_BACKENDS, "email": "loyalty.messaging.DjangoEmailBackend"}
    MessageTemplate.objects.filter(kind="tier_down", channel="email", language="en").update(is_active=True)
    member = member_with(email="li@example.com", name="Li <Lei>")
    assert ("email", "sent", "") in send(member, kind="tier_down")
    [email] = mail.outbox
    assert (email.to, email.subject) == (["li@example.com"], "Your tier is now Silver")
    assert email.body == (
        "Hello Li <Lei>,\nYour tier is now Silver (it was Gold). Every purchase brings you closer to moving up again."
    )
    assert email.alternatives[0][0].startswith("<p>Hello Li &lt;Lei&gt;,</p>")
