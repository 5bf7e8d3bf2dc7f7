"""The tiers app's nightly job: downgrade members whose hold period has ended, for a business date, as set-based
SQL per member id chunk. It follows the lock order of members.locking: the chunk's points accounts first
(through the registry: tiers does not import points), then the tier rows."""

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty import events
from loyalty.clock import end_of_business_day
from loyalty.scheduling import JobDefinition, register_job
from members.locking import member_lockers
from tiers.messages import queue_downgrade_messages
from tiers.models import GrowthEntry, GrowthPolicy, MemberTier, TierChange
from tiers.services import emit_tier_changed, ladder, lock_member_tiers, tier_of

LOCK_BATCH = 10_000  # member ids per locking statement of a job: bounds what one statement loads


def _lock_accounts_before_tiers(member_ids):
    """For a job: take the lock-order steps that come before tiers' own (the points accounts) for these members
    (sorted), in member-id order, through the registry (tiers does not import points). Raises ValueError when
    tiers' own locker is not registered."""
    steps = list(member_lockers)
    for locker in steps[: steps.index(lock_member_tiers)]:
        for first in range(0, len(member_ids), LOCK_BATCH):
            locker(member_ids[first : first + LOCK_BATCH])


CHUNK_SIZE = 100_000

EVALUATE_SQL = """
WITH held AS (
    SELECT mt.member_id, mt.tier_id, t.rank, t.retention_threshold
    FROM tiers_membertier mt JOIN tiers_tier t ON t.id = mt.tier_id
    WHERE mt.member_id = ANY(%(member_ids)s)
      AND t.rank > 0 AND (mt.hold_until IS NULL OR mt.hold_until <= %(as_of)s)
    ORDER BY mt.member_id
    FOR NO KEY UPDATE OF mt
), growth AS (
    SELECT g.member_id, SUM(g.value) AS value FROM tiers_growthentry g JOIN held USING (member_id)
    WHERE g.occurred_at >= %(window_start)s AND g.occurred_at < %(window_end)s
    GROUP BY g.member_id
), decided AS (
    SELECT held.member_id, held.tier_id AS from_tier, held.rank AS from_rank, COALESCE(growth.value, 0) AS value,
           (SELECT t.id FROM tiers_tier t
            WHERE t.rank <= held.rank AND t.retention_threshold <= GREATEST(COALESCE(growth.value, 0), 0)
            ORDER BY t.rank DESC LIMIT 1) AS to_tier
    FROM held LEFT JOIN growth USING (member_id)
), moved AS (
    UPDATE tiers_membertier mt
    SET tier_id = d.to_tier, window_growth = d.value, updated_at = %(now)s,
        since = CASE WHEN d.to_tier <> d.from_tier THEN %(now)s ELSE mt.since END,
        hold_until = %(as_of)s + (SELECT t.hold_days FROM tiers_tier t WHERE t.id = d.to_tier)
    FROM decided d WHERE mt.member_id = d.member_id
    RETURNING mt.member_id, d.from_tier, d.to_tier, d.value
), history AS (
    INSERT INTO tiers_tierchange (member_id, from_tier_id, to_tier_id, reason, growth_value, business_date, at, actor)
    SELECT member_id, from_tier, to_tier, 'downgrade', value, %(as_of)s, %(now)s, 'job:tiers'
    FROM moved WHERE to_tier <> from_tier
    RETURNING id, member_id, from_tier_id, to_tier_id, growth_value
){events}
SELECT count(*), count(*) FILTER (WHERE to_tier <> from_tier) FROM moved
"""


# One tier.changed event per downgrade, in the same statement (added when a subscription wants them); the same data
# as tiers.services.emit_tier_changed.
EVALUATE_EVENTS_SQL = events.outbox_insert_sql(
    "tier.changed",
    member_id="history.member_id",
    data=(
        "jsonb_build_object('member', history.member_id::text, 'from', from_t.code, 'to', to_t.code, "
        "'reason', 'downgrade', 'growth_value', history.growth_value, 'business_date', %(as_of)s::date::text, "
        "'change', history.id::text)"
    ),
    source=(
        "history JOIN tiers_tier from_t ON from_t.id = history.from_tier_id "
        "JOIN tiers_tier to_t ON to_t.id = history.to_tier_id"
    ),
)


def _evaluation_window(as_of, now):
    policy = GrowthPolicy.objects.filter(tag__isnull=True, valid_from__lte=now).order_by("-valid_from").first()
    window_days = policy.window_days if policy else 365
    return end_of_business_day(as_of - timedelta(days=window_days)), end_of_business_day(as_of)


def _due(as_of):
    """Member tiers above the entry tier whose hold has ended by `as_of`: the ones the downgrade evaluates."""
    return MemberTier.objects.filter(Q(hold_until__isnull=True) | Q(hold_until__lte=as_of), tier__rank__gt=0)


def downgrade_bounds(as_of):
    due = _due(as_of)
    low = due.order_by("member_id").values_list("member_id", flat=True).first()
    high = due.order_by("-member_id").values_list("member_id", flat=True).first()
    return low, high


def downgrade_chunk(start, stop, as_of, now):
    """Evaluate the members in [start, stop) whose hold has ended. Runs in the caller's transaction.

    Lock order (members.locking): the due members' points accounts first, in member-id order, then their tier
    rows. So a purchase, refund or redemption of one of them has either committed before the evaluation reads
    her growth and tier, or waits until the chunk commits. Only members whose accounts were locked are
    evaluated, and only if they are still due under the locks (a purchase may have moved one up meanwhile)."""
    member_ids = list(
        _due(as_of)
        .filter(member_id__gte=start, member_id__lt=stop)
        .order_by("member_id")
        .values_list("member_id", flat=True)
    )
    if not member_ids:
        return {"evaluated": 0, "downgraded": 0}
    _lock_accounts_before_tiers(member_ids)
    window_start, window_end = _evaluation_window(as_of, now)
    params = {
        "member_ids": member_ids,
        "as_of": as_of,
        "now": now,
        "window_start": window_start,
        "window_end": window_end,
    }
    if connection.vendor == "postgresql":
        emitting = events.wanted("tier.changed")
        with connection.cursor() as cursor:
            # JIT off for the chunk's transaction: compiling the statement cost ~2.5 s per chunk, more than it saves.
            cursor.execute("SELECT set_config('jit', 'off', true)")
            cursor.execute(
                EVALUATE_SQL.format(events=f", emitted AS ({EVALUATE_EVENTS_SQL})" if emitting else ""), params
            )
            evaluated, downgraded = cursor.fetchone()
        if emitting and downgraded:
            events.after_set_based_emit()
    else:
        evaluated, downgraded = _evaluate_chunk_python(params)
    if downgraded:
        queue_downgrade_messages(start, stop, as_of=as_of, now=now)  # written with the chunk, sent after commit
    return {"evaluated": evaluated, "downgraded": downgraded}


def evaluate_downgrades(*, as_of, now=None, chunk_size=CHUNK_SIZE):
    """Downgrade, for business date `as_of`, members whose hold period has ended to the highest tier whose
    retention threshold their growth in the window (the `window_days` business days ending on as_of) still
    meets; members who keep their tier get a new hold period. Growth older than the window no longer counts.
    Idempotent per date: an evaluated member is held past `as_of`. Returns (evaluated, downgraded).

    PostgreSQL: one statement per member id chunk. Other databases: the same rule member by member."""
    now = now or timezone.now()
    low, high = downgrade_bounds(as_of)
    evaluated = downgraded = 0
    if low is None:
        return evaluated, downgraded
    start = low
    while start <= high:
        with transaction.atomic(durable=True):
            done = downgrade_chunk(start, start + chunk_size, as_of, now)
        evaluated += done["evaluated"]
        downgraded += done["downgraded"]
        start += chunk_size
    return evaluated, downgraded


def _evaluate_chunk_python(params):
    count = moved = 0
    for row in lock_member_tiers(params["member_ids"]).values():
        tier = tier_of(row)
        if tier.rank == 0 or (row.hold_until is not None and row.hold_until > params["as_of"]):
            continue  # moved up since the chunk was listed: no longer due
        value = (
            GrowthEntry.objects.filter(
                member_id=row.member_id, occurred_at__gte=params["window_start"], occurred_at__lt=params["window_end"]
            ).aggregate(t=Sum("value"))["t"]
            or 0
        )
        # A refund in the window of an order made before it can leave the sum below zero: count it as 0.
        target = next(
            candidate
            for candidate in reversed(ladder())
            if candidate.rank <= tier.rank and candidate.retention_threshold <= max(value, 0)
        )
        count += 1
        changed = ["window_growth", "hold_until", "updated_at"]
        if target.pk != tier.pk:
            emit_tier_changed(
                TierChange.objects.create(
                    member_id=row.member_id,
                    from_tier=tier,
                    to_tier=target,
                    reason="downgrade",
                    growth_value=value,
                    business_date=params["as_of"],
                    at=params["now"],
                    actor="job:tiers",
                )
            )
            row.tier, row.since = target, params["now"]
            changed += ["tier", "since"]
            moved += 1
        row.window_growth = value
        row.hold_until = params["as_of"] + timedelta(days=target.hold_days)
        row.save(update_fields=changed)
    return count, moved


def register_jobs():
    """Called from TiersConfig.ready()."""
    register_job(
        JobDefinition(
            name="tiers",
            description=_("Downgrade members whose hold period has ended to the tier their window growth retains."),
            bounds=lambda as_of, params: downgrade_bounds(as_of),
            run_chunk=lambda as_of, start, stop, params: downgrade_chunk(start, stop, as_of, timezone.now()),
            chunk_size=CHUNK_SIZE,
        )
    )
