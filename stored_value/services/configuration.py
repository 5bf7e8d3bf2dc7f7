"""The stored-value configuration: top-up rules (marketers) and the stored-value policy (admins). One service per
write, each in its own durable transaction, locking before checking, with one audit row of the old and new values
(loyalty.versions holds how, and the versioning rule these follow, as points' earning rules and policy do).

- A top-up rule is a version from the start: it keeps its terms (tiers, bonus validity, store, start) in place;
  only its end (valid_until) and its switch (is_active) change. A change of terms is a new version: a new rule from
  the old one's values; the newest valid_from in force wins (rule_for).
- The policy (daily spending limit, PIN rules) is versions only, and only an admin adds one.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.access import ROLE_ADMIN
from loyalty.clock import business_date, end_of_business_day
from loyalty.config_cache import cached
from loyalty.errors import NotFoundError, PermissionDeniedError
from loyalty.versions import add, change_in_place, check_no_overlap, only, version_start
from stored_value.models import StoredValuePolicy, TopUpRule

RULE_IN_PLACE_FIELDS = ["valid_until", "is_active"]
RULE_TERMS = ["name", "store", "valid_from", "tiers", "bonus_valid_days"]
RULE_FIELDS = [*RULE_TERMS, *RULE_IN_PLACE_FIELDS]
POLICY_FIELDS = ["valid_from", "daily_limit_cents", "pin_required", "pin_max_attempts"]


def rule_for(*, at, store=None):
    """The top-up rule in force at `at` for a top-up at `store`: a store's own rule before the general one, then
    the newest valid_from. None: no rule, no bonus."""
    rules = cached(
        "stored_value.top_up_rules", lambda: list(TopUpRule.objects.filter(is_active=True)), models=[TopUpRule]
    )
    store_id = store.pk if store else None
    candidates = [
        rule
        for rule in rules
        if rule.valid_from <= at
        and (rule.valid_until is None or rule.valid_until > at)
        and rule.store_id in (None, store_id)
    ]
    candidates.sort(key=lambda rule: (rule.store_id is not None, rule.valid_from, rule.pk), reverse=True)
    return candidates[0] if candidates else None


@dataclass(frozen=True)
class TopUpTerms:
    """What a top-up of some amount gets: the rule and tier that apply (or None), its bonus money, bonus points and
    growth value, and when the bonus money expires (None: never, or no bonus)."""

    rule: TopUpRule | None
    tier: dict | None
    bonus: int
    points: int
    growth: int
    bonus_expires_at: datetime | None


def top_up_terms(amount_cents, *, at, store=None):
    """The terms a top-up of `amount_cents` at `store` made at `at` gets (what top_up books, what the preview
    shows): the highest tier of rule_for reached; the bonus valid on the top-up's business date and the
    bonus_valid_days - 1 after it, to the end of that business day."""
    rule = rule_for(at=at, store=store)
    tier = rule.tier_for(amount_cents) if rule else None
    if tier is None:
        return TopUpTerms(rule, None, 0, 0, 0, None)
    bonus = tier["bonus"]
    expires_at = None
    if bonus and rule.bonus_valid_days:
        expires_at = end_of_business_day(business_date(at) + timedelta(days=rule.bonus_valid_days - 1))
    return TopUpTerms(rule, tier, bonus, tier.get("points", 0), tier.get("growth", 0), expires_at)


def current_policy(at=None):
    """The stored-value policy in force at `at` (now): the newest version whose valid_from has passed, or the
    defaults (no daily limit, PIN only for members who set one, 5 wrong PINs lock it)."""
    at = at or timezone.now()
    versions = cached(
        "stored_value.policies",
        lambda: list(StoredValuePolicy.objects.order_by("-valid_from", "-id")),
        models=[StoredValuePolicy],
    )
    return next((policy for policy in versions if policy.valid_from <= at), None) or StoredValuePolicy()


def _locked_rule(rule_id):
    rule = TopUpRule.objects.select_for_update().filter(pk=rule_id).first()
    if rule is None:
        raise NotFoundError()
    return rule


def _check_rule_start(rule, *, exclude=None):
    """Two active versions for the same store may not start at the same instant."""
    if rule.is_active:
        versions = (
            TopUpRule.objects.select_for_update().filter(store_id=rule.store_id, is_active=True).exclude(pk=exclude)
        )
        check_no_overlap(versions, rule.valid_from)


def create_top_up_rule(*, actor, values):
    """Add a top-up rule. Raises OverlappingVersion, InvalidInput (tiers, dates)."""
    with transaction.atomic(durable=True):
        rule = TopUpRule(**only(values, RULE_FIELDS), created_by=actor)
        _check_rule_start(rule)
        return add(actor=actor, action="stored_value.top_up_rule.added", instance=rule, fields=RULE_FIELDS)


def change_top_up_rule(*, actor, rule_id, changes):
    """End or switch a rule in place (valid_until, is_active); its terms stay (VersionKeepsItsTerms)."""
    with transaction.atomic(durable=True):
        rule = _locked_rule(rule_id)
        changes = only(changes, RULE_FIELDS)
        if changes.get("is_active") and not rule.is_active:
            _check_rule_start(rule, exclude=rule.pk)
        change_in_place(
            actor=actor,
            action="stored_value.top_up_rule.changed",
            instance=rule,
            changes=changes,
            fixed_terms=RULE_TERMS,
        )
        return rule


def add_top_up_rule_version(*, actor, rule_id, changes):
    """A new version of a rule: the old one's values with `changes`. The old one stays as it was."""
    with transaction.atomic(durable=True):
        old = _locked_rule(rule_id)
        new = TopUpRule(**{name: getattr(old, name) for name in RULE_FIELDS}, created_by=actor)
        for name, value in only(changes, RULE_FIELDS).items():
            setattr(new, name, value)
        _check_rule_start(new)
        return add(
            actor=actor, action="stored_value.top_up_rule.versioned", instance=new, fields=RULE_FIELDS, previous=old
        )


def add_stored_value_policy(*, actor, role, values):
    """A new version of the stored-value policy from its valid_from (now or later). Admins only
    (PermissionDeniedError). Raises StartsInThePast, OverlappingVersion, InvalidInput."""
    if role != ROLE_ADMIN:
        raise PermissionDeniedError(_("Only an admin changes the stored-value policy."))
    with transaction.atomic(durable=True):
        policy = StoredValuePolicy(**only(values, POLICY_FIELDS), created_by=actor)
        policy.valid_from = version_start(values.get("valid_from"))
        versions = list(StoredValuePolicy.objects.select_for_update().order_by("-valid_from", "-id"))
        check_no_overlap(versions, policy.valid_from)
        follows = next((version for version in versions if version.valid_from < policy.valid_from), None)
        return add(
            actor=actor, action="stored_value.policy.added", instance=policy, fields=POLICY_FIELDS, previous=follows
        )
