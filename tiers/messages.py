"""The tiers app's messages to members: congratulations on an upgrade, the notice of a downgrade (both written
with the change, sent after it commits), and the reminders job's warning before a hold period ends when her
growth would not keep her tier."""

from datetime import date, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.utils.translation import gettext_lazy

from loyalty.clock import end_of_business_day
from loyalty.message_templates import MessageKind, register_message_kind
from loyalty.messaging import MessageRequest, notify, queue_messages
from members.reminders import ReminderSource, register_reminder_source
from tiers.models import GrowthEntry, GrowthPolicy, MemberTier, TierChange

TIER_UP = register_message_kind(
    MessageKind(
        code="tier_up",
        label=gettext_lazy("tier upgrade"),
        marketing=False,
        variables={
            "tier": gettext_lazy("the new tier's name"),
            "previous_tier": gettext_lazy("the tier she left"),
            "date": gettext_lazy("held until"),
        },
        sample={"tier": "金卡", "previous_tier": "银卡", "date": date(2027, 6, 30)},
        frequency_days=0,  # one per tier change
    )
)
TIER_DOWN = register_message_kind(
    MessageKind(
        code="tier_down",
        label=gettext_lazy("tier downgrade"),
        marketing=False,
        variables={"tier": gettext_lazy("the new tier's name"), "previous_tier": gettext_lazy("the tier she left")},
        sample={"tier": "银卡", "previous_tier": "金卡"},
        frequency_days=0,  # one per tier change
    )
)
TIER_DOWNGRADE_WARNING = register_message_kind(
    MessageKind(
        code="tier_downgrade_warning",
        label=gettext_lazy("tier downgrade warning"),
        marketing=False,
        variables={
            "tier": gettext_lazy("her tier now"),
            "new_tier": gettext_lazy("the tier her growth keeps"),
            "date": gettext_lazy("the day her hold ends"),
            "growth": gettext_lazy("the growth that will count then"),
            "growth_needed": gettext_lazy("growth still needed to keep her tier"),
        },
        sample={"tier": "金卡", "new_tier": "银卡", "date": date(2026, 12, 31), "growth": 4200, "growth_needed": 800},
    )
)


def _tier_names():
    from tiers.services import ladder

    return {tier.pk: tier.name for tier in ladder()}


def notify_upgrade(member, *, change, hold_until):
    """Congratulations on an upgrade: written in the upgrade's transaction, sent after it commits."""
    names = _tier_names()
    notify(
        member_id=member.pk,
        kind=TIER_UP.code,
        dedupe_key=f"tier_change:{change.pk}",
        variables={
            "tier": names.get(change.to_tier_id, ""),
            "previous_tier": names.get(change.from_tier_id, ""),
            "date": hold_until,
        },
        now=change.at,
    )


def queue_downgrade_messages(start, stop, *, as_of, now):
    """The notices of the downgrades the nightly job's chunk of member ids [start, stop) just wrote (at `now`):
    one range scan to find them, bulk writes, in the chunk's transaction."""
    names = _tier_names()
    changes = TierChange.objects.filter(
        member_id__gte=start, member_id__lt=stop, business_date=as_of, reason="downgrade", at=now
    ).values_list("pk", "member_id", "from_tier_id", "to_tier_id")
    queue_messages(
        [
            MessageRequest(
                member_id,
                TIER_DOWN.code,
                f"tier_change:{pk}",
                {"tier": names.get(to_tier, ""), "previous_tier": names.get(from_tier, "")},
            )
            for pk, member_id, from_tier, to_tier in changes
        ],
        now=now,
    )


def downgrade_warning_requests(as_of, start, stop, now):
    """Members in [start, stop) above the entry tier whose hold ends within TIER_DOWNGRADE_WARNING_DAYS after
    `as_of` (so a day the job missed is caught up) and whose growth that will still count on that day is below the
    tier's retention threshold. One warning per member and hold date. One statement for the tiers and one for the
    growth."""
    from tiers.services import ladder

    horizon = as_of + timedelta(days=settings.TIER_DOWNGRADE_WARNING_DAYS)
    rows = list(
        MemberTier.objects.filter(
            member_id__gte=start, member_id__lt=stop, tier__rank__gt=0, hold_until__gt=as_of, hold_until__lte=horizon
        ).values_list("member_id", "tier_id", "hold_until")
    )
    if not rows:
        return []
    policy = GrowthPolicy.objects.filter(tag__isnull=True, valid_from__lte=now).order_by("-valid_from").first()
    window_days = policy.window_days if policy else 365
    tiers = {tier.pk: tier for tier in ladder()}
    by_hold = {}
    for member_id, _, hold_until in rows:
        by_hold.setdefault(hold_until, []).append(member_id)
    counted = Q()  # each member's growth since her own window start: one statement for all hold dates
    for hold_until, members in sorted(by_hold.items()):
        since = end_of_business_day(hold_until - timedelta(days=window_days))
        counted |= Q(member_id__in=members, occurred_at__gte=since)
    growth = dict(
        GrowthEntry.objects.filter(counted)
        .values("member_id")
        .annotate(total=Sum("value"))
        .values_list("member_id", "total")
    )
    requests = []
    for member_id, tier_id, hold_until in sorted(rows):
        tier, value = tiers[tier_id], growth.get(member_id) or 0
        if value >= tier.retention_threshold:
            continue
        kept = next(
            (
                t
                for t in reversed(list(tiers.values()))
                if t.rank <= tier.rank and t.retention_threshold <= max(value, 0)
            ),
            None,
        )
        requests.append(
            MessageRequest(
                member_id,
                TIER_DOWNGRADE_WARNING.code,
                f"hold:{hold_until.isoformat()}",
                {
                    "tier": tier.name,
                    "new_tier": kept.name if kept else "",
                    "date": hold_until,
                    "growth": value,
                    "growth_needed": tier.retention_threshold - value,
                },
            )
        )
    return requests


def register():
    """Called from TiersConfig.ready()."""
    register_reminder_source(ReminderSource(name="tier_downgrade_warning", requests=downgrade_warning_requests))
