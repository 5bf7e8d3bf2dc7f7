"""Domain events for other systems (webhooks), from a transactional outbox.

A service that changes something other systems care about calls `emit(type, data, member_id=...)` inside its own
transaction, after the change: one INSERT into the outbox table, committed or rolled back with the change, so there
is no event without its change and no change without its event. When no active webhook subscription wants the type,
nothing is written at all; which types are wanted is read from loyalty.config_cache (no query per call), so a new
subscription starts receiving events everywhere within CONFIG_CACHE_SECONDS.

Nightly jobs that change many members in one statement emit set-based too: `outbox_insert_sql` gives the INSERT ...
SELECT they add to their statement when `wanted(type)` (one event per member change, no loop in Python).

After the commit the webhook dispatcher is nudged (`kick`); the periodic `deliver_webhooks` task picks up whatever a
nudge missed. Delivery, retries and order: loyalty.webhooks.
"""

import logging
import re
import time

from django.conf import settings
from django.db import transaction

from loyalty.audit import json_safe
from loyalty.config_cache import cached
from loyalty.models import OutboxEvent, WebhookSubscription

logger = logging.getLogger(__name__)

EVENT_TYPES = {
    "points.earned": "Points earned by a purchase, an engagement event, a referral, a birthday or a campaign.",
    "points.expired": "A member's points expired (the nightly expiry job): one event per member and date.",
    "points.adjusted": "Staff adjusted a member's points (directly, or an adjustment approved).",
    "redemption.created": "A member redeemed a reward.",
    "redemption.cancelled": "A redemption was cancelled and its points returned.",
    "tier.changed": "A member moved to another tier (upgrade, nightly downgrade, merge).",
    "member.created": "A member registered.",
    "member.updated": "A member's profile, consents or status changed (which fields: `changed`).",
    "member.merged": "A duplicate member was merged into the member the event is about.",
    "campaign.activated": "A campaign was activated.",
    "campaign.paused": "A campaign was paused.",
    "campaign.ended": "A campaign was ended.",
    "stored_value.topped_up": "Money was paid in to a member's stored value (a top-up, with its bonus money).",
    "stored_value.paid": "An order was paid from a member's stored value.",
    "stored_value.refunded": "(Part of) a payment from stored value was refunded to the balance.",
    "stored_value.withdrawn": "Unspent principal of a top-up was paid back in money (its bonus forfeited in "
    "proportion).",
    "stored_value.bonus_expired": "Bonus money past its validity expired (the nightly job, or the member's next "
    "change, whichever comes first).",
}
PATTERN = re.compile(r"^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$")


def known_patterns():
    """What a subscription may ask for: every type, `<prefix>.*` for each prefix, and `*` (everything)."""
    prefixes = sorted({name.split(".")[0] for name in EVENT_TYPES})
    return ["*", *(f"{prefix}.*" for prefix in prefixes), *sorted(EVENT_TYPES)]


def is_known_pattern(pattern):
    return pattern in set(known_patterns())


def matches(pattern, event_type):
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


class _Wanted:
    """The patterns of the active subscriptions, with the answer per type remembered."""

    def __init__(self, patterns):
        self.patterns = frozenset(patterns)
        self.by_type = {}

    def __call__(self, event_type):
        answer = self.by_type.get(event_type)
        if answer is None:
            answer = self.by_type[event_type] = any(matches(pattern, event_type) for pattern in self.patterns)
        return answer


def _load_wanted():
    patterns = set()
    for events in WebhookSubscription.objects.filter(is_active=True).values_list("events", flat=True):
        patterns.update(events or [])
    return _Wanted(patterns)


def wanted(event_type):
    """Whether an active subscription wants events of this type (cached per process, see loyalty.config_cache)."""
    return cached("webhooks.wanted_events", _load_wanted, models=[WebhookSubscription])(event_type)


def _check_type(event_type):
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}: add it to loyalty.events.EVENT_TYPES")


def emit(event_type, data, *, member_id=None):
    """Write an event into the outbox, in the caller's transaction (call it after the change, inside the service's
    `transaction.atomic`). Writes nothing when no active subscription wants the type. `data`: JSON-able values
    (decimals, dates and rows are converted as the audit log does); ids as strings, as the API shows them. Returns
    the event, or None."""
    written = emit_many(event_type, [(data, member_id)])
    return written[0] if written else None


def emit_many(event_type, items):
    """emit() for many changes of one type at once (a job's chunk): `items` are (data, member_id) pairs, written in
    one INSERT in their order. Returns the events written ([] when no subscription wants the type)."""
    _check_type(event_type)
    if not items or not wanted(event_type):
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("emit() must run inside the transaction of the change it reports")
    events = [OutboxEvent(type=event_type, member_id=member_id, data=json_safe(data)) for data, member_id in items]
    if len(events) == 1:
        events[0].save(force_insert=True)
    elif events:
        events = OutboxEvent.objects.bulk_create(events)
    if events:
        transaction.on_commit(kick)
    return events


def outbox_insert_sql(event_type, *, member_id, data, source):
    """For set-based jobs (PostgreSQL): an `INSERT INTO` the outbox `SELECT {member_id}, {data} FROM {source}`, one
    event per row of `source`, to be added to the job's statement (e.g. as a CTE) when `wanted(event_type)`.
    `member_id` and `data` are SQL expressions over `source` (`data` a jsonb_build_object(...)); the statement must
    bind %(now)s (the events' created_at). Only constants of the caller go in: values are bound parameters."""
    _check_type(event_type)  # a known type is [a-z._]: safe as a literal
    return (
        "INSERT INTO loyalty_outboxevent (type, member_id, data, created_at) "  # noqa: S608 - constants only
        f"SELECT '{event_type}', {member_id}, {data}, %(now)s FROM {source}"
    )


def after_set_based_emit():
    """A job that wrote events with outbox_insert_sql calls this in its transaction: the dispatcher is nudged after
    the commit."""
    transaction.on_commit(kick)


_last_kick = 0.0
KICK_INTERVAL = 1.0  # seconds: at most one nudge per process per interval (each is a message to the broker)


def kick():
    """Nudge the dispatcher (after a commit that wrote events). With a broker: at most one task per second per
    process, sent to run a second later, so events committed meanwhile go with it. Without one (development,
    tests), it delivers at once, in this process. A failure is logged: the periodic task delivers later."""
    global _last_kick
    if not settings.WEBHOOKS_KICK_ON_COMMIT:
        return
    from loyalty.celery import app
    from loyalty.tasks import deliver_webhooks

    try:
        if app.conf.task_always_eager:
            deliver_webhooks.delay()
            return
        now = time.monotonic()
        if now - _last_kick < KICK_INTERVAL:
            return
        _last_kick = now
        deliver_webhooks.apply_async(countdown=KICK_INTERVAL)
    except Exception:
        logger.exception("could not nudge the webhook dispatcher; the periodic task will deliver")
