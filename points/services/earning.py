"""How many points an activity earns: the rule in force, the base points, the modifiers other apps plug in
(tier multiplier, campaigns), and the member's daily cap."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from loyalty.clock import business_date
from loyalty.config_cache import cached
from points import hooks
from points.models import EarningRule, RuleChannel

logger = logging.getLogger(__name__)

# SPEC §2 defaults, used until a marketer saves a rule for the channel.
DEFAULT_RULES = {
    RuleChannel.PURCHASE: {"points_per_unit": Decimal("1"), "pending_days": 7},
    RuleChannel.SIGN_IN: {"points": 5, "streak_days": 7, "streak_bonus": 20},
    RuleChannel.SHARE: {"points": 2, "daily_limit": 3},
    RuleChannel.REVIEW: {"points": 10},
    RuleChannel.REFERRAL: {"points": 100},
    RuleChannel.BIRTHDAY: {"points": 50},
}


def rule_for(channel, *, at, store=None, event_type=""):
    """The rule in force for a channel at `at`: a store's own rule before the general one, the newest
    valid_from first. Custom events have no default: no rule, no points."""
    rules = cached(
        "points.earning_rules", lambda: list(EarningRule.objects.filter(is_active=True)), models=[EarningRule]
    )
    store_id = store.pk if store else None
    candidates = [
        rule
        for rule in rules
        if rule.channel == channel
        and rule.event_type == (event_type or "")
        and rule.valid_from <= at
        and (rule.valid_until is None or rule.valid_until > at)
        and rule.store_id in (None, store_id)
    ]
    # A store's own rule first, then the newest version.
    candidates.sort(key=lambda rule: (rule.store_id is not None, rule.valid_from, rule.pk), reverse=True)
    rule = candidates[0] if candidates else None
    if rule is None and channel in DEFAULT_RULES:
        rule = EarningRule(channel=channel, name=f"default {channel}", **DEFAULT_RULES[channel])
    return rule


@dataclass
class Award:
    """Points an activity earns, how they are made up, and whether the daily cap cut them."""

    points: int
    breakdown: list
    capped: bool = False
    available_at: object = None
    rule: EarningRule | None = None


def eligible_amount(rule, paid_amount, lines):
    """The part of the paid amount that earns points: lines in excluded categories do not (pro rata, since the
    paid amount may be after discounts and points-as-cash)."""
    excluded = set(rule.excluded_categories or ())
    if not lines or not excluded:
        return paid_amount
    total = sum((line["quantity"] * line["unit_price"] for line in lines), Decimal(0))
    if total <= 0:
        return paid_amount
    excluded_value = sum(
        (line["quantity"] * line["unit_price"] for line in lines if line.get("category") in excluded), Decimal(0)
    )
    return (paid_amount * (total - excluded_value) / total).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def purchase_base_points(rule, paid_amount, lines):
    if rule is None or paid_amount < rule.min_amount:
        return 0
    points = eligible_amount(rule, paid_amount, lines) * rule.points_per_unit
    return int(points.to_integral_value(rounding=ROUND_FLOOR))  # SPEC: rounded down


def with_modifiers(context):
    breakdown = hooks.earn_breakdown(context)
    return sum(line["points"] for line in breakdown), breakdown


def daily_cap_left(account, *, policy, at):
    """What the member's daily cap leaves on the business date of `at` (her account read under its lock)."""
    day = business_date(at)
    earned_today = account.earned_on_cap_date if account.cap_date == day else 0
    return max(policy.daily_cap - earned_today, 0)


def apply_daily_cap(account, award, *, policy, at, preview=False):
    """Cut the award to what is left of the member's daily cap on the business date of `at` and book it on
    the (locked) account. SPEC: hitting the cap raises an alert (logged here; reports turns it into one)."""
    day = business_date(at)
    earned_today = account.earned_on_cap_date if account.cap_date == day else 0
    left = max(policy.daily_cap - earned_today, 0)
    if award.points > left:
        award.breakdown.append({"source": "daily_cap", "points": left - award.points})
        award.points, award.capped = left, True
        logger.warning("member %s reached the daily points cap of %s on %s", account.member_id, policy.daily_cap, day)
    if not preview:
        account.cap_date, account.earned_on_cap_date = day, earned_today + award.points
    return award


def pending_until(rule, occurred_at):
    return occurred_at + timedelta(days=rule.pending_days if rule else 0)
