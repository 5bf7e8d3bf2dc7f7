"""Staff who subscribe hear of new alerts (and no one else does): one message per subscriber and channel listing
the alerts she wants, through the message layer, after commit, once per alert."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from campaigns.services.budgets import BUDGET_RULE
from loyalty.alerts import raise_alert
from loyalty.errors import InvalidInput
from loyalty.models import Alert, AuditEntry, Message
from reports.alert_notices import (
    change_alert_rule,
    delete_alert_subscription,
    notify_subscribers,
    save_alert_subscription,
)
from reports.alert_rules import CAP_RULE, SPIKE_RULE
from reports.models_alerts import AlertNotice, AlertSubscription
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


def staff_user(username, role, email):
    return StaffUserFactory(username=username, role=role, email=email, password=None)  # no login: no hashing


@pytest.fixture
def staff(db):
    return {
        "boss": staff_user("boss", "admin", "boss@example.com"),
        "marketing": staff_user("marketing", "marketer", "mkt@example.com"),
        "quiet": staff_user("quiet", "admin", "quiet@example.com"),
        "away": staff_user("away", "marketer", "away@example.com"),
        "clerk": staff_user("clerk", "clerk", "clerk@example.com"),
    }


@pytest.fixture
def subscriptions(staff):
    """boss: every rule, by email and in the admin; marketing: the daily cap only, by email; away: paused; quiet and
    clerk: none."""
    save_alert_subscription(actor="staff:root", values={"user": staff["boss"]})
    save_alert_subscription(
        actor="staff:root", values={"user": staff["marketing"], "rules": [CAP_RULE], "in_admin": False}
    )
    save_alert_subscription(actor="staff:root", values={"user": staff["away"], "is_active": False})


def spike(day="2026-06-10"):
    return raise_alert(
        rule=SPIKE_RULE, metric="points_issued_today", value=301, threshold=300, subject="points", key=f"s:{day}"
    )


def capped(member_no):
    return raise_alert(
        rule=CAP_RULE,
        metric="points_earned_today",
        value=5000,
        threshold=5000,
        subject=f"member {member_no}",
        key=f"c:{member_no}",
    )


def budget():
    return raise_alert(
        rule=BUDGET_RULE, metric="budget_used", value=250, threshold=250, subject="campaign:7", key="b:7"
    )  # as campaigns.services.budgets raises it


def sent():
    return sorted(
        (m.recipient, m.channel, m.kind, m.subject, m.status) for m in Message.objects.filter(member__isnull=True)
    )


def test_each_subscriber_gets_one_message_per_channel_listing_the_alerts_she_wants_and_no_one_else_gets_any(
    subscriptions, django_capture_on_commit_callbacks
):
    spike()
    capped("M0001")
    capped("M0002")
    budget()
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_subscribers() == {"alerts": 4, "messages": 3}
    every = "4 new alerts: A member reached the daily points cap ×2, Points issued today far above the 7-day average, "
    every += "A campaign's points budget ran out"
    assert sent() == sorted(
        [
            (
                "mkt@example.com",
                "email",
                "staff_alert",
                "2 new alerts: A member reached the daily points cap ×2",
                "sent",
            ),
            ("boss@example.com", "email", "staff_alert", every, "sent"),
            ("staff:boss", "inbox", "staff_alert", every, "sent"),
        ]
    )
    note = Message.objects.get(recipient="staff:boss")
    assert note.body.splitlines()[1:] == [
        f"- {timezone.localtime(alert.created_at):%Y-%m-%d %H:%M} {label} ({alert.subject}): {alert.metric} {value}"
        for alert, label, value in zip(
            Alert.objects.order_by("id"),
            [
                "Points issued today far above the 7-day average",
                "A member reached the daily points cap",
                "A member reached the daily points cap",
                "A campaign's points budget ran out",
            ],
            ["301 / 300", "5000 / 5000", "5000 / 5000", "250 / 250"],
            strict=True,
        )
    ]
    marketing = Message.objects.get(recipient="mkt@example.com")
    assert "M0001" in marketing.body and "M0002" in marketing.body and "campaign:7" not in marketing.body
    assert {n.alert.rule: n.recipients for n in AlertNotice.objects.select_related("alert")} == {
        SPIKE_RULE: 1,
        CAP_RULE: 2,
        BUDGET_RULE: 1,
    }


def test_each_alert_is_told_once(subscriptions, django_capture_on_commit_callbacks):
    spike()
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_subscribers() == {"alerts": 1, "messages": 2}
        assert notify_subscribers() == {"alerts": 0, "messages": 0}
        capped("M0001")
        assert notify_subscribers() == {"alerts": 1, "messages": 3}
    assert Message.objects.count() == 5


def test_the_messages_leave_only_after_the_sweep_commits(subscriptions, django_capture_on_commit_callbacks):
    spike()
    with django_capture_on_commit_callbacks() as callbacks:
        notify_subscribers()
    assert set(Message.objects.values_list("status", flat=True)) == {"queued"}
    for callback in callbacks:
        callback()
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_staff_email_goes_through_the_email_channels_backend(
    subscriptions, settings, django_capture_on_commit_callbacks
):
    settings.MESSAGE_BACKENDS = {**settings.MESSAGE_BACKENDS, "email": "loyalty.messaging.DjangoEmailBackend"}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    spike()
    with django_capture_on_commit_callbacks(execute=True):
        notify_subscribers()
    [email] = mail.outbox
    assert (email.to, email.subject) == (
        ["boss@example.com"],
        "1 new alert: Points issued today far above the 7-day average",
    )
    html = email.alternatives[0][0]
    assert "<td>points_issued_today</td><td>301</td><td>300</td>" in html
    assert "301" in email.body


def test_a_rule_switched_off_tells_no_one_and_its_alerts_are_not_told_later(
    subscriptions, django_capture_on_commit_callbacks
):
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"is_active": False})
    spike()
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_subscribers() == {"alerts": 1, "messages": 0}
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"is_active": True})
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_subscribers() == {"alerts": 0, "messages": 0}
    assert AlertNotice.objects.get().recipients == 0


def test_alerts_older_than_a_day_are_not_told(subscriptions):
    old = spike()
    Alert.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1, seconds=1))
    assert notify_subscribers() == {"alerts": 0, "messages": 0}


def test_a_subscriber_who_lost_her_role_or_was_deactivated_hears_nothing(
    staff, subscriptions, django_capture_on_commit_callbacks
):
    staff["boss"].groups.clear()
    staff["marketing"].is_active = False
    staff["marketing"].save()
    capped("M0001")
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_subscribers() == {"alerts": 1, "messages": 0}


# --- Subscriptions and rules' settings, as staff change them ------------------------------------------------------


def test_only_admins_and_marketers_with_an_address_for_email_may_subscribe(staff):
    with pytest.raises(InvalidInput) as refused:
        save_alert_subscription(actor="staff:boss", values={"user": staff["clerk"]})
    assert list(refused.value.errors) == ["user"]
    staff["quiet"].email = ""
    staff["quiet"].save()
    with pytest.raises(InvalidInput) as refused:
        save_alert_subscription(actor="staff:boss", values={"user": staff["quiet"]})
    assert refused.value.errors == {"by_email": ["This staff account has no email address."]}
    with pytest.raises(InvalidInput) as refused:
        save_alert_subscription(
            actor="staff:boss", values={"user": staff["quiet"], "by_email": False, "in_admin": False}
        )
    assert refused.value.errors == {"by_email": ["Choose email, the admin, or both."]}
    with pytest.raises(InvalidInput) as refused:
        save_alert_subscription(actor="staff:boss", values={"user": staff["boss"], "rules": ["no_such_rule"]})
    assert refused.value.errors == {"rules": ["Unknown rules: no_such_rule."]}
    assert AlertSubscription.objects.count() == 0


def test_subscriptions_are_one_per_user_and_every_change_is_audited(staff):
    first = save_alert_subscription(actor="staff:root", values={"user": staff["boss"], "rules": [CAP_RULE, SPIKE_RULE]})
    with pytest.raises(InvalidInput) as refused:
        save_alert_subscription(actor="staff:root", values={"user": staff["boss"]})
    assert list(refused.value.errors) == ["user"]
    save_alert_subscription(actor="staff:root", values={"in_admin": False}, subscription_id=first.pk)
    delete_alert_subscription(actor="staff:root", subscription_id=first.pk)
    audit = AuditEntry.objects.filter(target_type="reports.alertsubscription").order_by("id")
    assert [(a.action, a.old_values, a.new_values) for a in audit] == [
        (
            "alert_subscription.added",
            None,
            {
                "user": staff["boss"].pk,
                "rules": [CAP_RULE, SPIKE_RULE],
                "by_email": True,
                "in_admin": True,
                "is_active": True,
            },
        ),
        ("alert_subscription.changed", {"in_admin": True}, {"in_admin": False}),
        (
            "alert_subscription.deleted",
            {
                "user": staff["boss"].pk,
                "rules": [CAP_RULE, SPIKE_RULE],
                "by_email": True,
                "in_admin": False,
                "is_active": True,
            },
            None,
        ),
    ]


def test_a_rules_threshold_is_checked_and_its_changes_audited():
    with pytest.raises(InvalidInput) as refused:
        change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"threshold": Decimal(0)})
    assert list(refused.value.errors) == ["threshold"]
    with pytest.raises(InvalidInput) as refused:
        change_alert_rule(actor="staff:boss", code=CAP_RULE, changes={"threshold": Decimal(10)})
    assert list(refused.value.errors) == ["threshold"]
    with pytest.raises(InvalidInput) as refused:
        change_alert_rule(actor="staff:boss", code="nightly_job_late", changes={"threshold": Decimal(24)})
    assert list(refused.value.errors) == ["threshold"]
    with pytest.raises(InvalidInput) as refused:
        change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"floor": Decimal(-1)})
    assert list(refused.value.errors) == ["floor"]
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"threshold": Decimal(4), "floor": Decimal(0)})
    [entry] = AuditEntry.objects.filter(action="alert_rule.changed")
    assert (entry.actor, entry.old_values, entry.new_values) == (
        "staff:boss",
        {"threshold": "3.0000"},
        {"threshold": "4"},
    )
