"""Releasing pending points and expiring points for a business date, over all members.

On PostgreSQL this is set-based SQL, chunked by member id range, one transaction per chunk: the chunk's accounts
are locked in id order first (so it never deadlocks with a redemption, which locks one account), then one
statement moves the lots, the balances and writes the entries. On SQLite (the embedded demo default) the same
work runs member by member through the ledger primitives. Both are idempotent: a lot released or expired is no
longer due, and expiry writes at most one entry per member and date (a unique constraint).
"""

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from loyalty.clock import end_of_business_day
from points.models import LedgerEntry, LotStatus, PointsLot

from .ledger import expire_member_lots, lock_account, release_member_lots, save_account, settle_debt

CHUNK_SIZE = 50_000


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
    members, points, indebted = (_release_chunk_sql if connection.vendor == "postgresql"
                                 else _release_chunk_python)(start, stop, now)
    for member_id in indebted:
        _settle_after_release(member_id, now)
    return {"members": members, "points": points}


def release_pending(*, now=None, chunk_size=CHUNK_SIZE):
    """Make every pending lot whose pending period has ended available (one release entry per member)."""
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
    # due_condition is one of this module's constants; values are bound parameters.
    cursor.execute(
        "SELECT a.member_id FROM points_pointsaccount a WHERE a.member_id >= %s AND a.member_id < %s "  # noqa: S608
        f"AND EXISTS (SELECT 1 FROM points_pointslot l WHERE l.member_id = a.member_id AND {due_condition}) "
        "ORDER BY a.member_id FOR UPDATE",
        [start, stop, *params],
    )


RELEASE_SQL = """
WITH due AS (
    SELECT id, member_id, remaining FROM points_pointslot
    WHERE member_id >= %(start)s AND member_id < %(stop)s AND status = 'pending' AND available_at <= %(now)s
), totals AS (
    SELECT member_id, SUM(remaining) AS points FROM due GROUP BY member_id
), moved AS (
    UPDATE points_pointsaccount a
    SET available = a.available + t.points, pending = a.pending - t.points, updated_at = %(now)s
    FROM totals t WHERE a.member_id = t.member_id
    RETURNING a.member_id, a.available, a.pending, t.points
), entries AS (
    INSERT INTO points_ledgerentry (member_id, kind, points, available_delta, pending_delta, balance_after,
                                    pending_after, reason, reference, actor, created_at)
    SELECT member_id, 'release', points, points, -points, available, pending, 'pending period ended', 'release',
           'job:release_pending', %(now)s
    FROM moved WHERE points <> 0
), released AS (
    UPDATE points_pointslot l SET status = 'available' FROM due WHERE l.id = due.id
)
SELECT count(*), coalesce(sum(points), 0), coalesce(array_agg(member_id) FILTER (WHERE available - points < 0), '{}')
FROM moved
"""


def _release_chunk_sql(start, stop, now):
    with connection.cursor() as cursor:
        _lock_chunk_accounts(cursor, start, stop, "l.status = 'pending' AND l.available_at <= %s", [now])
        cursor.execute(RELEASE_SQL, {"start": start, "stop": stop, "now": now})
        members, points, indebted = cursor.fetchone()
    return members, int(points), list(indebted)


def _release_chunk_python(start, stop, now):
    member_ids = (PointsLot.objects.filter(member_id__gte=start, member_id__lt=stop, status=LotStatus.PENDING,
                                           available_at__lte=now)
                  .values_list("member_id", flat=True).distinct().order_by("member_id"))
    members = points = 0
    for member_id in list(member_ids):
        account = lock_account(member_id)
        points += release_member_lots(account, now=now)
        save_account(account)
        members += 1
    return members, points, []


def _settle_after_release(member_id, now):
    """A member who was in debt pays it from the points just released (rare: after a claw-back)."""
    account = lock_account(member_id)
    entry = LedgerEntry.objects.filter(member_id=member_id, kind="release").order_by("-id").first()
    settle_debt(account, entry)


EXPIRE_SQL = """
WITH due AS (
    SELECT l.id, l.member_id, l.remaining FROM points_pointslot l
    WHERE l.member_id >= %(start)s AND l.member_id < %(stop)s AND l.status = 'available'
      AND l.expires_at <= %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM points_ledgerentry e
                      WHERE e.member_id = l.member_id AND e.kind = 'expire' AND e.reference = %(reference)s)
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
    UPDATE points_pointslot l SET status = 'expired', remaining = 0 FROM due WHERE l.id = due.id
)
SELECT count(*), coalesce(sum(points), 0) FROM moved
"""


def expire_bounds(as_of):
    return _id_range(PointsLot.objects.filter(status=LotStatus.AVAILABLE, expires_at__lte=end_of_business_day(as_of)))


def expire_chunk(start, stop, as_of, now):
    """Expire, for members in [start, stop), what remains of lots whose last valid day is `as_of` or earlier.
    Runs in the caller's transaction."""
    cutoff = end_of_business_day(as_of)
    reference = f"expiry:{as_of.isoformat()}"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            _lock_chunk_accounts(cursor, start, stop, "l.status = 'available' AND l.expires_at <= %s", [cutoff])
            cursor.execute(EXPIRE_SQL, {"start": start, "stop": stop, "cutoff": cutoff, "now": now,
                                        "reference": reference, "reason": f"points expired on {as_of.isoformat()}"})
            members, points = cursor.fetchone()
    else:
        members = points = 0
        due = PointsLot.objects.filter(status=LotStatus.AVAILABLE, expires_at__lte=cutoff, member_id__gte=start,
                                       member_id__lt=stop)
        for member_id in list(due.values_list("member_id", flat=True).distinct().order_by("member_id")):
            account = lock_account(member_id)
            expired = expire_member_lots(account, as_of=as_of, now=now)
            save_account(account)
            members, points = members + (1 if expired else 0), points + expired
    # Lots spent to zero before their expiry are closed too (no entry: nothing was left to expire).
    PointsLot.objects.filter(member_id__gte=start, member_id__lt=stop, status=LotStatus.AVAILABLE, remaining=0,
                             expires_at__lte=cutoff).update(status=LotStatus.EXPIRED)
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
