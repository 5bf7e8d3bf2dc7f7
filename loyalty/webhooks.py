"""Webhooks: subscriptions of other systems to the domain events of loyalty.events, and the delivery of those events
from the outbox, signed, retried and in order per member.

- Dispatch (`dispatch_events`): the outbox's new events, oldest first, become one delivery per subscription that
  wants each (one dispatcher at a time; an event is marked dispatched in the same transaction).
- Delivery (`deliver_due`, a Celery task per subscription): a delivery is due when its next attempt time has come,
  no worker holds its lease, and no earlier event of the same member to the same subscription is still pending (so
  a member's events arrive in order: a later one waits while an earlier one is retried). A worker takes it with a
  lease (a conditional UPDATE), POSTs `{id, type, created_at, data}` with the `Loyalty-Event-Id` and
  `Loyalty-Signature` headers (loyalty.webhook_http: URL re-checked, no redirects, a timeout), and records the
  answer. A 2xx answer delivers it; anything else is retried with exponential backoff (1 minute, doubling, at most
  an hour apart) until WEBHOOKS_RETRY_HOURS have passed since it was first (re)sent, then it fails and an alert is
  raised. A worker that dies mid-delivery leaves the lease to run out: the delivery is taken again, so an event is
  delivered at least once, never lost (receivers de-duplicate by the event id).
- Resend (`resend_delivery`): a delivery, whatever its status, is attempted again from now on.
"""

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext

from loyalty import events, webhook_http
from loyalty.alerts import raise_alert
from loyalty.audit import record_audit
from loyalty.errors import InvalidInput, NotFoundError
from loyalty.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookSubscription

logger = logging.getLogger(__name__)

FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
DISPATCH_BATCH = 1000
DELIVERY_BATCH = 100
SECRET_MIN_LENGTH = 16
DISPATCH_LOCK = 0x4C4F59414C5459  # pg_advisory_xact_lock key of the dispatcher ("LOYALTY")
FAILED_RULE = "webhook_delivery_failed"  # the alert rule of a delivery that failed for good


# --- Subscriptions ------------------------------------------------------------------------------------------------


def generate_secret():
    return f"whsec_{secrets.token_urlsafe(32)}"


def _checked_events(values, errors):
    patterns = values.get("events")
    if not isinstance(patterns, list) or not patterns:
        errors["events"] = [gettext("Give at least one event type.")]
        return None
    unknown = [pattern for pattern in patterns if not isinstance(pattern, str) or not events.is_known_pattern(pattern)]
    if unknown:
        errors["events"] = [
            gettext("Unknown event types: %(unknown)s. Known: %(events)s.")
            % {"unknown": ", ".join(map(str, unknown)), "events": ", ".join(events.known_patterns())}
        ]
        return None
    return list(dict.fromkeys(patterns))


def _checked_url(url, errors):
    try:
        webhook_http.check_url(url)
    except webhook_http.UnsafeUrl as error:
        errors["url"] = [gettext("This URL is not allowed: %(error)s.") % {"error": error}]


def _checked(values, *, partial):
    errors, cleaned = {}, {}
    if "url" in values or not partial:
        cleaned["url"] = (values.get("url") or "").strip()
        _checked_url(cleaned["url"], errors)
    if "events" in values or not partial:
        cleaned["events"] = _checked_events(values, errors)
    if values.get("secret") is not None:
        secret = values["secret"]
        if not isinstance(secret, str) or not SECRET_MIN_LENGTH <= len(secret) <= 100:
            errors["secret"] = [
                gettext("A secret has %(secret_min_length)s to 100 characters (or leave it out: one is made).")
                % {"secret_min_length": SECRET_MIN_LENGTH}
            ]
        cleaned["secret"] = secret
    for name in ("is_active", "description"):
        if name in values:
            cleaned[name] = values[name]
    if errors:
        raise InvalidInput(errors)
    return cleaned


def _audited(subscription):
    """What the audit log keeps of a subscription: never its secret."""
    return {
        "url": subscription.url,
        "events": subscription.events,
        "is_active": subscription.is_active,
        "description": subscription.description,
    }


def create_subscription(*, actor, values):
    """A new subscription. Its secret is the one given, or one made here; returns (subscription, secret): the
    secret is shown once, in the answer to its creation. Raises InvalidInput (unknown event types, a URL that is not
    allowed: see loyalty.webhook_http)."""
    cleaned = _checked(values, partial=False)
    secret = cleaned.pop("secret", None) or generate_secret()
    with transaction.atomic(durable=True):
        subscription = WebhookSubscription.objects.create(**cleaned, secret=secret, created_by=actor)
        record_audit(actor=actor, action="webhook.created", target=subscription, new=_audited(subscription))
    return subscription, secret


def change_subscription(*, actor, subscription_id, changes):
    """Change a subscription's URL (checked again), events, secret, description or active flag; audited (a new
    secret as `secret: changed`). Raises NotFoundError, InvalidInput."""
    cleaned = _checked(changes, partial=True)
    with transaction.atomic(durable=True):
        subscription = WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        if subscription is None:
            raise NotFoundError()
        old = _audited(subscription)
        for name, value in cleaned.items():
            setattr(subscription, name, value)
        subscription.save()
        new = _audited(subscription)
        changed_old = {key: value for key, value in old.items() if new[key] != value}
        changed_new = {key: new[key] for key in changed_old}
        if "secret" in cleaned:
            changed_new["secret"] = "changed"  # noqa: S105 - that it changed, never the value
        if changed_new:
            record_audit(actor=actor, action="webhook.changed", target=subscription, old=changed_old, new=changed_new)
    return subscription


def delete_subscription(*, actor, subscription_id):
    """Delete a subscription and its deliveries (the events stay for other subscriptions). Raises NotFoundError."""
    with transaction.atomic(durable=True):
        subscription = WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        if subscription is None:
            raise NotFoundError()
        record_audit(actor=actor, action="webhook.deleted", target=subscription, old=_audited(subscription))
        subscription.delete()


# --- Dispatch: outbox events → deliveries -----------------------------------------------------------------------


def _one_dispatcher_at_a_time():
    """Two dispatchers taking batches side by side could commit a member's later event before her earlier one: they
    take turns (PostgreSQL: an advisory lock held until commit; SQLite has one writer anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK])


def dispatch_events(*, now=None, batch=DISPATCH_BATCH):
    """Turn the outbox's undispatched events, oldest first, into one pending delivery per active subscription that
    wants each. Idempotent (a unique key per subscription and event). Returns the number of events dispatched."""
    now = now or timezone.now()
    dispatched = 0
    while True:
        with transaction.atomic(durable=True):
            _one_dispatcher_at_a_time()
            batch_events = list(OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")[:batch])
            if not batch_events:
                return dispatched
            subscriptions = list(WebhookSubscription.objects.filter(is_active=True).order_by("id"))
            WebhookDelivery.objects.bulk_create(
                [
                    WebhookDelivery(
                        subscription=subscription,
                        event=event,
                        member_id=event.member_id,
                        next_attempt_at=now,
                        retry_from=now,
                        created_at=now,
                    )
                    for event in batch_events
                    for subscription in subscriptions
                    if any(events.matches(pattern, event.type) for pattern in subscription.events)
                ],
                ignore_conflicts=True,
                batch_size=DISPATCH_BATCH,
            )
            OutboxEvent.objects.filter(pk__in=[event.pk for event in batch_events]).update(dispatched_at=now)
        dispatched += len(batch_events)
        if len(batch_events) < batch:
            return dispatched


def purge_events(*, now=None, batch=5000):
    """Forget events dispatched more than WEBHOOKS_RETENTION_DAYS ago whose deliveries are all done (delivered or
    failed), with those deliveries. Returns the number of events deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.WEBHOOKS_RETENTION_DAYS)
    pending = WebhookDelivery.objects.filter(event=OuterRef("pk"), status=DeliveryStatus.PENDING)
    ids = list(
        OutboxEvent.objects.filter(dispatched_at__lt=cutoff)
        .filter(~Exists(pending))
        .order_by("id")
        .values_list("pk", flat=True)[:batch]
    )
    if not ids:
        return 0
    with transaction.atomic(durable=True):
        WebhookDelivery.objects.filter(event_id__in=ids).delete()
        OutboxEvent.objects.filter(pk__in=ids).delete()
    return len(ids)


# --- Delivery -----------------------------------------------------------------------------------------------------


def _lease_free(now):
    return Q(leased_until__isnull=True) | Q(leased_until__lte=now)


def due_deliveries(*, now, subscription_id=None):
    """Deliveries to attempt now: pending, their time come, no live lease, their subscription active, and no earlier
    event of the same member to the same subscription still pending. Oldest event first."""
    earlier = WebhookDelivery.objects.filter(
        subscription_id=OuterRef("subscription_id"),
        member_id=OuterRef("member_id"),
        status=DeliveryStatus.PENDING,
        event_id__lt=OuterRef("event_id"),
    )
    due = WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=now, subscription__is_active=True
    ).filter(_lease_free(now), ~Exists(earlier))
    if subscription_id is not None:
        due = due.filter(subscription_id=subscription_id)
    return due.order_by("event_id")


def subscriptions_with_due_deliveries(*, now=None):
    now = now or timezone.now()
    return sorted(set(due_deliveries(now=now).values_list("subscription_id", flat=True)))


def event_body(event):
    """The JSON a receiver gets (API.md: `{id, type, created_at, data}`), as bytes: the same on every attempt."""
    return json.dumps(
        {
            "id": str(event.pk),
            "type": event.type,
            "created_at": timezone.localtime(event.created_at).isoformat(),
            "data": event.data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()


def signature(secret, body, timestamp):
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>` (the Loyalty-Signature header)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempts):
    """Time to the next attempt after `attempts` failed ones: 1 minute, doubling, at most an hour."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)


def _take(delivery_id, now):
    """Take a delivery for one attempt (a lease); False when another worker holds it or it is no longer pending."""
    leased_until = now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS)
    taken = (
        WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .filter(_lease_free(now))
        .update(leased_until=leased_until, attempts=F("attempts") + 1, last_attempt_at=now)
    )
    return leased_until if taken else None


def _send(delivery):
    """One POST of the delivery's event. Returns (status or None, error text)."""
    subscription, event = delivery.subscription, delivery.event
    body = event_body(event)
    headers = {
        "Loyalty-Event-Id": str(event.pk),
        "Loyalty-Event-Type": event.type,
        "Loyalty-Signature": signature(subscription.secret, body, int(timezone.now().timestamp())),
    }
    try:
        status, answer = webhook_http.post(subscription.url, body, headers, timeout=settings.WEBHOOKS_TIMEOUT_SECONDS)
    except webhook_http.UnsafeUrl as error:
        return None, f"refused, nothing sent: {error}"
    except (OSError, ValueError, http.client.HTTPException) as error:
        return None, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if 200 <= status < 300:
        return status, ""
    return status, f"HTTP {status}: {' '.join(answer.split())}" if answer.strip() else f"HTTP {status}"


def attempt(delivery_id, *, now=None):
    """Attempt one delivery now (if it is still pending and no other worker holds it) and record the outcome.
    Returns its status after the attempt, or None when it was not taken."""
    now = now or timezone.now()
    leased_until = _take(delivery_id, now)
    if leased_until is None:
        return None
    delivery = WebhookDelivery.objects.select_related("subscription", "event").filter(pk=delivery_id).first()
    if delivery is None:  # its subscription was deleted meanwhile
        return None
    started = time.monotonic()
    status, error = _send(delivery)
    latency_ms = int((time.monotonic() - started) * 1000)
    return _record(delivery, now=now, leased_until=leased_until, status=status, error=error, latency_ms=latency_ms)


def _record(delivery, *, now, leased_until, status, error, latency_ms):
    fields = {"leased_until": None, "last_status_code": status, "last_error": error[:300]}
    fields["last_latency_ms"] = latency_ms
    if not error:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now, next_attempt_at=None)
    elif now - delivery.retry_from >= timedelta(hours=settings.WEBHOOKS_RETRY_HOURS):
        fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    else:
        fields.update(next_attempt_at=now + retry_delay(delivery.attempts))
    with transaction.atomic(durable=True):
        # Only while our lease holds: a worker that outlived its lease leaves the outcome to the one that took over.
        recorded = WebhookDelivery.objects.filter(pk=delivery.pk, leased_until=leased_until).update(**fields)
        if recorded and fields.get("status") == DeliveryStatus.FAILED:
            raise_alert(
                rule=FAILED_RULE,
                metric="attempts",
                value=delivery.attempts,
                threshold=delivery.attempts,
                subject=f"webhook {delivery.subscription_id}: event {delivery.event_id}"[:120],
                detail={
                    "subscription": str(delivery.subscription_id),
                    "url": delivery.subscription.url,
                    "delivery": str(delivery.pk),
                    "event": str(delivery.event_id),
                    "type": delivery.event.type,
                    "attempts": delivery.attempts,
                    "last_status_code": status,
                    "last_error": error[:300],
                },
                key=f"webhook-delivery-failed:{delivery.pk}:{delivery.resends}",
            )
    return fields.get("status", DeliveryStatus.PENDING) if recorded else None


def deliver_due(subscription_id, *, now=None, budget_seconds=None):
    """Attempt the subscription's due deliveries, each member's in order, until none is due or `budget_seconds`
    (real time) are spent. `now`: the clock the schedule is read and written with (default: the real time, read
    afresh for each batch). Returns {"delivered", "failed", "retrying", "more"}."""
    clock = (lambda: now) if now is not None else timezone.now
    started = time.monotonic()
    counts = {"delivered": 0, "failed": 0, "retrying": 0, "more": False}
    while True:
        batch = list(
            due_deliveries(now=clock(), subscription_id=subscription_id).values_list("pk", flat=True)[:DELIVERY_BATCH]
        )
        if not batch:
            return counts
        for delivery_id in batch:
            if budget_seconds is not None and time.monotonic() - started > budget_seconds:
                counts["more"] = True
                return counts
            outcome = attempt(delivery_id, now=clock())
            if outcome == DeliveryStatus.DELIVERED:
                counts["delivered"] += 1
            elif outcome == DeliveryStatus.FAILED:
                counts["failed"] += 1
            elif outcome == DeliveryStatus.PENDING:
                counts["retrying"] += 1


def deliver_everything_due(*, now=None):
    """Dispatch the outbox, then attempt every subscription's due deliveries in this process (tests, the
    `deliver_webhooks` command). Returns {subscription id: counts}."""
    dispatch_events(now=now)
    return {
        subscription_id: deliver_due(subscription_id, now=now)
        for subscription_id in subscriptions_with_due_deliveries(now=now)
    }


def resend_delivery(*, actor, subscription_id, delivery_id, now=None):
    """Send a delivery again from now on (delivered, failed or still retrying): pending, due now, its attempts and
    its retry period start afresh. Audited. Raises NotFoundError."""
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        delivery = (
            WebhookDelivery.objects.select_for_update().filter(pk=delivery_id, subscription_id=subscription_id).first()
        )
        if delivery is None:
            raise NotFoundError()
        old_status = delivery.status
        delivery.status, delivery.attempts, delivery.resends = DeliveryStatus.PENDING, 0, delivery.resends + 1
        delivery.next_attempt_at = delivery.retry_from = now
        delivery.leased_until = delivery.delivered_at = None
        delivery.save()
        record_audit(
            actor=actor,
            action="webhook.delivery_resent",
            target=delivery.subscription,
            new={"delivery": str(delivery.pk), "event": str(delivery.event_id), "status_before": old_status},
        )
        transaction.on_commit(events.kick)
    return delivery
