"""Growth value and tiers: growth booked in the same transaction as the activity that earns it (the points
engine calls `on_activity` after it has locked the member's account, so growth and upgrades of one member are
serialised by that lock), the tier multiplier and birthday bonus as earn modifiers, the tier restriction of
rewards, the nightly downgrade evaluation as set-based SQL, and the marketers' writes to the ladder and the growth
policy (loyalty.versions says how they are written).

Locks (members.locking): a member's tier row is step 2 of the lock order, after her points account. Every write
of a tier row holds her account (the points engine's hooks run under it; the nightly downgrade takes the chunk's
accounts first), then locks the row with `lock_member_tiers` and writes only the columns it changes, from what
it read under the locks. So a purchase and the downgrade never both work from the same old row."""

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty import batch, events
from loyalty.clock import business_date, end_of_business_day
from loyalty.config_cache import cached
from loyalty.errors import DomainError, NotFoundError
from loyalty.versions import add, change_in_place, check_no_overlap, only, version_start
from members.models import MemberTag
from points.models import PointsAccount
from tiers.messages import notify_upgrade
from tiers.models import GrowthEntry, GrowthPolicy, MemberTier, Tier, TierChange

EVENT_WEIGHTS = {"sign_in": "per_active_day", "share": "per_share", "review": "per_review", "campaign": "per_campaign"}


class NotEligible(DomainError):
    code = "not_eligible"
    default_detail = _("The member's tier may not redeem this reward.")


def ladder():
    """The tiers, lowest rank first (cached: see loyalty.config_cache)."""
    return cached("tiers.ladder", lambda: list(Tier.objects.order_by("rank")), models=[Tier])


def entry_tier():
    tiers = ladder()
    return tiers[0] if tiers else None


def highest_tier(reached):
    """The highest tier for which `reached(tier)` holds, or None."""
    return next((tier for tier in reversed(ladder()) if reached(tier)), None)


_prefetched_rows = ContextVar("tiers.prefetched_rows", default=None)


def current_tier(member_id):
    """(tier, MemberTier or None): a member with no row is on the entry tier."""
    prefetched = _prefetched_rows.get()
    if prefetched is not None and member_id in prefetched[0]:
        row = prefetched[1].get(member_id)
    else:
        row = MemberTier.objects.filter(member_id=member_id).first()
    return tier_of(row), row


@contextmanager
def tiers_prefetched(member_ids):
    """Inside it, current_tier answers for these members from one statement (an earn prefetcher: points decides a
    chunk's birthday bonuses with the tier multiplier of each member)."""
    ids = frozenset(member_ids)
    token = _prefetched_rows.set((ids, MemberTier.objects.in_bulk(list(ids), field_name="member_id")))
    try:
        yield
    finally:
        _prefetched_rows.reset(token)


def tier_of(row):
    """The tier a MemberTier row (None: no row, the entry tier) stands for, from the cached ladder."""
    if row is None:
        return entry_tier()
    return next((tier for tier in ladder() if tier.pk == row.tier_id), None) or row.tier


def lock_member_tiers(member_ids):
    """Step 2 of the lock order (registered in `members.locking.member_lockers`): lock these members' tier rows
    in member-id order, in the caller's transaction, after their points accounts. Returns {member_id: row};
    a member on the entry tier without a row has nothing to lock (her account lock covers the row's creation)."""
    ids = sorted(set(member_ids))
    if not ids:
        return {}
    # The statement the ORM's select_for_update(no_key=True).filter(member_id__in=ids).order_by("member_id") sends,
    # without building and compiling a query on every purchase and event (batch.select; issue 14).
    rows = batch.select(
        MemberTier, f"member_id IN ({', '.join(['%s'] * len(ids))})", ids, order_by="member_id", lock="no_key"
    ).models()
    return {row.member_id: row for row in rows}


def send_tier_lock(member_id):
    """points.hooks' locked read: her tier row locked as lock_member_tiers locks it, sent in a write's opening
    round trip right after her points account's lock. The statement locks her account itself first (FOR UPDATE,
    as lock_accounts: already held by this transaction when the statement before found it, so no wait), then the
    tier row, so step 1 comes before step 2 even when her account was committed by another transaction between
    the two statements (each statement has its own snapshot) or does not exist (then nothing is locked). The
    answer keeps the row for _locked_tier_row, as the earn modifier would (one statement less after the opening)."""
    account_lock = batch.for_update(
        f"SELECT member_id FROM {PointsAccount._meta.db_table} WHERE member_id = %s"  # noqa: S608 - our table
    )
    sent = batch.select(
        MemberTier, f"member_id = %s AND member_id IN ({account_lock})", [member_id, member_id], lock="no_key"
    )

    def answer():
        rows = sent.models()
        return lambda member: _keep_tier_row(member, rows[0] if rows else None)

    return answer


def growth_policy_for(member_id, at):
    """The growth policy for a member at `at`: her tags' policies first (highest priority, newest), then the
    general one (newest valid_from that has passed). None before any policy exists."""
    policies = cached(
        "tiers.growth_policies",
        lambda: list(GrowthPolicy.objects.order_by("-valid_from", "-id")),
        models=[GrowthPolicy],
    )
    live = [policy for policy in policies if policy.valid_from <= at]
    if any(policy.tag_id for policy in live):
        tag_ids = set(MemberTag.objects.filter(member_id=member_id).values_list("tag_id", flat=True))
        persona = sorted(
            (p for p in live if p.tag_id in tag_ids), key=lambda p: (p.priority, p.valid_from, p.pk), reverse=True
        )
        if persona:
            return persona[0]
    return next((policy for policy in live if policy.tag_id is None), None)


def _floor(value):
    return int(Decimal(value).to_integral_value(ROUND_FLOOR))


def growth_for(activity, policy):
    if policy is None:
        return 0
    if activity.kind == "purchase":
        return _floor(activity.amount * policy.per_currency_unit + policy.per_order)
    if activity.kind == "event":
        weight = EVENT_WEIGHTS.get(activity.event_type)
        return _floor(getattr(policy, weight)) if weight else 0
    return 0


def window_growth(member_id, *, at, window_days):
    """Growth earned in the window ending at `at` (rolling, in business days: the last `window_days` dates)."""
    start = end_of_business_day(business_date(at) - timedelta(days=window_days))
    return (
        GrowthEntry.objects.filter(member_id=member_id, occurred_at__gte=start, occurred_at__lte=at).aggregate(
            total=Sum("value")
        )["total"]
        or 0
    )


def _purchase_growth_reversal(activity):
    """Growth reversed by a refund: cumulative and proportional, like the points (exactly all on a full refund)."""
    purchase = activity.purchase
    earned = (
        GrowthEntry.objects.filter(
            member_id=purchase.member_id, kind="purchase", reference=f"purchase:{purchase.pk}"
        ).aggregate(t=Sum("value"))["t"]
        or 0
    )
    reversed_so_far = -(
        GrowthEntry.objects.filter(
            member_id=purchase.member_id, kind="refund", reference=f"purchase:{purchase.pk}"
        ).aggregate(t=Sum("value"))["t"]
        or 0
    )
    target = _floor(Decimal(earned) * purchase.refunded_amount / purchase.amount)
    return max(target - reversed_so_far, 0)


def on_activity(activity):
    """Book the growth of an activity and upgrade at once if it crossed a threshold. Runs inside the points
    transaction (the member's account is locked). Refunds reverse growth but never downgrade at once."""
    member = activity.member
    if activity.kind == "refund":
        if activity.preview:
            return {"growth_reversed": 0}
        value = _purchase_growth_reversal(activity)
        if value:
            GrowthEntry.objects.create(
                member=member,
                kind="refund",
                value=-value,
                occurred_at=activity.occurred_at,
                reference=f"purchase:{activity.purchase.pk}",
            )
            _refresh_cached_growth(member.pk, activity.occurred_at)
        return {"growth_reversed": value}
    policy = growth_policy_for(member.pk, activity.occurred_at)
    value = growth_for(activity, policy)
    if activity.preview:
        return {"growth_awarded": value}
    change = None
    if value:
        reference = f"purchase:{activity.purchase.pk}" if activity.purchase else activity.event_type
        entry = GrowthEntry(
            member=member,
            kind=activity.kind if activity.kind == "purchase" else activity.event_type,
            value=value,
            occurred_at=activity.occurred_at,
            reference=reference,
            policy=policy,
        )
        at = timezone.now()
        growth = _book_and_count(entry, at=at, window_days=policy.window_days if policy else 365)
        change = _upgrade_if_due(member, at=at, policy=policy, growth=growth) if value > 0 else None
    return {"growth_awarded": value, "tier_change": change}


def _book_and_count(entry, *, at, window_days):
    """Write a growth entry and count the member's window growth with it (window_growth): on PostgreSQL in one
    statement (the INSERT in a CTE, whose row the count adds itself, as the statement's snapshot cannot see it),
    elsewhere the INSERT then the count."""
    if not batch.fast():
        entry.save(force_insert=True)
        return window_growth(entry.member_id, at=at, window_days=window_days)
    start = end_of_business_day(business_date(at) - timedelta(days=window_days))
    columns, params = batch.insert_columns(entry)
    table = GrowthEntry._meta.db_table
    sql = (
        f"WITH g AS (INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(params))}) "  # noqa: S608 - our table
        "RETURNING id, occurred_at, value) "
        f"SELECT (SELECT id FROM g), COALESCE((SELECT SUM(value) FROM {table} "
        "WHERE member_id = %s AND occurred_at >= %s AND occurred_at <= %s), 0) "
        "+ COALESCE((SELECT SUM(value) FROM g WHERE occurred_at >= %s AND occurred_at <= %s), 0)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, entry.member_id, start, at, start, at])
        entry.pk, total = cursor.fetchone()
    entry._state.adding, entry._state.db = False, connection.alias
    return int(total)


def book_campaign_growth(member_id, *, at, campaigns=1):
    """Growth for taking part in campaigns (SPEC §3's campaign indicator: the policy's per_campaign for each
    campaign a member first earns from). Called by campaigns inside the earn's transaction, under her account lock;
    it books the entry only: the earn's own activity (purchase or event) recounts and upgrades after it."""
    policy = growth_policy_for(member_id, at)
    value = _floor(policy.per_campaign * campaigns) if policy else 0
    if value:
        GrowthEntry.objects.create(
            member_id=member_id, kind="campaign", value=value, occurred_at=at, reference="campaign", policy=policy
        )
    return value


def book_growth(member, *, value, kind, reference, at):
    """Growth value given with something other than a points activity (a stored-value top-up's bonus growth), and
    an upgrade at once if it crossed a threshold. Runs in the caller's transaction under the member's account lock,
    her tier row locked (members.locking step 2) before any later step's rows. Returns the tier change or None."""
    if value <= 0:
        return None
    policy = growth_policy_for(member.pk, at)
    GrowthEntry.objects.create(
        member=member, kind=kind, value=value, occurred_at=at, reference=reference, policy=policy
    )
    return _upgrade_if_due(member, at=timezone.now(), policy=policy)


def _refresh_cached_growth(member_id, at):
    """Recount the cached window growth after a refund. One UPDATE of that column alone: it locks the row
    itself and does not depend on what the row said (her account lock keeps the growth entries still)."""
    policy = growth_policy_for(member_id, at)
    window = policy.window_days if policy else 365
    MemberTier.objects.filter(member_id=member_id).update(
        window_growth=window_growth(member_id, at=at, window_days=window)
    )


def _upgrade_if_due(member, *, at, policy, growth=None):
    """Recount her window growth (unless `growth` gives it, counted under the same lock) and move her up at once if
    it reaches a higher tier's entry threshold. Runs under her account lock; locks her tier row and writes only
    what changed."""
    if growth is None:
        growth = window_growth(member.pk, at=at, window_days=policy.window_days if policy else 365)
    row = _locked_tier_row(member)
    tier = tier_of(row)
    best = highest_tier(lambda candidate: candidate.entry_threshold <= growth)
    upgrade = best is not None and tier is not None and best.rank > tier.rank
    changes = {} if row is not None and row.window_growth == growth else {"window_growth": growth}
    if upgrade:
        changes.update(tier=best, since=at, hold_until=business_date(at) + timedelta(days=best.hold_days))
    if row is None:
        row = batch.insert(
            MemberTier(member=member, **({"tier": tier, "since": member.joined_at, "hold_until": None} | changes))
        )
        _keep_tier_row(member, row)
    elif changes:
        for field, value in changes.items():
            setattr(row, field, value)
        batch.update(row, [*changes, "updated_at"])
    if not upgrade:
        return None
    change = TierChange.objects.create(
        member=member,
        from_tier=tier,
        to_tier=best,
        reason="upgrade",
        growth_value=growth,
        business_date=business_date(at),
        at=at,
    )
    emit_tier_changed(change)
    notify_upgrade(member, change=change, hold_until=changes["hold_until"])  # written now, sent after commit
    return {"from": tier.code, "to": best.code, "reason": "upgrade"}


def emit_tier_changed(change):
    """The tier.changed event of a TierChange, in its transaction (tiers.jobs.EVALUATE_EVENTS_SQL writes the same
    for the nightly downgrade, set-based)."""
    events.emit(
        "tier.changed",
        {
            "member": str(change.member_id),
            "from": change.from_tier.code if change.from_tier else None,
            "to": change.to_tier.code,
            "reason": change.reason,
            "growth_value": change.growth_value,
            "business_date": change.business_date,
            "change": str(change.pk),
        },
        member_id=change.member_id,
    )


def _tier_for_earn(context):
    """current_tier for an earn modifier. An earn that writes (not a preview, nothing prefetched) runs under the
    member's account lock and may upgrade her afterwards: her tier row is locked now (members.locking step 2) and
    kept on her Member object for _upgrade_if_due, so the earn reads it once. The object lives as long as the
    service call, so the row never outlives its transaction."""
    member = context.member
    prefetched = _prefetched_rows.get()
    if context.preview or (prefetched is not None and member.pk in prefetched[0]):
        return current_tier(member.pk)
    row = _locked_tier_row(member)
    _keep_tier_row(member, row)
    return tier_of(row), row


def _service_transaction():
    """The service's own transaction block (the innermost durable atomic), or None."""
    return next((block for block in reversed(transaction.get_connection().atomic_blocks) if block.durable), None)


def _keep_tier_row(member, row):
    block = _service_transaction()
    if block is not None:
        member._locked_tier_row = (row, block)


def _locked_tier_row(member):
    """Her tier row, locked (lock_member_tiers), or the one this transaction's earn modifier locked already (kept
    with the transaction block it was locked in: a row kept by an earlier transaction is never used)."""
    kept = getattr(member, "_locked_tier_row", None)
    if kept is not None and kept[1] is _service_transaction():
        return kept[0]
    return lock_member_tiers([member.pk]).get(member.pk)


def tier_multiplier_lines(context):
    """Earn modifier: the tier's points multiplier on top of base (`tier:<code>`), and its birthday bonus."""
    tier, _ = _tier_for_earn(context)
    if tier is None:
        return []
    lines = []
    extra = _floor(Decimal(context.base_points) * (tier.points_multiplier - 1))
    if extra:
        lines.append({"source": f"tier:{tier.code}", "points": extra})
    if context.channel == "birthday" and tier.birthday_bonus:
        lines.append({"source": f"tier:{tier.code}:birthday", "points": tier.birthday_bonus})
    return lines


def check_reward_tier(member, reward):
    if reward.eligible_tiers:
        tier, _ = current_tier(member.pk)
        if tier is None or tier.code not in reward.eligible_tiers:
            raise NotEligible(tier=tier.code if tier else None, eligible=reward.eligible_tiers)


# --- Member merge ---------------------------------------------------------------------------------------------


def move_growth_and_tier(merge):
    """A member merge's tiers part (registered on members.services.merge.merge_steps), in the merge's transaction
    after both members are locked.

    Growth: every growth entry of the duplicate is mirrored, never moved (the ledger is append-only): negated on
    her and copied on the survivor with the same kind, reference, policy and occurred_at, both marked with the
    merge. So her window growth is 0 from now on, the survivor's window counts the duplicate's growth on the dates
    it was earned (it leaves the window when it would have), and a later refund of a moved purchase reverses its
    growth on the survivor. Tier: the better of the two, or the tier the combined growth reaches, whichever ranks
    highest (never lower than the survivor's own), with a TierChange "merge" when it changes; the duplicate drops
    to the entry tier (with a TierChange "merge" when she was above it)."""
    survivor, duplicate, now = merge.survivor, merge.duplicate, merge.now
    entries = list(GrowthEntry.objects.filter(member_id=duplicate.pk).order_by("id"))
    GrowthEntry.objects.bulk_create(
        [
            GrowthEntry(
                member_id=member_id,
                kind=entry.kind,
                value=sign * entry.value,
                occurred_at=entry.occurred_at,
                reference=entry.reference,
                policy_id=entry.policy_id,
                merge=merge.record,
                created_at=now,
            )
            for entry in entries
            for member_id, sign in ((duplicate.pk, -1), (survivor.pk, 1))
        ]
    )
    policy = growth_policy_for(survivor.pk, now)
    growth = window_growth(survivor.pk, at=now, window_days=policy.window_days if policy else 365)
    rows = lock_member_tiers([survivor.pk, duplicate.pk])  # taken already by the merge's lock_members: no wait
    change = _merged_tier(merge, growth, rows.get(survivor.pk), rows.get(duplicate.pk))
    _drop_duplicate_tier(merge, rows.get(duplicate.pk))
    return {
        "growth": {"entries": len(entries), "value": sum(entry.value for entry in entries), "window_growth": growth},
        "tier": change,
    }


def _merged_tier(merge, growth, row, duplicate_row):
    """The survivor's tier after a merge: the highest of hers, the duplicate's (with its hold period) and the one
    the combined growth reaches (held from today, as an upgrade). Writes only what changes; returns the change,
    or None."""
    survivor, now = merge.survivor, merge.now
    today = business_date(now)
    tier, duplicate_tier = tier_of(row), tier_of(duplicate_row)
    if tier is None:  # no ladder
        return None
    duplicate_hold = duplicate_row.hold_until if duplicate_row else None
    reached = highest_tier(lambda candidate: candidate.entry_threshold <= growth)
    candidates = [(duplicate_tier, duplicate_hold)]
    if reached is not None:
        candidates.append((reached, today + timedelta(days=reached.hold_days)))
    best = max(candidate.rank for candidate, _ in candidates)
    changes = {} if row is not None and row.window_growth == growth else {"window_growth": growth}
    if best <= tier.rank:
        target = None
        held = row.hold_until if row else None
        if duplicate_tier.rank == tier.rank and duplicate_hold and (held is None or duplicate_hold > held):
            changes["hold_until"] = duplicate_hold  # she held this tier for longer as the duplicate: that stands
    else:
        target = next(candidate for candidate, _ in candidates if candidate.rank == best)
        holds = [hold for candidate, hold in candidates if candidate.rank == best and hold is not None]
        changes.update(tier=target, since=now, hold_until=max(holds, default=None))
    if row is None:
        MemberTier.objects.create(
            member=survivor, **({"tier": tier, "since": survivor.joined_at, "hold_until": None} | changes)
        )
    elif changes:
        for field, value in changes.items():
            setattr(row, field, value)
        row.save(update_fields=[*changes, "updated_at"])
    if target is None:
        return None
    change = TierChange.objects.create(
        member=survivor,
        from_tier=tier,
        to_tier=target,
        reason="merge",
        growth_value=growth,
        business_date=today,
        at=now,
        actor=merge.actor,
    )
    emit_tier_changed(change)
    return {"from": tier.code, "to": target.code, "reason": "merge"}


def _drop_duplicate_tier(merge, row):
    """The duplicate, closed, drops to the entry tier with no hold (the nightly downgrade never looks at her)."""
    if row is None:
        return
    tier, entry = tier_of(row), entry_tier()
    changes = {"hold_until": None, "window_growth": 0}
    if entry is not None and tier is not None and tier.pk != entry.pk:
        emit_tier_changed(
            TierChange.objects.create(
                member=merge.duplicate,
                from_tier=tier,
                to_tier=entry,
                reason="merge",
                growth_value=0,
                business_date=business_date(merge.now),
                at=merge.now,
                actor=merge.actor,
            )
        )
        changes.update(tier=entry, since=merge.now)
    for field, value in changes.items():
        setattr(row, field, value)
    row.save(update_fields=[*changes, "updated_at"])


# --- The ladder and the growth policy, as marketers configure them ---------------------------------------------

TIER_FIELDS = [
    "code",
    "name",
    "rank",
    "entry_threshold",
    "retention_threshold",
    "hold_days",
    "points_multiplier",
    "birthday_bonus",
    "discount_rate",
    "free_shipping",
    "benefits",
]
GROWTH_POLICY_FIELDS = [
    "name",
    "valid_from",
    "tag",
    "priority",
    "per_currency_unit",
    "per_order",
    "per_active_day",
    "per_share",
    "per_review",
    "per_campaign",
    "window_days",
]


def create_tier(*, actor, values):
    """Add a tier to the ladder. Raises InvalidInput (code or rank taken, retention above entry, ...)."""
    with transaction.atomic(durable=True):
        return add(
            actor=actor, action="tiers.tier.added", instance=Tier(**only(values, TIER_FIELDS)), fields=TIER_FIELDS
        )


def change_tier(*, actor, tier_id, changes):
    """Change a tier in place (thresholds, benefits; only what differs is written). Members are measured against
    the new values from then on: upgrades at their next growth, downgrades at the nightly evaluation. Raises
    InvalidInput."""
    with transaction.atomic(durable=True):
        tier = Tier.objects.select_for_update().filter(pk=tier_id).first()
        if tier is None:
            raise NotFoundError()
        change_in_place(actor=actor, action="tiers.tier.changed", instance=tier, changes=only(changes, TIER_FIELDS))
        return tier


def add_growth_policy(*, actor, values):
    """A new version of the growth weights, for every member or for a tag's members, applying from its valid_from
    (now or later: a start up to a few minutes ago means now). Saved versions never change. The audit row holds
    what it changes from the version it follows. Raises StartsInThePast, OverlappingVersion, InvalidInput."""
    with transaction.atomic(durable=True):
        policy = GrowthPolicy(**only(values, GROWTH_POLICY_FIELDS), created_by=actor)
        policy.valid_from = version_start(values.get("valid_from"))
        versions = list(
            GrowthPolicy.objects.select_for_update().filter(tag_id=policy.tag_id).order_by("-valid_from", "-id")
        )
        check_no_overlap(versions, policy.valid_from)
        follows = next((version for version in versions if version.valid_from < policy.valid_from), None)
        return add(
            actor=actor,
            action="tiers.growth_policy.added",
            instance=policy,
            fields=GROWTH_POLICY_FIELDS,
            previous=follows,
        )
