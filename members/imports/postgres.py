"""PostgreSQL: COPY into temporary staging tables, merge set-based.

Lookups into the tables that grow (members, purchases, the keys seen in the run) are correlated scalar
subqueries, `(SELECT true FROM t WHERE t.key = s.key)`, not joins: PostgreSQL runs them as one index probe per
staged row, so a chunk costs the same however large the tables are (a join would hash or scan the whole table
once per chunk).
"""

import contextlib
from datetime import date, datetime
from decimal import Decimal

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from members.models import Channel, ErasedIdentity, Member, MemberStatus, Purchase
from members.services.membership import generate_member_no, generate_referral_code

from .awards import _award_points
from .rows import (
    CODE_ATTEMPTS,
    DUPLICATE_OF_LINE,
    ERASED,
    NO_UNIQUE_CODE,
    PHONE_OF_LINE,
    PHONE_TAKEN,
    UNKNOWN_MEMBER,
    AwardRow,
    ChunkOutcome,
    EncodedRows,
    MemberRow,
    PurchaseRow,
    _new_member,
)

MEMBER_TABLE = Member._meta.db_table
PURCHASE_TABLE = Purchase._meta.db_table
ERASED_TABLE = ErasedIdentity._meta.db_table
MEMBER_STAGE = "import_member_stage"
PURCHASE_STAGE = "import_purchase_stage"
READY_STAGE = "import_purchase_ready"  # purchases checked and resolved, waiting for their insert
CLAIMED_KEYS = ("external_id", "phone", "order_no")  # each has a table of the keys seen so far in the run
SEEN_TABLES = [f"import_seen_{key}" for key in CLAIMED_KEYS]
TEMP_BUFFERS = "256MB"  # the keys seen in a run of a few million rows stay in memory (default 8MB)
INSERT_ROWS = 1_000_000  # purchases inserted at once (chunks are still checked, staged and resolved one by one)

CREATE_STAGES = [
    *(f"CREATE TEMP TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, line bigint NOT NULL)" for table in SEEN_TABLES),
    f"""CREATE TEMP TABLE IF NOT EXISTS {MEMBER_STAGE} (
        line bigint NOT NULL, external_id text NOT NULL, phone text, name text NOT NULL, gender text NOT NULL,
        birthday date, email text NOT NULL, home_store_id bigint, joined_at timestamptz NOT NULL,
        consent_sms boolean NOT NULL, consent_wechat boolean NOT NULL, consent_email boolean NOT NULL,
        member_no text NOT NULL, referral_code text NOT NULL, external_id_digests text[] NOT NULL,
        phone_digests text[] NOT NULL)""",
    f"""CREATE TEMP TABLE IF NOT EXISTS {PURCHASE_STAGE} (
        line bigint NOT NULL, member_external_id text, member_phone text, order_no text NOT NULL,
        occurred_at timestamptz NOT NULL, amount numeric(14, 2) NOT NULL, store_id bigint, channel text NOT NULL,
        member_external_id_digests text[] NOT NULL, member_id bigint)""",
    f"""CREATE TEMP TABLE IF NOT EXISTS {READY_STAGE} (
        id bigint NOT NULL, member_id bigint NOT NULL, store_id bigint, order_no text NOT NULL,
        channel text NOT NULL, occurred_at timestamptz NOT NULL, amount numeric(14, 2) NOT NULL)""",
]
INSERT_MEMBERS = f"""
    INSERT INTO {MEMBER_TABLE} (member_no, referral_code, phone, external_id, name, gender, birthday, email,
        home_store_id, channel, consent_sms, consent_wechat, consent_email, status, joined_at, updated_at)
    SELECT member_no, referral_code, phone, external_id, name, gender, birthday, email,
        home_store_id, %(channel)s, consent_sms, consent_wechat, consent_email, %(status)s, joined_at, %(now)s
    FROM {MEMBER_STAGE} ORDER BY line
    ON CONFLICT DO NOTHING"""  # noqa: S608 - table names are constants; values are bound
# Every staged member now in the table: ours, or inserted meanwhile by someone else; what stays failed.
UNSTAGE_PRESENT_MEMBERS = f"""
    DELETE FROM {MEMBER_STAGE} s
    WHERE (SELECT true FROM {MEMBER_TABLE} m WHERE m.external_id = s.external_id)"""  # noqa: S608
# The erased identities are checked by one join per chunk (a row matches when any of its digests, under any
# configured key, is in the table; the digest's unique index serves the probes). A row that matches twice is
# deleted, and returned, once.
UNSTAGE_ERASED_MEMBERS = f"""
    DELETE FROM {MEMBER_STAGE} s USING {ERASED_TABLE} e
    WHERE e.digest = ANY(s.external_id_digests || s.phone_digests) RETURNING s.line"""  # noqa: S608
UNSTAGE_ERASED_MEMBERS_PURCHASES = f"""
    DELETE FROM {PURCHASE_STAGE} s USING {ERASED_TABLE} e
    WHERE s.member_id IS NULL AND e.digest = ANY(s.member_external_id_digests) RETURNING s.line"""  # noqa: S608
# Members created from purchases never take an erased phone (as they never take a taken one).
DROP_ERASED_PHONES = f"""
    UPDATE {MEMBER_STAGE} s SET phone = NULL, phone_digests = '{{}}'
    FROM {ERASED_TABLE} e WHERE e.digest = ANY(s.phone_digests)"""  # noqa: S608
UNSTAGE_TAKEN_PHONES = f"""
    DELETE FROM {MEMBER_STAGE} s
    WHERE (SELECT true FROM {MEMBER_TABLE} m WHERE m.phone = s.phone) RETURNING s.line"""  # noqa: S608
# Members created from purchases keep their phone only when no member and no earlier new member has it.
DROP_TAKEN_PHONES = f"""
    UPDATE {MEMBER_STAGE} s SET phone = NULL
    FROM (SELECT line, row_number() OVER (PARTITION BY phone ORDER BY line) AS nth
          FROM {MEMBER_STAGE} WHERE phone IS NOT NULL) r
    WHERE r.line = s.line
      AND (r.nth > 1 OR (SELECT true FROM {MEMBER_TABLE} m WHERE m.phone = s.phone))"""  # noqa: S608
UNSTAGE_IMPORTED_PURCHASES = f"""
    DELETE FROM {PURCHASE_STAGE} s
    WHERE (SELECT true FROM {PURCHASE_TABLE} p WHERE p.source = %(source)s AND p.order_no = s.order_no)"""  # noqa: S608
RESOLVE_BY_EXTERNAL_ID = f"""
    UPDATE {PURCHASE_STAGE} s
    SET member_id = (SELECT COALESCE(m.merged_into_id, m.id) FROM {MEMBER_TABLE} m
                     WHERE m.external_id = s.member_external_id)
    WHERE s.member_id IS NULL AND s.member_external_id IS NOT NULL"""  # noqa: S608
RESOLVE_BY_PHONE = f"""
    UPDATE {PURCHASE_STAGE} s
    SET member_id = (SELECT COALESCE(m.merged_into_id, m.id) FROM {MEMBER_TABLE} m WHERE m.phone = s.member_phone)
    WHERE s.member_id IS NULL AND s.member_external_id IS NULL"""  # noqa: S608
MEMBERS_TO_CREATE = f"""
    SELECT DISTINCT ON (member_external_id) member_external_id, line, member_phone, store_id, occurred_at
    FROM {PURCHASE_STAGE} WHERE member_id IS NULL AND member_external_id IS NOT NULL
    ORDER BY member_external_id, line"""  # noqa: S608
UNSTAGE_UNKNOWN_MEMBERS = f"DELETE FROM {PURCHASE_STAGE} WHERE member_id IS NULL RETURNING line"  # noqa: S608
# A chunk's purchases wait in the ready table, their ids drawn in line order (as the column default would give them
# in an insert in line order: the same ids as one insert per chunk). They are inserted INSERT_ROWS at a time in
# the order of the purchases' most random index, (member_id, occurred_at): each leaf page of that index, and each
# member row the foreign key check locks, is then visited once per insert, in order, instead of once per row at
# random (a page read, a dirtied page written back and, after each checkpoint, its full image in the WAL).
READY_PURCHASES = f"""
    INSERT INTO {READY_STAGE} (id, member_id, store_id, order_no, channel, occurred_at, amount)
    SELECT nextval(%(sequence)s::regclass), member_id, store_id, order_no, channel, occurred_at, amount
    FROM {PURCHASE_STAGE} ORDER BY line"""  # noqa: S608
INSERT_PURCHASES = f"""
    INSERT INTO {PURCHASE_TABLE} (id, member_id, store_id, source, order_no, channel, occurred_at, amount,
        refunded_amount, currency, points_awarded, points_reversed, points_used, points_used_returned, imported,
        created_at)
    SELECT id, member_id, store_id, %(source)s, order_no, channel, occurred_at, amount,
        0, %(currency)s, 0, 0, 0, 0, true, %(now)s
    FROM {READY_STAGE} ORDER BY member_id, occurred_at, id
    ON CONFLICT (source, order_no) DO NOTHING"""  # noqa: S608
STAGED_FOR_AWARD = f"""
    SELECT line, member_id, order_no, occurred_at, amount, store_id, channel
    FROM {PURCHASE_STAGE} ORDER BY line"""  # noqa: S608


COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_text_value(value):
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:  # four scans in C: cheaper than translate
        return value.translate(COPY_ESCAPES)
    return value


def _copy_array(value):  # text[]: each element quoted as an array literal wants it
    elements = ('"' + element.replace("\\", "\\\\").replace('"', '\\"') + '"' for element in value)
    return _copy_text_value("{" + ",".join(elements) + "}")


COPY_BY_TYPE = {
    str: _copy_text_value,
    int: str,
    Decimal: str,  # quantized: no exponent
    datetime: datetime.isoformat,  # ISO 8601 with its offset
    date: date.isoformat,
    bool: lambda value: "t" if value else "f",
    list: _copy_array,
    type(None): lambda value: "\\N",
}


def _copy_value(value):
    encode = COPY_BY_TYPE.get(type(value))
    if encode is None:  # a subclass: a choices enum member is a str
        encode = next(encode for kind, encode in COPY_BY_TYPE.items() if isinstance(value, kind))
    return encode(value)


def _copy_text(rows):
    """Rows as COPY's text format: what _pg_stage writes. Runs in the checking processes, not in the one that
    merges."""
    text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    return EncodedRows(text.encode(), len(rows))


def _pg_stage(cursor, table, columns, rows):
    cursor.execute(f"TRUNCATE {table}")
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        if isinstance(rows, EncodedRows):
            copy.write(rows.data)
            return
        for row in rows:
            copy.write_row(row)


def _pg_claim(cursor, *, stage, column, reason):
    """The first line with a key claims it for the whole run; later lines with the key, in this chunk or after,
    come back rejected (and leave the staging table)."""
    seen = f"import_seen_{column}"
    cursor.execute(f"""
        DELETE FROM {stage} s USING (
            SELECT d.line, COALESCE((SELECT k.line FROM {seen} k WHERE k.key = d.{column}),
                                    min(d.line) OVER (PARTITION BY d.{column})) AS first
            FROM {stage} d WHERE d.{column} IS NOT NULL
        ) c
        WHERE c.line = s.line AND c.first <> s.line
        RETURNING s.line, c.first""")  # noqa: S608 - names are constants
    rejects = [(line, _(reason) % {"line": first}) for line, first in cursor.fetchall()]
    cursor.execute(
        f"INSERT INTO {seen} (key, line) "  # noqa: S608
        f"SELECT {column}, line FROM {stage} WHERE {column} IS NOT NULL"
    )
    return rejects


def _pg_insert_staged_members(cursor):
    """Insert the staged members; a row whose drawn card number or referral code collided draws again.
    Returns (imported, inserted meanwhile by someone else, [(line, reason) of rows that could not be inserted])."""
    imported = raced = 0
    params = {"channel": Channel.IMPORT, "status": MemberStatus.ACTIVE, "now": timezone.now()}
    for _attempt in range(CODE_ATTEMPTS):
        cursor.execute(INSERT_MEMBERS, params)
        inserted = cursor.rowcount
        cursor.execute(UNSTAGE_PRESENT_MEMBERS)
        imported, raced = imported + inserted, raced + cursor.rowcount - inserted
        cursor.execute(f"SELECT line FROM {MEMBER_STAGE}")  # noqa: S608
        left = [line for (line,) in cursor.fetchall()]
        if not left:
            return imported, raced, []
        cursor.executemany(
            f"UPDATE {MEMBER_STAGE} SET member_no = %s, referral_code = %s WHERE line = %s",  # noqa: S608
            [(generate_member_no(), generate_referral_code(), line) for line in left],
        )
    cursor.execute(UNSTAGE_TAKEN_PHONES)
    failed = [(line, PHONE_TAKEN) for (line,) in cursor.fetchall()]
    cursor.execute(f"SELECT line FROM {MEMBER_STAGE}")  # noqa: S608
    return imported, raced, failed + [(line, NO_UNIQUE_CODE) for (line,) in cursor.fetchall()]


class _PostgresMerger:
    encode = staticmethod(_copy_text)

    def start(self):
        with connection.cursor() as cursor:
            # Only possible before the session's first temporary table; a session that had one keeps its size.
            with contextlib.suppress(DatabaseError), transaction.atomic():
                cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
            for statement in CREATE_STAGES:
                cursor.execute(statement)
            cursor.execute(f"TRUNCATE {', '.join(SEEN_TABLES)}")

    def flush(self):
        """The rows a merge kept back, merged after the last chunk (none here)."""
        return ChunkOutcome()

    def finish(self):
        # Temporary tables end with the session anyway; a failed run must not hide its error behind this one.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute(
                f"DROP TABLE IF EXISTS {', '.join(SEEN_TABLES)}, {MEMBER_STAGE}, {PURCHASE_STAGE}, {READY_STAGE}"
            )


class _PostgresMembers(_PostgresMerger):
    def merge(self, rows):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            _pg_stage(cursor, MEMBER_STAGE, MemberRow._fields, rows)
            rejects = _pg_claim(cursor, stage=MEMBER_STAGE, column="external_id", reason=DUPLICATE_OF_LINE)
            rejects += _pg_claim(cursor, stage=MEMBER_STAGE, column="phone", reason=PHONE_OF_LINE)
            cursor.execute(UNSTAGE_PRESENT_MEMBERS)
            skipped = cursor.rowcount
            cursor.execute(UNSTAGE_ERASED_MEMBERS)
            rejects += [(line, ERASED) for (line,) in cursor.fetchall()]
            cursor.execute(UNSTAGE_TAKEN_PHONES)
            rejects += [(line, PHONE_TAKEN) for (line,) in cursor.fetchall()]
            imported, raced, failed = _pg_insert_staged_members(cursor)
        return ChunkOutcome(imported=imported, skipped=skipped + raced, rejects=rejects + failed)


class _PostgresPurchases(_PostgresMerger):
    def __init__(self, *, source, create_members, recorder, erasure):
        self.source, self.create_members, self.recorder = source, create_members, recorder
        self.erasure = erasure

    def start(self):
        super().start()
        # A first import of a source has nothing to skip: spare a million index probes that find nothing.
        self.source_had_purchases = Purchase.objects.filter(source=self.source).exists()
        self.ready = 0  # rows in the ready table
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {READY_STAGE}")
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [PURCHASE_TABLE])
            (self.sequence,) = cursor.fetchone()

    def flush(self):
        """Insert the purchases still waiting (after the last chunk)."""
        if self.recorder or not self.ready:
            return ChunkOutcome()
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            return self._insert_ready(cursor)

    def _insert_ready(self, cursor):
        cursor.execute(
            INSERT_PURCHASES,
            {"source": self.source, "now": timezone.now(), "currency": Purchase._meta.get_field("currency").default},
        )
        imported = cursor.rowcount
        cursor.execute(f"TRUNCATE {READY_STAGE}")
        staged, self.ready = self.ready, 0
        return ChunkOutcome(imported=imported, skipped=staged - imported)  # skipped: imported meanwhile elsewhere

    def merge(self, rows):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            _pg_stage(cursor, PURCHASE_STAGE, PurchaseRow._fields, rows)
            outcome = ChunkOutcome(
                rejects=_pg_claim(cursor, stage=PURCHASE_STAGE, column="order_no", reason=DUPLICATE_OF_LINE)
            )
            if self.source_had_purchases:
                cursor.execute(UNSTAGE_IMPORTED_PURCHASES, {"source": self.source})
                outcome.skipped = cursor.rowcount
            cursor.execute(RESOLVE_BY_EXTERNAL_ID)
            cursor.execute(RESOLVE_BY_PHONE)
            if self.create_members:
                cursor.execute(UNSTAGE_ERASED_MEMBERS_PURCHASES)
                outcome.rejects += [(line, ERASED) for (line,) in cursor.fetchall()]
                outcome.members_created = self._create_members(cursor)
            cursor.execute(UNSTAGE_UNKNOWN_MEMBERS)
            outcome.rejects += [(line, UNKNOWN_MEMBER) for (line,) in cursor.fetchall()]
            if self.recorder:
                cursor.execute(STAGED_FOR_AWARD)
                to_award = [AwardRow(*row) for row in cursor.fetchall()]
            else:
                cursor.execute(READY_PURCHASES, {"sequence": self.sequence})
                self.ready += cursor.rowcount
                if self.ready >= INSERT_ROWS:
                    inserted = self._insert_ready(cursor)
                    outcome.imported, outcome.skipped = inserted.imported, outcome.skipped + inserted.skipped
        if self.recorder:
            awarded = _award_points(to_award, source=self.source, recorder=self.recorder)
            outcome.imported, outcome.skipped = awarded.imported, outcome.skipped + awarded.skipped
            outcome.rejects += awarded.rejects
        return outcome

    def _create_members(self, cursor):
        cursor.execute(MEMBERS_TO_CREATE)
        new = [
            _new_member(
                external_id, line=line, phone=phone, store_id=store_id, joined_at=joined_at, erasure=self.erasure
            )
            for external_id, line, phone, store_id, joined_at in cursor.fetchall()
        ]
        if not new:
            return 0
        _pg_stage(cursor, MEMBER_STAGE, MemberRow._fields, new)
        cursor.execute(DROP_ERASED_PHONES)
        cursor.execute(DROP_TAKEN_PHONES)
        created, _raced, _failed = _pg_insert_staged_members(cursor)  # failed ones stay unknown members
        cursor.execute(RESOLVE_BY_EXTERNAL_ID)
        cursor.execute(RESOLVE_BY_PHONE)  # a phone-only row may belong to a member just created
        return created
