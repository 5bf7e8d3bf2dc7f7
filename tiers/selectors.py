"""Reads of tier data: the ladder and a member's standing (tier, growth in the window, progress, history)."""

from django.utils import timezone

from tiers.models import GrowthPolicy, TierChange
from tiers.services import current_tier, growth_policy_for, ladder, window_growth

HISTORY_SHOWN = 20


def tier_representation(tier):
    if tier is None:
        return None
    return {
        "code": tier.code,
        "name": tier.name,
        "rank": tier.rank,
        "entry_threshold": tier.entry_threshold,
        "retention_threshold": tier.retention_threshold,
        "hold_days": tier.hold_days,
        "points_multiplier": f"{tier.points_multiplier:.2f}",
        "birthday_bonus": tier.birthday_bonus,
        "discount_rate": f"{tier.discount_rate:.2f}",
        "free_shipping": tier.free_shipping,
        "benefits": tier.benefits,
    }


def member_standing(member_id):
    """GET /members/{id}/tier/: her tier, growth in the window now, the next tier and what is left to reach it,
    the end of her hold period, and the newest tier changes."""
    now = timezone.now()
    tier, row = current_tier(member_id)
    policy = growth_policy_for(member_id, now) or GrowthPolicy()
    growth = window_growth(member_id, at=now, window_days=policy.window_days)
    above = [t for t in ladder() if tier is None or t.rank > tier.rank]
    next_tier = above[0] if above else None
    history = (
        TierChange.objects.filter(member_id=member_id)
        .select_related("from_tier", "to_tier")
        .order_by("-at", "-id")[:HISTORY_SHOWN]
    )
    return {
        "tier": tier_representation(tier),
        "growth_value": growth,
        "next_tier": tier_representation(next_tier),
        "to_next": max(next_tier.entry_threshold - growth, 0) if next_tier else None,
        "hold_until": row.hold_until.isoformat() if row and row.hold_until else None,
        "history": [
            {
                "from": change.from_tier.code if change.from_tier else None,
                "to": change.to_tier.code,
                "reason": change.reason,
                "at": timezone.localtime(change.at).isoformat(),
            }
            for change in history
        ],
    }
