"""The ledger's invariants (SPEC §2), checked in the database, chunked by member id range:

- the account's available == the sum of its entries' available_delta == the remaining of its available and debt
  lots; pending likewise with pending_delta and pending lots;
- the newest entry's balance_after == available;
- every lot's remaining == its points plus the movements on it, and no lot is over-spent (0 <= remaining <=
  points; a debt lot between points and 0);
- every transfer entry is one side of one household transfer, for its member and its amount (out: minus the
  points from the sender, in: plus the points to the receiver), so transfers move points and never make any;
- every merge entry is one of the two entries of one member merge (reference "merge:<id>"), on its duplicate or
  its survivor, and the other one is its exact opposite, so a merge moves points and never makes any.
"""

from django.db import connection

from loyalty.registry import ExtensionPoint

ledger_checks = ExtensionPoint(
    "ledger_checks",
    "check() yields one text line per broken invariant of the registering app's ledger (stored value registers "
    "its balances, entries and lots). check_ledger and the test suite's after-test check run them after points'.",
)

CHUNK_SIZE = 100_000

BALANCES_SQL = """
WITH ids AS (
    SELECT member_id FROM points_pointsaccount WHERE member_id >= %(start)s AND member_id < %(stop)s
    UNION SELECT DISTINCT member_id FROM points_ledgerentry WHERE member_id >= %(start)s AND member_id < %(stop)s
), entries AS (
    SELECT member_id, SUM(available_delta) AS available, SUM(pending_delta) AS pending, MAX(id) AS last_id
    FROM points_ledgerentry WHERE member_id >= %(start)s AND member_id < %(stop)s GROUP BY member_id
), lots AS (
    SELECT member_id,
           SUM(CASE WHEN status IN ('available', 'debt') THEN remaining ELSE 0 END) AS available,
           SUM(CASE WHEN status = 'pending' THEN remaining ELSE 0 END) AS pending
    FROM points_pointslot WHERE member_id >= %(start)s AND member_id < %(stop)s GROUP BY member_id
)
SELECT ids.member_id, a.available, a.pending, e.available, e.pending, l.available, l.pending, last.balance_after
FROM ids
LEFT JOIN points_pointsaccount a ON a.member_id = ids.member_id
LEFT JOIN entries e ON e.member_id = ids.member_id
LEFT JOIN lots l ON l.member_id = ids.member_id
LEFT JOIN points_ledgerentry last ON last.id = e.last_id
WHERE COALESCE(a.available, 0) <> COALESCE(e.available, 0)
   OR COALESCE(a.pending, 0) <> COALESCE(e.pending, 0)
   OR COALESCE(a.available, 0) <> COALESCE(l.available, 0)
   OR COALESCE(a.pending, 0) <> COALESCE(l.pending, 0)
   OR COALESCE(a.available, 0) <> COALESCE(last.balance_after, 0)
ORDER BY ids.member_id
"""

LOTS_SQL = """
SELECT l.member_id, l.id, l.status, l.points, l.remaining, COALESCE(m.moved, 0)
FROM points_pointslot l
LEFT JOIN (SELECT lot_id, SUM(points) AS moved FROM points_lotmovement GROUP BY lot_id) m ON m.lot_id = l.id
WHERE l.member_id >= %(start)s AND l.member_id < %(stop)s
  AND (
    (l.status <> 'debt' AND (l.remaining < 0 OR l.remaining > l.points))
    OR (l.status = 'debt' AND (l.remaining > 0 OR l.remaining < l.points))
    OR l.remaining <> l.points + COALESCE(m.moved, 0)
  )
ORDER BY l.member_id, l.id
"""


TRANSFERS_SQL = """
SELECT e.member_id, e.id, e.available_delta, e.pending_delta
FROM points_ledgerentry e
LEFT JOIN points_pointstransfer t_out ON t_out.out_entry_id = e.id
LEFT JOIN points_pointstransfer t_in ON t_in.in_entry_id = e.id
WHERE e.member_id >= %(start)s AND e.member_id < %(stop)s AND e.kind = 'transfer'
  AND NOT COALESCE(
    (t_out.id IS NOT NULL AND t_in.id IS NULL AND t_out.from_member_id = e.member_id
     AND e.available_delta = -t_out.points AND e.pending_delta = 0)
    OR (t_in.id IS NOT NULL AND t_out.id IS NULL AND t_in.to_member_id = e.member_id
        AND e.available_delta = t_in.points AND e.pending_delta = 0),
    FALSE)
ORDER BY e.member_id, e.id
"""


MERGES_SQL = """
SELECT e.member_id, e.id, e.available_delta, e.pending_delta
FROM points_ledgerentry e
LEFT JOIN members_membermerge m ON e.reference = 'merge:' || CAST(m.id AS TEXT)
LEFT JOIN points_ledgerentry other ON other.kind = 'merge' AND other.reference = e.reference
     AND other.member_id = CASE WHEN e.member_id = m.duplicate_id THEN m.survivor_id ELSE m.duplicate_id END
WHERE e.member_id >= %(start)s AND e.member_id < %(stop)s AND e.kind = 'merge'
  AND NOT COALESCE(
    e.member_id IN (m.duplicate_id, m.survivor_id)
    AND other.available_delta = -e.available_delta AND other.pending_delta = -e.pending_delta
    AND (SELECT COUNT(*) FROM points_ledgerentry again
         WHERE again.member_id = e.member_id AND again.kind = 'merge' AND again.reference = e.reference) = 1,
    FALSE)
ORDER BY e.member_id, e.id
"""


def member_id_ranges(tables, chunk_size):
    """[start, stop) member id ranges of `chunk_size` covering every member id in these tables (a ledger's account,
    entry and lot tables): each ledger's check walks its members chunk by chunk with them. Table names are the
    callers' constants."""
    bounds = " UNION ALL ".join(
        f"SELECT MIN(member_id) m FROM {table} UNION ALL SELECT MAX(member_id) FROM {table}"  # noqa: S608
        for table in tables
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(m), MAX(m) FROM ({bounds}) b")  # noqa: S608 - constant table names
        low, high = cursor.fetchone()
    if low is None:
        return
    for start in range(low, high + 1, chunk_size):
        yield start, start + chunk_size


def ledger_mismatches(chunk_size=CHUNK_SIZE):
    """Yield one text line per broken invariant, member by member."""
    for start, stop in member_id_ranges(["points_pointsaccount", "points_ledgerentry"], chunk_size):
        params = {"start": start, "stop": stop}
        with connection.cursor() as cursor:
            cursor.execute(BALANCES_SQL, params)
            for member, acc_av, acc_pe, ent_av, ent_pe, lot_av, lot_pe, last in cursor.fetchall():
                yield (
                    f"member {member}: account available={acc_av} pending={acc_pe}; entries "
                    f"available={ent_av} pending={ent_pe}; lots available={lot_av} pending={lot_pe}; "
                    f"last balance_after={last}"
                )
            cursor.execute(LOTS_SQL, params)
            for member, lot, status, points, remaining, moved in cursor.fetchall():
                yield (f"member {member}: lot {lot} ({status}) points={points} remaining={remaining} movements={moved}")
            cursor.execute(TRANSFERS_SQL, params)
            for member, entry, available_delta, pending_delta in cursor.fetchall():
                yield (
                    f"member {member}: transfer entry {entry} (available {available_delta:+d}, pending "
                    f"{pending_delta:+d}) is not one side of a transfer of hers with that amount"
                )
            cursor.execute(MERGES_SQL, params)
            for member, entry, available_delta, pending_delta in cursor.fetchall():
                yield (
                    f"member {member}: merge entry {entry} (available {available_delta:+d}, pending "
                    f"{pending_delta:+d}) is not one side of a merge of hers, or its other side differs"
                )


def all_ledger_mismatches():
    """Points' mismatches, then those of every ledger registered in `ledger_checks` (stored value)."""
    yield from ledger_mismatches()
    for check in ledger_checks:
        yield from check()
