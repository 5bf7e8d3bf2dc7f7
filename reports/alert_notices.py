"""Alerts told to the staff who subscribe, and the staff's changes to the rules and subscriptions (audited).

How staff hear of alerts: the message layer's `send_message` (loyalty.messaging) already sends a given text to any
recipient, member or not, recorded in the message log with its status and delivered after commit by the workers,
with retries; so staff messages go through it unchanged, and the message layer stays as it is. Email goes on the
email channel's backend (Django's email backend in production, the outbox in development) to the staff account's
address; "in the admin" is an inbox-channel message to `staff:<username>` (no member), shown once as a note at
the top of the alerts page in the admin (loyalty.admin.AlertAdmin). The texts are Django templates of this app
(reports/templates/reports/), not marketer-edited message templates: those are for members, with members'
variables and consent rules.

The sweep (`notify_subscribers`, run after each evaluation) takes the alerts of the last day that no one has been
told of yet, whichever app raised them, and in one transaction marks them told (AlertNotice) and writes one
message per subscriber and channel listing the ones she wants (a burst of alerts is one message, not hundreds).
The messages leave after that transaction commits, so an alert is told once, and never told when the sweep
rolls back. Alerts of a rule switched off are marked told without a message.
"""

from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, staff_role
from loyalty.alerts import STAFF_ALERT_KIND, staff_inbox_address
from loyalty.audit import record_audit
from loyalty.errors import InvalidInput
from loyalty.messaging import send_message
from loyalty.models import Alert, MessageChannel
from reports.alert_rules import RULES_BY_CODE, rule_settings
from reports.models_alerts import AlertNotice, AlertRule, AlertSubscription

ALERT_ROLES = {ROLE_ADMIN, ROLE_MARKETER}  # who sees alerts (the API, the admin) and may subscribe to them
NOTIFY_WINDOW = timedelta(days=1)  # older alerts not told yet (raised before subscriptions existed) stay untold
NOTIFY_BATCH = 1000
LISTED = 20  # alerts listed in one message; the rest are counted
NOTIFY_LOCK = 0x414C45525453  # pg_advisory_xact_lock key of the sweep ("ALERTS")

# --- Rules' settings ----------------------------------------------------------------------------------------------

RULE_FIELDS = ["is_active", "threshold", "floor"]


def _rule_errors(definition, values):
    errors = {}
    threshold, floor = values.get("threshold"), values.get("floor")
    if definition.default_threshold is None and threshold is not None:
        errors["threshold"] = [_("This rule has no threshold of its own.")]
    elif definition.default_threshold is not None and (threshold is None or threshold <= 0):
        errors["threshold"] = [_("Give a threshold above 0.")]
    elif definition.code == "nightly_job_late" and threshold >= 24:
        errors["threshold"] = [_("The deadline is an hour of the day: below 24.")]
    if floor is None or floor < 0:
        errors["floor"] = [_("Give a floor of 0 or more.")]
    return errors


def change_alert_rule(*, actor, code, changes):
    """Change a rule's settings (is_active, threshold, floor); the row is made from the defaults if missing.
    Raises InvalidInput (by field) for a threshold the rule cannot take. One audit row of what changed."""
    definition = RULES_BY_CODE.get(code)
    if definition is None:
        raise InvalidInput({"code": [_("Unknown rule.")]})
    changes = {name: value for name, value in changes.items() if name in RULE_FIELDS}
    with transaction.atomic(durable=True):
        row, _created = AlertRule.objects.select_for_update().get_or_create(
            code=code, defaults={"threshold": definition.default_threshold, "floor": definition.default_floor}
        )
        old = {name: getattr(row, name) for name in RULE_FIELDS}
        new = {**old, **changes}
        errors = _rule_errors(definition, new)
        if errors:
            raise InvalidInput(errors)
        changed = [name for name in RULE_FIELDS if old[name] != new[name]]
        if not changed:
            return row
        for name in changed:
            setattr(row, name, new[name])
        row.updated_by = actor
        row.save()
        record_audit(
            actor=actor,
            action="alert_rule.changed",
            target=row,
            old={name: old[name] for name in changed},
            new={name: new[name] for name in changed},
        )
    return row


# --- Subscriptions ------------------------------------------------------------------------------------------------

SUBSCRIPTION_FIELDS = ["user", "rules", "by_email", "in_admin", "is_active"]


def _subscription_errors(values):
    errors = {}
    user = values.get("user")
    if user is None or not user.is_active or staff_role(user) not in ALERT_ROLES:
        errors["user"] = [_("Only an active admin or marketer sees alerts and may subscribe.")]
    unknown = [code for code in values.get("rules") or [] if code not in RULES_BY_CODE]
    if unknown or not isinstance(values.get("rules"), list):
        errors["rules"] = [_("Unknown rules: %(rules)s.") % {"rules": ", ".join(map(str, unknown))}]
    if not values.get("by_email") and not values.get("in_admin"):
        errors["by_email"] = [_("Choose email, the admin, or both.")]
    elif values.get("by_email") and user is not None and not user.email:
        errors["by_email"] = [_("This staff account has no email address.")]
    return errors


def _subscription_values(subscription):
    return {name: getattr(subscription, name) for name in SUBSCRIPTION_FIELDS}


def save_alert_subscription(*, actor, values, subscription_id=None):
    """Subscribe a staff user (admin or marketer) to alerts, or change her subscription. Raises InvalidInput (by
    field): a user without such a role, unknown rules, no channel, email without an address. Audited."""
    with transaction.atomic(durable=True):
        if subscription_id is None:
            subscription, before = AlertSubscription(), None
        else:
            subscription = AlertSubscription.objects.select_for_update().get(pk=subscription_id)
            before = _subscription_values(subscription)
        merged = {**(before or {"rules": [], "by_email": True, "in_admin": True, "is_active": True}), **values}
        merged["rules"] = sorted(set(merged.get("rules") or [])) if isinstance(merged.get("rules"), list) else None
        errors = _subscription_errors(merged)
        if (
            subscription_id is None
            and "user" not in errors
            and AlertSubscription.objects.filter(user=merged["user"]).exists()
        ):
            errors["user"] = [_("This staff user has a subscription already: change it.")]
        if errors:
            raise InvalidInput(errors)
        for name in SUBSCRIPTION_FIELDS:
            setattr(subscription, name, merged[name])
        subscription.updated_by = actor
        subscription.save()
        after = _subscription_values(subscription)
        if before is None:
            record_audit(actor=actor, action="alert_subscription.added", target=subscription, new=after)
        else:
            changed = [name for name in SUBSCRIPTION_FIELDS if before[name] != after[name]]
            if changed:
                record_audit(
                    actor=actor,
                    action="alert_subscription.changed",
                    target=subscription,
                    old={name: before[name] for name in changed},
                    new={name: after[name] for name in changed},
                )
    return subscription


def delete_alert_subscription(*, actor, subscription_id):
    with transaction.atomic(durable=True):
        subscription = AlertSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        if subscription is None:
            return
        old = _subscription_values(subscription)
        record_audit(actor=actor, action="alert_subscription.deleted", target=subscription, old=old)
        subscription.delete()


# --- Telling the subscribers --------------------------------------------------------------------------------------


def _label(rule):
    definition = RULES_BY_CODE.get(rule)
    return str(definition.label) if definition else rule


def _rendered(alerts):
    """Subject, HTML body (email) and text body (the admin's note) of a message listing `alerts`."""
    counts = Counter(_label(alert.rule) for alert in alerts)
    summary = ", ".join(f"{label} ×{count}" if count > 1 else label for label, count in counts.most_common())
    subject = ngettext("%(count)d new alert: %(summary)s", "%(count)d new alerts: %(summary)s", len(alerts)) % {
        "count": len(alerts),
        "summary": summary,
    }
    rows = [
        {
            "alert": alert,
            "label": _label(alert.rule),
            "created_at": timezone.localtime(alert.created_at),
        }
        for alert in alerts[:LISTED]
    ]
    context = {"subject": subject, "rows": rows, "more": max(len(alerts) - LISTED, 0)}
    html = render_to_string("reports/alert_notice_email.html", context).strip()
    text = render_to_string("reports/alert_notice.txt", context).strip()
    return subject[:200], html, text


def _subscribers():
    subscriptions = AlertSubscription.objects.filter(is_active=True, user__is_active=True).select_related("user")
    return [subscription for subscription in subscriptions if staff_role(subscription.user) in ALERT_ROLES]


def _one_sweep_at_a_time():
    """Two sweeps side by side would both read an alert as untold and both tell it: they take turns (PostgreSQL: an
    advisory lock held until commit, so the second reads after the first committed its notices; SQLite has one
    writer anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [NOTIFY_LOCK])


def notify_subscribers(*, now=None):
    """Tell the subscribers of the alerts raised in the last day that no one has been told of (see the module's
    docstring). Returns {"alerts": told, "messages": written}."""
    now = now or timezone.now()
    with transaction.atomic(durable=True), translation.override(settings.LANGUAGE_CODE):
        _one_sweep_at_a_time()
        untold = (
            Alert.objects.filter(created_at__gte=now - NOTIFY_WINDOW)
            .filter(~Exists(AlertNotice.objects.filter(alert=OuterRef("pk"))))
            .order_by("id")
        )
        alerts = list(untold[:NOTIFY_BATCH])
        if not alerts:
            return {"alerts": 0, "messages": 0}
        rules = rule_settings({alert.rule for alert in alerts})
        sendable = [alert for alert in alerts if rules[alert.rule].is_active]
        told = Counter()
        written = 0
        for subscription in _subscribers() if sendable else []:
            wanted = [alert for alert in sendable if subscription.wants(alert.rule)]
            if not wanted:
                continue
            written += _send(subscription, wanted)
            told.update(alert.pk for alert in wanted)
        AlertNotice.objects.bulk_create(
            [AlertNotice(alert=alert, notified_at=now, recipients=told[alert.pk]) for alert in alerts],
            ignore_conflicts=True,
        )
    return {"alerts": len(alerts), "messages": written}


def _send(subscription, alerts):
    subject, html, text = _rendered(alerts)
    user, written = subscription.user, 0
    if subscription.by_email and user.email:
        send_message(
            channel=MessageChannel.EMAIL,
            kind=STAFF_ALERT_KIND,
            recipient=user.email,
            subject=subject,
            body=html,
            immediate=False,
        )
        written += 1
    if subscription.in_admin:
        send_message(
            channel=MessageChannel.INBOX, kind=STAFF_ALERT_KIND, recipient=staff_inbox_address(user), subject=subject,
            body=text, immediate=False,
        )  # fmt: skip
        written += 1
    return written
