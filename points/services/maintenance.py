"""Releasing pending points and expiring points for a business date, over all members.

On PostgreSQL this is set-based SQL, chunked by member id range, one transaction per chunk: the chunk's accounts
are locked in id order first (so it never deadlocks with a redemption, which locks one account), then one
statement moves the lots, the balances and writes the entries. On SQLite (the embedded demo default) the same
work runs member by member through the ledger primitives, writing the same entries (tests/points/test_release.py
compares the two). Both are idempotent: a lot released or expired is no longer due, and expiry writes at most one
entry per member and date (a unique constraint).
"""

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from loyalty import events
from loyalty.clock import end_of_business_day
from members.models import Member
from points.models import EntryKind, LedgerEntry, LotStatus, PointsLot

from .ledger import (
    RELEASE_REASON,
    expire_member_lots,
    lock_account,
    release_member_lots,
    save_account,
    settle_debt,
)

CHUNK_SIZE = 50_000
RELEASE_ACTOR = "job:release_pending"


@dataclass
class RunCounts:
    members: int = 0
    points: int = 0
    chunks: int = 0


def _id_range(queryset):
    bounds = queryset.order_by().values_list("member_id", flat=True)
    low, high = bounds.order_by("member_id").first(), bounds.order_by("-member_id").first()
    return (low, high) if low is not None else (None, None)


def _chunks(low, high, size):
    start = low
    while start <= high:
        yield start, start + size
        start += size


def release_bounds(now):
    return _id_range(PointsLot.objects.filter(status=LotStatus.PENDING, available_at__lte=now))


def release_chunk(start, stop, now):
    """Release the due pending lots of members in [start, stop). Runs in the caller's transaction."""
    if connection.vendor == "postgresql":
        return release_chunk_set_based(start, stop, now)
    return release_chunk_per_member(start, stop, now)


def release_pending(*, now=None, chunk_size=CHUNK_SIZE):
    """Make every pending lot whose pending period has ended available: one release entry per lot, naming its
    order and carrying its expiry (the same entries on every database)."""
    now = now or timezone.now()
    low, high = release_bounds(now)
    counts = RunCounts()
    if low is None:
        return counts
    for start, stop in _chunks(low, high, chunk_size):
        with transaction.atomic(durable=True):
            done = release_chunk(start, stop, now)
        counts.members += done["members"]
        counts.points += done["points"]
        counts.chunks += 1
    return counts


def _lock_chunk_accounts(cursor, start, stop, due_condition, params):
    """Lock, in member-id order, the accounts of the chunk's members with a due lot. The due lots' members are
    read once for the whole range (one scan of the lot index the due condition matches) and joined, not probed
    account by account (that read every account's lots through the member index: 4.9 s against 0.6 s for a chunk
    of 50,000 members at 10M lots)."""
    # due_condition is one of this module's constants; values are bound parameters.
    cursor.execute(
        "SELECT a.member_id FROM points_pointsaccount a WHERE a.member_id >= %s AND a.member_id < %s "  # noqa: S608
        "AND a.member_id IN (SELECT l.member_id FROM points_pointslot l "
        f"WHERE l.member_id >= %s AND l.member_id < %s AND {due_condition}) "
        "ORDER BY a.member_id FOR UPDATE",
        [start, stop, start, stop, *params],
    )


# The entries of ledger.release_member_lots, set-based: one per lot with points left, the soonest freed first,
# each with the balances after it (a running sum over the member's lots), the lot's order as its reference and
# the lot's expiry. Lots refunded in full while pending become available with no entry.
RELEASE_SQL = """
WITH due AS (
    SELECT l.id, l.member_id, l.remaining, l.available_at, l.expires_at,
           COALESCE(NULLIF(e.reference, ''), 'lot:' || l.id) AS reference
    FROM points_pointslot l JOIN points_ledgerentry e ON e.id = l.entry_id
    WHERE l.member_id >= %(start)s AND l.member_id < %(stop)s AND l.status = 'pending' AND l.available_at <= %(now)s
), totals AS (
    SELECT member_id, SUM(remaining) AS points FROM due GROUP BY member_id HAVING SUM(remaining) > 0
), moved AS (
    UPDATE points_pointsaccount a
    SET available = a.available + t.points, pending = a.pending - t.points, updated_at = %(now)s
    FROM totals t WHERE a.member_id = t.member_id
    RETURNING a.member_id, a.available - t.points AS available_before, a.pending + t.points AS pending_before,
              t.points
), entries AS (
    INSERT INTO points_ledgerentry (member_id, kind, points, available_delta, pending_delta, balance_after,
                                    pending_after, reason, reference, actor, expires_at, created_at)
    SELECT d.member_id, 'release', d.remaining, d.remaining, -d.remaining,
           m.available_before + SUM(d.remaining) OVER running, m.pending_before - SUM(d.remaining) OVER running,
           %(reason)s, d.reference, %(actor)s, d.expires_at, %(now)s
    FROM due d JOIN moved m ON m.member_id = d.member_id
    WHERE d.remaining > 0
    WINDOW running AS (PARTITION BY d.member_id ORDER BY d.available_at, d.id)
    ORDER BY d.member_id, d.available_at, d.id
), released AS (
    UPDATE points_pointslot l SET status = 'available' FROM due WHERE l.id = due.id
)
SELECT count(*), coalesce(sum(points), 0),
       coalesce(array_agg(member_id) FILTER (WHERE available_before < 0), '{}')
FROM moved
"""


def release_chunk_set_based(start, stop, now):
    """The release of members in [start, stop) in one statement (PostgreSQL), then the debts of members who were
    in debt paid from what was released. Runs in the caller's transaction, after locking the chunk's accounts."""
    with connection.cursor() as cursor:
        _lock_chunk_accounts(cursor, start, stop, "l.status = 'pending' AND l.available_at <= %s", [now])
        cursor.execute(
            RELEASE_SQL, {"start": start, "stop": stop, "now": now, "reason": RELEASE_REASON, "actor": RELEASE_ACTOR}
        )
        members, points, indebted = cursor.fetchone()
    for member_id in indebted:
        _settle_after_release(member_id)
    return {"members": members, "points": int(points)}


def release_chunk_per_member(start, stop, now):
    """The same release, member by member through ledger.release_member_lots (any database). Runs in the
    caller's transaction."""
    member_ids = (
        PointsLot.objects.filter(
            member_id__gte=start, member_id__lt=stop, status=LotStatus.PENDING, available_at__lte=now
        )
        .values_list("member_id", flat=True)
        .distinct()
        .order_by("member_id")
    )
    members = points = 0
    for member_id in list(member_ids):
        account = lock_account(member_id)
        released = release_member_lots(account, now=now, actor=RELEASE_ACTOR)
        save_account(account)
        members += 1 if released else 0
        points += released
    return {"members": members, "points": points}


def _settle_after_release(member_id):
    """A member who was in debt pays it from the points just released (rare: after a claw-back), on her last
    release entry, as release_member_lots does."""
    account = lock_account(member_id)
    entry = LedgerEntry.objects.filter(member_id=member_id, kind=EntryKind.RELEASE).order_by("-id").first()
    settle_debt(account, entry)


# The due lots with points left come from lot_spend_order_cover_idx alone (an index-only scan of the member id range;
# the lots spent to zero are closed by the statement after this one). The members of the chunk already expired for
# this date are read once (the partial unique index of expiry entries, one range scan) and hashed, instead of a
# lookup per due lot. The lots are updated in id order (= the table's order, as lots are written in time order), not
# the index's member order: the heap pages and the id, entry and purchase index pages are then each visited once,
# in sequence, instead of at random through 128 MB of shared buffers (the update of 178,000 lots: 3.0-3.7 s
# against 5.6-8.3 s for the same chunk).
EXPIRE_SQL = """
WITH due AS (
    SELECT l.id, l.member_id, l.remaining FROM points_pointslot l
    WHERE l.member_id >= %(start)s AND l.member_id < %(stop)s AND l.status = 'available'
      AND l.expires_at <= %(cutoff)s AND l.remaining <> 0
      AND l.member_id NOT IN (SELECT e.member_id FROM points_ledgerentry e
                              WHERE e.member_id >= %(start)s AND e.member_id < %(stop)s
                                AND e.kind = 'expire' AND e.reference = %(reference)s)
), totals AS (
    SELECT member_id, SUM(remaining) AS points FROM due GROUP BY member_id HAVING SUM(remaining) > 0
), moved AS (
    UPDATE points_pointsaccount a
    SET available = a.available - t.points, lifetime_expired = a.lifetime_expired + t.points, updated_at = %(now)s
    FROM totals t WHERE a.member_id = t.member_id
    RETURNING a.member_id, a.available, a.pending, t.points
), entries AS (
    INSERT INTO points_ledgerentry (member_id, kind, points, available_delta, pending_delta, balance_after,
                                    pending_after, reason, reference, actor, created_at)
    SELECT member_id, 'expire', -points, -points, 0, available, pending, %(reason)s, %(reference)s,
           'job:expire_points', %(now)s
    FROM moved
    RETURNING id, member_id
), movements AS (
    INSERT INTO points_lotmovement (entry_id, lot_id, points)
    SELECT entries.id, due.id, -due.remaining FROM due JOIN entries USING (member_id) WHERE due.remaining > 0
), expired AS (
    UPDATE points_pointslot l SET status = 'expired', remaining = 0
    FROM (SELECT id FROM due ORDER BY id) in_table_order WHERE l.id = in_table_order.id
){events}
SELECT count(*), coalesce(sum(points), 0) FROM moved
"""
# One points.expired event per member expired, in the same statement (added when a subscription wants them); the
# same data as ledger.expired_event_data.
EXPIRE_EVENTS_SQL = events.outbox_insert_sql(
    "points.expired",
    member_id="entries.member_id",
    data=(
        "jsonb_build_object('member', entries.member_id::text, 'points', moved.points, "
        "'reference', %(reference)s::text, 'entry', entries.id::text, 'date', %(as_of)s::text, "
        "'balance', moved.available)"
    ),
    source="entries JOIN moved USING (member_id)",
)


def expire_bounds(as_of):
    """The member id range the expiry goes through: from the first member with a due lot to the last member.
    The last member with a due lot is not looked for: the member index read backwards walks every lot of the newest
    members, whose lots are not due yet, before it finds one (12 s of a 92 s run at 1M members / 10M lots); the
    chunks past the last due lot find nothing through the same index."""
    due = PointsLot.objects.filter(status=LotStatus.AVAILABLE, expires_at__lte=end_of_business_day(as_of))
    low = due.order_by("member_id").values_list("member_id", flat=True).first()
    if low is None:
        return None, None
    return low, Member.objects.aggregate(high=Max("id"))["high"]


def expire_chunk(start, stop, as_of, now):
    """Expire, for members in [start, stop), what remains of lots whose last valid day is `as_of` or earlier.
    Runs in the caller's transaction."""
    cutoff = end_of_business_day(as_of)
    reference = f"expiry:{as_of.isoformat()}"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # JIT off for the chunk's transaction: compiling costs seconds per chunk, more than it saves here.
            cursor.execute("SELECT set_config('jit', 'off', true)")
            _lock_chunk_accounts(
                cursor, start, stop, "l.status = 'available' AND l.expires_at <= %s AND l.remaining <> 0", [cutoff]
            )
            emitting = events.wanted("points.expired")
            cursor.execute(
                EXPIRE_SQL.format(events=f", emitted AS ({EXPIRE_EVENTS_SQL})" if emitting else ""),
                {
                    "start": start,
                    "stop": stop,
                    "cutoff": cutoff,
                    "now": now,
                    "reference": reference,
                    "reason": f"points expired on {as_of.isoformat()}",
                    "as_of": as_of.isoformat(),
                },
            )
            members, points = cursor.fetchone()
            if emitting and members:
                events.after_set_based_emit()
    else:
        members = points = 0
        due = PointsLot.objects.filter(
            status=LotStatus.AVAILABLE, expires_at__lte=cutoff, member_id__gte=start, member_id__lt=stop
        )
        for member_id in list(due.values_list("member_id", flat=True).distinct().order_by("member_id")):
            account = lock_account(member_id)
            expired = expire_member_lots(account, as_of=as_of, now=now)
            save_account(account)
            members, points = members + (1 if expired else 0), points + expired
    # Lots spent to zero before their expiry are closed too (no entry: nothing was left to expire).
    PointsLot.objects.filter(
        member_id__gte=start, member_id__lt=stop, status=LotStatus.AVAILABLE, remaining=0, expires_at__lte=cutoff
    ).update(status=LotStatus.EXPIRED)
    return {"members": members, "points": int(points)}


def expire_points(*, as_of, now=None, chunk_size=CHUNK_SIZE):
    """Expire what remains of every lot whose last valid day is `as_of` or earlier (one entry per member)."""
    now = now or timezone.now()
    low, high = expire_bounds(as_of)
    counts = RunCounts()
    if low is None:
        return counts
    for start, stop in _chunks(low, high, chunk_size):
        with transaction.atomic(durable=True):
            done = expire_chunk(start, stop, as_of, now)
        counts.members += done["members"]
        counts.points += done["points"]
        counts.chunks += 1
    return counts
