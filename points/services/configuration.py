"""The marketer's points configuration: rewards, earning rules and the points policy. One service per write, each in
its own durable transaction, locking the row before checking it, with one audit row of the old and new values
(loyalty.versions holds how, and the versioning rule these follow).

- An earning rule is a version from the start: it keeps its terms (how it earns) in place; only its end
  (valid_until) and its switch (is_active) change. A change of terms is a new version: a new rule from the old
  one's values, the newest valid_from wins (points.services.earning.rule_for).
- A reward keeps its terms once redeemed (the redemptions were made under them); a change of terms is a new
  version with the same code, which replaces and retires the old one: the old keeps its terms, takes no more
  redemptions and hands its stock to the new one.
- The points policy is versions only: each new version applies from its valid_from.
"""

import copy

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loyalty.access import ROLE_ADMIN
from loyalty.errors import InvalidInput, NotFoundError, PermissionDeniedError
from loyalty.versions import (
    VersionReplaced,
    add,
    change_in_place,
    check_no_overlap,
    only,
    version_start,
)
from points.models import EarningRule, PointsPolicy, Redemption, Reward

REWARD_FIELDS = [
    "code",
    "name",
    "kind",
    "description",
    "cost_points",
    "stock",
    "per_member_limit",
    "eligible_tiers",
    "voucher_amount",
    "valid_from",
    "valid_until",
    "is_active",
]
REWARD_TERMS = ["code", "kind", "cost_points", "voucher_amount"]  # what a redemption was made under

RULE_IN_PLACE_FIELDS = ["valid_until", "is_active"]
RULE_TERMS = [
    "channel",
    "event_type",
    "name",
    "store",
    "valid_from",
    "points",
    "points_per_unit",
    "min_amount",
    "excluded_categories",
    "pending_days",
    "daily_limit",
    "streak_days",
    "streak_bonus",
]
RULE_FIELDS = [*RULE_TERMS, *RULE_IN_PLACE_FIELDS]

POLICY_FIELDS = [
    "valid_from",
    "expiry_mode",
    "expiry_months",
    "daily_cap",
    "cash_points_per_unit",
    "cash_max_share",
    "clerk_adjustment_limit",
    "marketer_adjustment_limit",
    "clerk_daily_adjustment_total",
    "marketer_daily_adjustment_total",
    "member_daily_adjustment_total",
    "transfers_enabled",
    "transfer_daily_limit",
]
# The policy's limits on moving points, each with its operator ceiling (a setting): changed by an admin only.
POLICY_LIMIT_CEILINGS = {
    "clerk_adjustment_limit": "MAX_CLERK_ADJUSTMENT_LIMIT",
    "marketer_adjustment_limit": "MAX_MARKETER_ADJUSTMENT_LIMIT",
    "clerk_daily_adjustment_total": "MAX_CLERK_DAILY_ADJUSTMENT_TOTAL",
    "marketer_daily_adjustment_total": "MAX_MARKETER_DAILY_ADJUSTMENT_TOTAL",
    "member_daily_adjustment_total": "MAX_MEMBER_DAILY_ADJUSTMENT_TOTAL",
    "transfer_daily_limit": "MAX_TRANSFER_DAILY_LIMIT",
}


class LimitChangeNotAllowed(PermissionDeniedError):
    default_detail = gettext_lazy("Only an admin may change the adjustment and transfer limits of the points policy.")


def limit_ceiling(field):
    """The operator's ceiling on a policy limit (POLICY_LIMIT_CEILINGS)."""
    return getattr(settings, POLICY_LIMIT_CEILINGS[field])


def limit_in_force(policy, field):
    """A policy's limit as it applies: never above the operator's ceiling, whatever the row says."""
    return min(getattr(policy, field), limit_ceiling(field))


def _locked(model, pk):
    row = model.objects.select_for_update().filter(pk=pk).first()
    if row is None:
        raise NotFoundError()
    return row


# --- Rewards -----------------------------------------------------------------------------------------------------


def create_reward(*, actor, values):
    """Add a reward to the catalogue. Raises InvalidInput (a current reward has the code, a rule of the model)."""
    with transaction.atomic(durable=True):
        reward = Reward(**only(values, REWARD_FIELDS))
        return add(actor=actor, action="points.reward.added", instance=reward, fields=REWARD_FIELDS)


def _reward_version(reward_id):
    reward = _locked(Reward, reward_id)
    if reward.replaced_at is not None:
        raise VersionReplaced(replaced_by=str(reward.replaced_by.pk))
    return reward


def change_reward(*, actor, reward_id, changes):
    """Change a reward in place; only the fields that differ are written (a stale form does not write back the
    stock that redemptions have moved since). Once redeemed, its terms (REWARD_TERMS) stay: changing one raises
    VersionKeepsItsTerms (add_reward_version makes it). Raises VersionReplaced on an old version, InvalidInput."""
    with transaction.atomic(durable=True):
        reward = _reward_version(reward_id)
        # Checked after the lock: a redemption inserted meanwhile waits for it (its foreign key locks the row).
        redeemed = Redemption.objects.filter(reward_id=reward.pk).exists()
        change_in_place(
            actor=actor,
            action="points.reward.changed",
            instance=reward,
            changes=only(changes, REWARD_FIELDS),
            fixed_terms=REWARD_TERMS if redeemed else (),
        )
        return reward


def deactivate_reward(*, actor, reward_id):
    """Take a reward out of the catalogue (it stays for the redemptions that point at it)."""
    with transaction.atomic(durable=True):
        reward = _locked(Reward, reward_id)
        change_in_place(actor=actor, action="points.reward.deactivated", instance=reward, changes={"is_active": False})
        return reward


def add_reward_version(*, actor, reward_id, changes):
    """A new version of a reward: the old one's values with `changes`, under the same code. The old version keeps
    its terms, is retired (inactive, replaced_at set) and hands its stock over (what is left of it, unless
    `changes` sets the new stock), so a redemption racing this change cannot spend the same stock twice.
    Raises VersionReplaced (only the newest version has a successor), InvalidInput."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        old = _reward_version(reward_id)
        changes = only(changes, REWARD_FIELDS)
        if changes.get("code", old.code) != old.code:
            raise InvalidInput({"code": [_("A new version keeps the reward's code.")]})
        as_it_was = copy.copy(old)
        new = Reward(**{name: getattr(old, name) for name in REWARD_FIELDS}, replaces=old)
        for name, value in changes.items():
            setattr(new, name, value)
        old.replaced_at, old.is_active = now, False
        old.stock = 0 if old.stock is not None else None
        old.save(update_fields=["replaced_at", "is_active", "stock"])
        return add(
            actor=actor, action="points.reward.versioned", instance=new, fields=REWARD_FIELDS, previous=as_it_was
        )


# --- Earning rules -----------------------------------------------------------------------------------------------


def _check_rule_start(rule, *, exclude=None):
    """Two active versions of the same rule (channel, event type, store) may not start at the same instant."""
    versions = (
        EarningRule.objects.select_for_update()
        .filter(channel=rule.channel, event_type=rule.event_type, store_id=rule.store_id, is_active=True)
        .exclude(pk=exclude)
    )
    if rule.is_active:
        check_no_overlap(versions, rule.valid_from)


def create_earning_rule(*, actor, values):
    """Add an earning rule (a first version, or a version of its own). Raises OverlappingVersion, InvalidInput."""
    with transaction.atomic(durable=True):
        rule = EarningRule(**only(values, RULE_FIELDS), created_by=actor)
        _check_rule_start(rule)
        return add(actor=actor, action="points.earning_rule.added", instance=rule, fields=RULE_FIELDS)


def change_earning_rule(*, actor, rule_id, changes):
    """End or switch a rule in place (valid_until, is_active). Its terms stay: changing one raises
    VersionKeepsItsTerms (add_earning_rule_version makes it). Raises OverlappingVersion (switched back on at the
    start of another active version), InvalidInput."""
    with transaction.atomic(durable=True):
        rule = _locked(EarningRule, rule_id)
        changes = only(changes, RULE_FIELDS)
        if changes.get("is_active") and not rule.is_active:
            _check_rule_start(rule, exclude=rule.pk)
        change_in_place(
            actor=actor, action="points.earning_rule.changed", instance=rule, changes=changes, fixed_terms=RULE_TERMS
        )
        return rule


def deactivate_earning_rule(*, actor, rule_id):
    """Switch a rule off: from now it earns nothing (its history stays)."""
    with transaction.atomic(durable=True):
        rule = _locked(EarningRule, rule_id)
        change_in_place(
            actor=actor, action="points.earning_rule.deactivated", instance=rule, changes={"is_active": False}
        )
        return rule


def add_earning_rule_version(*, actor, rule_id, changes):
    """A new version of a rule: the old one's values with `changes` (typically new terms from a new valid_from).
    The old version stays as it was; the newest valid_from in force wins. Raises OverlappingVersion (the same
    start as an active version of the same rule), InvalidInput."""
    with transaction.atomic(durable=True):
        old = _locked(EarningRule, rule_id)
        new = EarningRule(**{name: getattr(old, name) for name in RULE_FIELDS}, created_by=actor)
        for name, value in only(changes, RULE_FIELDS).items():
            setattr(new, name, value)
        _check_rule_start(new)
        return add(actor=actor, action="points.earning_rule.versioned", instance=new, fields=RULE_FIELDS, previous=old)


# --- The points policy -------------------------------------------------------------------------------------------


def _check_limits(policy, follows, role):
    """Every limit within its ceiling (InvalidInput, for everyone); a limit other than the version it follows has
    (the defaults when none) only from an admin (LimitChangeNotAllowed, 403)."""
    over = {
        field: [_("At most %(ceiling)s (the operator's ceiling).") % {"ceiling": limit_ceiling(field)}]
        for field in POLICY_LIMIT_CEILINGS
        if getattr(policy, field) > limit_ceiling(field)
    }
    if over:
        raise InvalidInput(over)
    if role == ROLE_ADMIN:
        return
    before = follows or PointsPolicy()
    changed = [field for field in POLICY_LIMIT_CEILINGS if getattr(policy, field) != getattr(before, field)]
    if changed:
        raise LimitChangeNotAllowed(
            _("Only an admin may change the adjustment and transfer limits of the points policy."),
            errors={field: [_("Only an admin may change this limit.")] for field in changed},
        )


def add_points_policy(*, actor, values, role=None):
    """A new version of the points policy, applying from its valid_from (now or later: a start up to a few minutes
    ago means now). Saved versions never change. The audit row holds what it changes from the version it follows.
    The limits (POLICY_LIMIT_CEILINGS) not in `values` are those of the version it follows; only `role` admin
    changes them, each up to its operator ceiling.
    Raises StartsInThePast, OverlappingVersion, InvalidInput, LimitChangeNotAllowed."""
    with transaction.atomic(durable=True):
        policy = PointsPolicy(**only(values, POLICY_FIELDS), created_by=actor)
        policy.valid_from = version_start(values.get("valid_from"))
        versions = list(PointsPolicy.objects.select_for_update().order_by("-valid_from", "-id"))
        check_no_overlap(versions, policy.valid_from)
        follows = next((version for version in versions if version.valid_from < policy.valid_from), None)
        for field in POLICY_LIMIT_CEILINGS:
            if field not in values and follows is not None:
                setattr(policy, field, getattr(follows, field))
        _check_limits(policy, follows, role)
        return add(actor=actor, action="points.policy.added", instance=policy, fields=POLICY_FIELDS, previous=follows)
