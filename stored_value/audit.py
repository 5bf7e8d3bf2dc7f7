"""The stored-value ledger's invariants (SPEC §9: the same as points', for both parts), checked in the database,
chunked by member id range:

- the account's principal == the sum of its entries' principal_delta == the sum of its lots' principal_remaining,
  and the same for bonus;
- the newest entry's principal_after and bonus_after == the account's balances;
- every lot's remainders == what it was credited plus the movements on it, within 0 and the credit (a CHECK too);
- every merge entry has its exact opposite on the other member of the same merge.
"""

from django.db import connection

from points.audit import member_id_ranges

CHUNK_SIZE = 100_000

BALANCES_SQL = """
WITH ids AS (
    SELECT member_id FROM stored_value_storedvalueaccount WHERE member_id >= %(start)s AND member_id < %(stop)s
    UNION SELECT member_id FROM stored_value_storedvalueentry WHERE member_id >= %(start)s AND member_id < %(stop)s
    UNION SELECT member_id FROM stored_value_storedvaluelot WHERE member_id >= %(start)s AND member_id < %(stop)s
), entries AS (
    SELECT member_id, SUM(principal_delta) AS principal, SUM(bonus_delta) AS bonus, MAX(id) AS last_id
    FROM stored_value_storedvalueentry WHERE member_id >= %(start)s AND member_id < %(stop)s GROUP BY member_id
), lots AS (
    SELECT member_id, SUM(principal_remaining) AS principal, SUM(bonus_remaining) AS bonus
    FROM stored_value_storedvaluelot WHERE member_id >= %(start)s AND member_id < %(stop)s GROUP BY member_id
)
SELECT ids.member_id, a.principal_cents, a.bonus_cents, e.principal, e.bonus, l.principal, l.bonus,
       last.principal_after, last.bonus_after
FROM ids
LEFT JOIN stored_value_storedvalueaccount a ON a.member_id = ids.member_id
LEFT JOIN entries e ON e.member_id = ids.member_id
LEFT JOIN lots l ON l.member_id = ids.member_id
LEFT JOIN stored_value_storedvalueentry last ON last.id = e.last_id
WHERE COALESCE(a.principal_cents, 0) <> COALESCE(e.principal, 0)
   OR COALESCE(a.bonus_cents, 0) <> COALESCE(e.bonus, 0)
   OR COALESCE(a.principal_cents, 0) <> COALESCE(l.principal, 0)
   OR COALESCE(a.bonus_cents, 0) <> COALESCE(l.bonus, 0)
   OR COALESCE(a.principal_cents, 0) <> COALESCE(last.principal_after, 0)
   OR COALESCE(a.bonus_cents, 0) <> COALESCE(last.bonus_after, 0)
ORDER BY ids.member_id
"""

LOTS_SQL = """
SELECT l.member_id, l.id, l.principal_cents, l.principal_remaining, l.bonus_cents, l.bonus_remaining,
       COALESCE(m.principal, 0), COALESCE(m.bonus, 0)
FROM stored_value_storedvaluelot l
LEFT JOIN (SELECT lot_id, SUM(principal_cents) AS principal, SUM(bonus_cents) AS bonus
           FROM stored_value_storedvaluemovement GROUP BY lot_id) m ON m.lot_id = l.id
WHERE l.member_id >= %(start)s AND l.member_id < %(stop)s
  AND (l.principal_remaining <> l.principal_cents + COALESCE(m.principal, 0)
       OR l.bonus_remaining <> l.bonus_cents + COALESCE(m.bonus, 0)
       OR l.principal_remaining < 0 OR l.principal_remaining > l.principal_cents
       OR l.bonus_remaining < 0 OR l.bonus_remaining > l.bonus_cents)
ORDER BY l.member_id, l.id
"""

MERGES_SQL = """
SELECT e.member_id, e.id, e.principal_delta, e.bonus_delta
FROM stored_value_storedvalueentry e
LEFT JOIN members_membermerge m ON e.reference = 'merge:' || CAST(m.id AS TEXT)
LEFT JOIN stored_value_storedvalueentry other ON other.kind = 'merge' AND other.reference = e.reference
     AND other.member_id = CASE WHEN e.member_id = m.duplicate_id THEN m.survivor_id ELSE m.duplicate_id END
WHERE e.member_id >= %(start)s AND e.member_id < %(stop)s AND e.kind = 'merge'
  AND NOT COALESCE(
    e.member_id IN (m.duplicate_id, m.survivor_id)
    AND other.principal_delta = -e.principal_delta AND other.bonus_delta = -e.bonus_delta,
    FALSE)
ORDER BY e.member_id, e.id
"""


def ledger_mismatches(chunk_size=CHUNK_SIZE):
    """Yield one text line per broken invariant of the stored-value ledger, member by member."""
    tables = ["stored_value_storedvalueaccount", "stored_value_storedvalueentry", "stored_value_storedvaluelot"]
    for start, stop in member_id_ranges(tables, chunk_size):
        params = {"start": start, "stop": stop}
        with connection.cursor() as cursor:
            cursor.execute(BALANCES_SQL, params)
            for member, acc_p, acc_b, ent_p, ent_b, lot_p, lot_b, last_p, last_b in cursor.fetchall():
                yield (
                    f"member {member}: stored value account principal={acc_p} bonus={acc_b}; entries "
                    f"principal={ent_p} bonus={ent_b}; lots principal={lot_p} bonus={lot_b}; last entry "
                    f"principal_after={last_p} bonus_after={last_b}"
                )
            cursor.execute(LOTS_SQL, params)
            for member, lot, principal, p_left, bonus, b_left, p_moved, b_moved in cursor.fetchall():
                yield (
                    f"member {member}: stored value lot {lot} principal {p_left}/{principal} (movements {p_moved}), "
                    f"bonus {b_left}/{bonus} (movements {b_moved})"
                )
            cursor.execute(MERGES_SQL, params)
            for member, entry, principal, bonus in cursor.fetchall():
                yield (
                    f"member {member}: stored value merge entry {entry} ({principal:+d}/{bonus:+d}) is not one side "
                    "of a merge of hers, or its other side differs"
                )
