"""The nightly expiry of bonus money (the job expire_stored_value_bonus, stored_value.jobs): for members in a
[start, stop) id range, what is left of every lot's bonus whose validity ended by the end of the business date.

It writes exactly what ledger.expire_due_bonus (the lazy expiry before a member's next change) writes: one
expire_bonus entry per member (same kind, reason, reference and actor, both balances after it), one movement per
lot, the lots' bonus_remaining to zero, the account's bonus down by as much, and one stored_value.bonus_expired
event per member in the same transaction. Whichever runs first expires a lot; the other then finds nothing due, so a
re-run, a retried chunk and a lazy expiry in between never expire twice (the lots' remainders are the state).

On PostgreSQL a chunk is two locking statements (the members' points accounts, then their stored-value accounts:
steps 1 and 3 of members.locking's order, so a concurrent payment of one of them waits or is waited for) and one
statement that writes everything. Elsewhere (SQLite tests) it is a loop over the chunk's members with the same
function the lazy expiry uses."""

from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from loyalty import events
from loyalty.clock import end_of_business_day
from points.services.ledger import lock_accounts
from stored_value.models import StoredValueLot

from .ledger import (
    BONUS_EXPIRY_ACTOR,
    BONUS_EXPIRY_REASON,
    BONUS_EXPIRY_REFERENCE,
    expire_due_bonus,
    lock_stored_value_accounts,
)

CHUNK_SIZE = 50_000

LOCK_SQL = """
SELECT a.member_id FROM {table} a
WHERE a.member_id >= %(start)s AND a.member_id < %(stop)s
  AND EXISTS (SELECT 1 FROM stored_value_storedvaluelot l
              WHERE l.member_id = a.member_id AND l.bonus_remaining > 0 AND l.bonus_expires_at <= %(cutoff)s)
ORDER BY a.member_id FOR UPDATE
"""

EXPIRE_SQL = """
WITH due AS (
    SELECT l.id, l.member_id, l.bonus_remaining FROM stored_value_storedvaluelot l
    WHERE l.member_id = ANY(%(members)s) AND l.bonus_remaining > 0 AND l.bonus_expires_at <= %(cutoff)s
), totals AS (
    SELECT member_id, SUM(bonus_remaining) AS bonus FROM due GROUP BY member_id
), moved AS (
    UPDATE stored_value_storedvalueaccount a SET bonus_cents = a.bonus_cents - t.bonus, updated_at = %(now)s
    FROM totals t WHERE a.member_id = t.member_id
    RETURNING a.member_id, a.principal_cents, a.bonus_cents, t.bonus
), entries AS (
    INSERT INTO stored_value_storedvalueentry (member_id, kind, principal_delta, bonus_delta, principal_after,
                                               bonus_after, reason, reference, store_id, actor, created_at)
    SELECT member_id, 'expire_bonus', 0, -bonus, principal_cents, bonus_cents, %(reason)s, %(reference)s, NULL,
           %(actor)s, %(now)s
    FROM moved
    RETURNING id, member_id
), movements AS (
    INSERT INTO stored_value_storedvaluemovement (entry_id, lot_id, principal_cents, bonus_cents)
    SELECT entries.id, due.id, 0, -due.bonus_remaining FROM due JOIN entries USING (member_id)
), emptied AS (
    UPDATE stored_value_storedvaluelot l SET bonus_remaining = 0 FROM due WHERE l.id = due.id
){events}
SELECT count(*), coalesce(sum(bonus), 0) FROM moved
"""


def _money_sql(cents):
    return f"(({cents})::numeric / 100)::numeric(20, 2)::text"


# One stored_value.bonus_expired event per member, the data ledger.emit_entry_event gives the lazy expiry's.
EVENTS_SQL = events.outbox_insert_sql(
    "stored_value.bonus_expired",
    member_id="entries.member_id",
    data=(
        f"jsonb_build_object('member', entries.member_id::text, 'amount', {_money_sql('moved.bonus')}, "
        f"'principal', '0.00', 'bonus', {_money_sql('moved.bonus')}, 'reference', %(reference)s::text, "
        f"'balance_after', {_money_sql('moved.principal_cents + moved.bonus_cents')}, 'entry', entries.id::text)"
    ),
    source="entries JOIN moved USING (member_id)",
)


@dataclass
class BonusExpiryCounts:
    members: int = 0
    bonus_cents: int = 0
    chunks: int = 0


def _due(cutoff):
    return StoredValueLot.objects.filter(bonus_remaining__gt=0, bonus_expires_at__lte=cutoff)


def bonus_expiry_bounds(as_of):
    """The lowest and highest member id with bonus due by the end of `as_of` (None, None: nothing due)."""
    ids = _due(end_of_business_day(as_of)).order_by().values_list("member_id", flat=True)
    low = ids.order_by("member_id").first()
    return (low, ids.order_by("-member_id").first()) if low is not None else (None, None)


def expire_bonus_chunk(start, stop, as_of, now):
    """Expire, for members in [start, stop), what is left of the bonus of lots whose validity ended by the end of
    the business date `as_of`. Runs in the caller's transaction. Returns {"members", "bonus_cents"}."""
    cutoff = end_of_business_day(as_of)
    if connection.vendor != "postgresql":
        return _expire_chunk_one_by_one(start, stop, cutoff, now)
    params = {"start": start, "stop": stop, "cutoff": cutoff}
    with connection.cursor() as cursor:
        cursor.execute(LOCK_SQL.format(table="points_pointsaccount"), params)  # the members' own lock first
        cursor.execute(LOCK_SQL.format(table="stored_value_storedvalueaccount"), params)
        members = [row[0] for row in cursor.fetchall()]
        if not members:
            return {"members": 0, "bonus_cents": 0}
        emitting = events.wanted("stored_value.bonus_expired")
        cursor.execute(
            EXPIRE_SQL.format(events=f", emitted AS ({EVENTS_SQL})" if emitting else ""),
            {
                **params,
                "members": members,
                "now": now,
                "reason": BONUS_EXPIRY_REASON,
                "reference": BONUS_EXPIRY_REFERENCE,
                "actor": BONUS_EXPIRY_ACTOR,
            },
        )
        count, expired = cursor.fetchone()
    if emitting and count:
        events.after_set_based_emit()
    return {"members": count, "bonus_cents": int(expired)}


def _expire_chunk_one_by_one(start, stop, cutoff, now):
    due = _due(cutoff).filter(member_id__gte=start, member_id__lt=stop)
    members = expired = 0
    for member_id in list(due.values_list("member_id", flat=True).distinct().order_by("member_id")):
        lock_accounts([member_id], include_closed=True)
        account = lock_stored_value_accounts([member_id], include_closed=True)[member_id]
        cents = expire_due_bonus(account, now=now, cutoff=cutoff)
        members, expired = members + (1 if cents else 0), expired + cents
    return {"members": members, "bonus_cents": expired}


def expire_bonus(*, as_of, now=None, chunk_size=CHUNK_SIZE):
    """Run the whole expiry for `as_of` here, chunk by chunk, each chunk its own transaction (tests, the shell;
    the scheduled job runs the same chunks through loyalty.scheduling)."""
    now = now or timezone.now()
    counts = BonusExpiryCounts()
    low, high = bonus_expiry_bounds(as_of)
    if low is None:
        return counts
    for start in range(low, high + 1, chunk_size):
        with transaction.atomic(durable=True):
            done = expire_bonus_chunk(start, start + chunk_size, as_of, now)
        counts.members += done["members"]
        counts.bonus_cents += done["bonus_cents"]
        counts.chunks += 1
    return counts
