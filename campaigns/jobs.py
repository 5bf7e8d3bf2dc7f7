"""Set-based work behind campaigns' jobs: the coupons' nightly expiry and their bulk issue to a tag's or a
segment's members or to an uploaded list (SPEC §10), chunked by id range (a list: by its lines)."""

from collections import Counter
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F, Max, Min
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns import coupon_lists
from campaigns.coupon_codes import new_codes
from campaigns.coupon_lists import Malformed, key_of
from campaigns.models_coupons import (
    BatchStatus,
    Coupon,
    CouponBatch,
    CouponBatchLine,
    CouponBatchReject,
    CouponSource,
    CouponStatus,
    CouponTemplate,
    IssueOn,
    ListKey,
)
from campaigns.services.coupons import batch_representation, validity_for
from loyalty.clock import business_date
from loyalty.scheduling import JobDefinition, register_job
from members.models import ErasedIdentity, ErasedIdentityKind, Member, MemberStatus
from members.services.membership import erasure_keys, identity_digest

EXPIRE_CHUNK_SIZE = 200_000


def _expirable(as_of):
    return Coupon.objects.filter(status=CouponStatus.UNUSED, valid_until__lte=as_of)


def expire_coupons_bounds(as_of, params):
    """The coupon id range of unused coupons whose last day is `as_of` or earlier (one aggregate on the partial
    index coupon_unused_until_idx)."""
    bounds = _expirable(as_of).aggregate(low=Min("id"), high=Max("id"))
    return bounds["low"], bounds["high"]


def expire_coupons_chunk(as_of, start, stop, params):
    """One UPDATE: unused coupons with ids in [start, stop) whose last valid day is `as_of` or earlier become
    expired. Idempotent per date (what it leaves is still valid after `as_of`, or not unused). A coupon being
    redeemed holds its row lock: the UPDATE waits and then skips it (no longer unused)."""
    expired = (
        _expirable(as_of)
        .filter(id__gte=start, id__lt=stop)
        .update(status=CouponStatus.EXPIRED, status_changed_at=timezone.now())
    )
    return {"expired": expired}


def register_jobs():
    register_job(
        JobDefinition(
            name="expire_coupons",
            description=_("Unused coupons whose last valid day is the business date or earlier become expired."),
            bounds=expire_coupons_bounds,
            run_chunk=expire_coupons_chunk,
            chunk_size=EXPIRE_CHUNK_SIZE,
        )
    )


# --- Bulk issue (coupon batches) ---------------------------------------------------------------------------------

BATCH_CHUNK_SIZE = 50_000
INSERT_BATCH_SQL = (
    f"INSERT INTO {Coupon._meta.db_table} "  # noqa: S608 - the table name is ours
    "(code, template_id, member_id, status, valid_from, valid_until, issued_at, source, source_ref, issued_by, "
    "order_no, redeemed_source, redeemed_by) "
    "SELECT c.code, %s, c.member_id, 'unused', %s, %s, %s, %s, %s, %s, '', '', '' "
    "FROM unnest(%s::bigint[], %s::text[]) AS c(member_id, code) "
    "ON CONFLICT (code) DO NOTHING"
)


def run_coupon_batch(batch_id, chunk_size=BATCH_CHUNK_SIZE):
    """Issue a batch chunk after chunk until its members are walked (or its template stops issuing)."""
    while issue_batch_chunk(batch_id, chunk_size):
        pass
    return batch_representation(CouponBatch.objects.get(pk=batch_id))


BATCH_MEMBERS_SQL = """
    SELECT m.id, COALESCE(c.held, 0)
    FROM members_member m
    {target}
    LEFT JOIN (
        SELECT member_id,
               SUM(CASE WHEN status <> 'void' THEN 1 ELSE 0 END) AS held,
               MAX(CASE WHEN source_ref = %(reference)s THEN 1 ELSE 0 END) AS served
        FROM campaigns_coupon
        WHERE template_id = %(template)s AND member_id >= %(start)s AND member_id < %(stop)s
        GROUP BY member_id
    ) c ON c.member_id = m.id
    WHERE m.id >= %(start)s AND m.id < %(stop)s AND m.status = 'active' AND COALESCE(c.served, 0) = 0
    ORDER BY m.id
"""
TAG_TARGET = (
    "JOIN members_membertag t ON t.member_id = m.id AND t.tag_id = (SELECT id FROM members_tag WHERE code = %(tag)s)"
)
SEGMENT_TARGET = "JOIN members_rfmsnapshot r ON r.member_id = m.id AND r.as_of = %(as_of)s AND r.segment = %(segment)s"


def _batch_members(batch, template, start, stop):
    """The active members with ids in [start, stop) in the batch's tag or segment who have no coupon of this
    batch yet, in id order, as (id, coupons of the template she holds, not void): one query, whose coupon side is
    one range scan of the (template, member) index over the chunk."""
    target = TAG_TARGET if batch.tag else SEGMENT_TARGET
    parameters = {
        "reference": f"batch:{batch.pk}",
        "template": template.pk,
        "start": start,
        "stop": stop,
        "tag": batch.tag,
        "as_of": batch.rfm_as_of,
        "segment": batch.segment,
    }
    with connection.cursor() as cursor:
        cursor.execute(BATCH_MEMBERS_SQL.format(target=target), parameters)
        return cursor.fetchall()


def insert_coupons(template, member_ids, *, reference, actor, source, now, today):
    """One coupon per member id, in one INSERT ... SELECT FROM unnest(ids, codes) on PostgreSQL (a bulk_create
    elsewhere), in the caller's transaction (which holds the template's lock and moves its issued_count). A code
    that collides with one in use is skipped (ON CONFLICT DO NOTHING): the caller sees fewer inserted and serves
    that member in its next pass. Returns the number inserted."""
    if not member_ids:
        return 0
    valid_from, valid_until = validity_for(template, today)
    codes = new_codes(len(member_ids))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                INSERT_BATCH_SQL,
                [template.pk, valid_from, valid_until, now, source, reference, actor, member_ids, codes],
            )
            return cursor.rowcount
    Coupon.objects.bulk_create(
        [
            Coupon(
                code=code,
                template_id=template.pk,
                member_id=member_id,
                valid_from=valid_from,
                valid_until=valid_until,
                issued_at=now,
                source=source,
                source_ref=reference,
                issued_by=actor,
            )
            for member_id, code in zip(member_ids, codes, strict=True)
        ],
        ignore_conflicts=True,
    )
    return Coupon.objects.filter(template_id=template.pk, source_ref=reference, member_id__in=member_ids).count()


def issue_batch_chunk(batch_id, chunk_size=BATCH_CHUNK_SIZE):
    try:
        return _issue_batch_chunk(batch_id, chunk_size)
    except _CodeCollision:
        return True  # rolled back: the same lines again, with new codes


def _issue_batch_chunk(batch_id, chunk_size):
    """One chunk of a batch in one transaction: locks the batch row (one worker per batch at a time), then the
    template's (like every issue: the total quantity and the limits hold against concurrent issues), issues to
    the chunk's members within the quantity left and their limit, and moves `next_member_id` on. A chunk killed
    half-way leaves nothing (one transaction); done again, it skips members served (source_ref). Returns True
    while members remain."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        batch = (
            CouponBatch.objects.select_for_update()
            .filter(pk=batch_id, status__in=[BatchStatus.PENDING, BatchStatus.RUNNING])
            .first()
        )
        if batch is None:
            return False
        template = CouponTemplate.objects.select_for_update().get(pk=batch.template_id)
        today = business_date(now)
        if not template.is_active or (template.valid_until is not None and template.valid_until < today):
            batch.status, batch.error, batch.finished_at = BatchStatus.STOPPED, "The template stopped issuing.", now
            batch.save(update_fields=["status", "error", "finished_at"])
            CouponBatchLine.objects.filter(batch=batch).delete()  # a list's lines left: never issued now
            return False
        if batch.list_key:
            return _issue_list_chunk(batch, template, chunk_size, now, today)
        start, stop = batch.next_member_id, batch.next_member_id + chunk_size
        members = _batch_members(batch, template, start, stop)
        limit = template.per_member_limit
        eligible = [member_id for member_id, held in members if limit is None or held < limit]
        room = None if template.total_quantity is None else template.total_quantity - template.issued_count
        taken = eligible if room is None else eligible[:room]
        inserted = insert_coupons(
            template,
            taken,
            reference=f"batch:{batch.pk}",
            actor=batch.created_by,
            source=CouponSource.BULK,
            now=now,
            today=today,
        )
        CouponTemplate.objects.filter(pk=template.pk).update(issued_count=F("issued_count") + inserted)
        batch.issued += inserted
        if inserted == len(taken):  # else a code collided: this range again, its served members skipped
            batch.over_limit += len(members) - len(eligible)
            batch.over_quantity += len(eligible) - len(taken)
            batch.next_member_id = stop
        batch.status = BatchStatus.RUNNING
        if batch.next_member_id > batch.last_member_id:
            batch.status, batch.finished_at = BatchStatus.DONE, now
        batch.save()
        return batch.status == BatchStatus.RUNNING


# --- Bulk issue to an uploaded list ------------------------------------------------------------------------------
# The upload's key column is staged as CouponBatchLine rows (by COPY: campaigns.coupon_lists.stage_lines), with the
# key's stored form where it is written plainly. The job's first step reads the other lines' keys and marks the
# duplicates (prepare_list_lines), then each chunk takes a range of line numbers,
# judges them against the members and their coupons, writes the rejects, issues to the rest and deletes the
# range's lines. On PostgreSQL every step is set-based SQL; elsewhere (SQLite: development and tests) the same
# rules are applied in Python to one chunk's lines at a time.

LINES_TABLE = CouponBatchLine._meta.db_table
LOOKUP_BATCH = 500  # keys per IN (...) on SQLite (999 parameters per statement)
FALLBACK_BATCH = 5000  # lines whose key libphonenumber reads, per UPDATE


class _CodeCollision(Exception):
    """A new code collided with one in use (about 1 in 10¹⁶): the chunk is rolled back and done again."""


# The upload stores the key of each line written plainly (coupon_lists.plain_key, in Python as it is COPYed). The
# first step reads the others' (key NULL, no reason yet: libphonenumber's forms, odd whitespace, malformed) with
# key_of, streamed, and writes them in slices; then marks the duplicates. Each is one scan of the batch's lines; only
# the odd and the duplicate lines are written (an UPDATE of every line cost a new tuple each, 16 µs a line). A batch
# staged before plain_key existed has no key on any line: all of them are read here, as they were then.
ODD_LINES_SQL = f"""
    SELECT line, written FROM {LINES_TABLE}
    WHERE batch_id = %(batch)s AND key IS NULL AND reason = ''
    ORDER BY line
"""  # noqa: S608 - the table name is ours
FALLBACK_SQL = f"""
    UPDATE {LINES_TABLE} l SET key = f.key, reason = f.reason
    FROM unnest(%(lines)s::bigint[], %(keys)s::text[], %(reasons)s::text[]) AS f(line, key, reason)
    WHERE l.batch_id = %(batch)s AND l.line = f.line
"""  # noqa: S608
DUPLICATES_SQL = f"""
    UPDATE {LINES_TABLE} l SET reason = replace(%(duplicate)s, %(slot)s, d.first::text)
    FROM (
        SELECT line, first FROM (
            SELECT line, min(line) OVER (PARTITION BY key COLLATE "C") AS first
            FROM {LINES_TABLE}
            WHERE batch_id = %(batch)s AND key IS NOT NULL
        ) w
        WHERE first < line
    ) d
    WHERE l.batch_id = %(batch)s AND l.line = d.line
"""  # noqa: S608
# Per transaction of the list's steps: the sorts of a million keys (first step) or of a chunk's lines in memory,
# not in temporary files; no JIT compilation (~0.1-0.6 s a statement, for statements run once).
LIST_SETTINGS = ("SET LOCAL work_mem = '256MB'", "SET LOCAL jit = off")


def _list_settings():
    with connection.cursor() as cursor:
        for statement in LIST_SETTINGS:
            cursor.execute(statement)


def prepare_list_lines(batch):
    """A list batch's first step, once for the file, in the caller's transaction: each staged line without its key
    (not written plainly) gets its key's stored form or the reason it is malformed (key_of, streamed, in slices);
    a line whose key an earlier line has is marked a duplicate of it (a window function). Elsewhere than
    PostgreSQL, every line is read in Python."""
    if connection.vendor != "postgresql":
        return _prepare_lines_in_python(batch)
    column = ListKey(batch.list_key)
    _list_settings()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {LINES_TABLE}")  # just COPYed: its statistics may say empty (a self-join's plan)
    with connection.chunked_cursor() as odd:  # a server-side cursor: every line may be odd
        odd.execute(ODD_LINES_SQL, {"batch": batch.pk})
        while part := odd.fetchmany(FALLBACK_BATCH):
            keyed = [(line, *_key_or_reason(written, column)) for line, written in part]
            with connection.cursor() as cursor:
                cursor.execute(
                    FALLBACK_SQL,
                    {
                        "batch": batch.pk,
                        "lines": [line for line, _, _ in keyed],
                        "keys": [key for _, key, _ in keyed],
                        "reasons": [reason for _, _, reason in keyed],
                    },
                )
    with connection.cursor() as cursor:
        cursor.execute(DUPLICATES_SQL, {"batch": batch.pk, "duplicate": coupon_lists.DUPLICATE_LINE, "slot": "{}"})


def _key_or_reason(written, column):
    try:
        return key_of(written, column), ""
    except Malformed as malformed:
        return None, str(malformed)


def _prepare_lines_in_python(batch):
    first_line, changed = {}, []
    for staged in CouponBatchLine.objects.filter(batch=batch).order_by("line").iterator(chunk_size=LOOKUP_BATCH):
        staged.key, staged.reason = _key_or_reason(staged.written, batch.list_key)
        if staged.key is not None:
            if staged.key in first_line:
                staged.key, staged.reason = None, coupon_lists.DUPLICATE_LINE.format(first_line[staged.key])
            else:
                first_line[staged.key] = staged.line
        changed.append(staged)
    CouponBatchLine.objects.bulk_update(changed, ["key", "reason"], batch_size=LOOKUP_BATCH)


# One chunk of lines on PostgreSQL, in one statement: the range's lines are deleted and joined to their members
# (the key column's unique index) and to her coupons of the template (the (member, template) index), each by one
# index probe a line (LATERAL: as a join, the planner hashed all 1,000,000 members, spilling to disk, and every
# coupon of the template issued so far, for each chunk: 2.1 s under EXPLAIN ANALYZE at 1,000,000, 0.8 s with the
# probes, half of it the DELETE); each line judged, in this order: its reason from prepare_list_lines, unknown
# member, member erased (anonymised), not active, the same member as an earlier line, already issued by this batch,
# per-member limit reached, total quantity used up (the lines past the room left, in line order); the rejects
# written. Returns the members to issue to in line order, the count of rejects and of each skip, and the keys of
# the unknown members' lines.
LIST_CHUNK_SQL = f"""
    WITH chunk AS (
        DELETE FROM {LINES_TABLE}
        WHERE batch_id = %(batch)s AND line >= %(start)s AND line < %(stop)s
        RETURNING line, written, key, reason
    ),
    listed AS (
        SELECT l.line, l.written, l.key, l.reason AS prepared, m.id AS member_id, m.status
        FROM chunk l
        LEFT JOIN LATERAL (
            SELECT id, status FROM members_member WHERE {{column}} = l.key LIMIT 1
        ) m ON true
    ),
    judged AS (
        SELECT l.line, l.written, l.key, l.member_id,
               CASE WHEN l.prepared <> '' THEN l.prepared
                    WHEN l.member_id IS NULL THEN %(unknown)s
                    WHEN l.status = 'anonymised' THEN %(erased)s
                    WHEN l.status <> 'active' THEN replace(%(not_active)s, %(slot)s, l.status)
                    WHEN l.line > min(l.line) OVER (PARTITION BY l.member_id)
                        THEN replace(%(same_member)s, %(slot)s, (min(l.line) OVER (PARTITION BY l.member_id))::text)
                    WHEN h.served THEN %(already)s
                    WHEN coalesce(h.held, 0) >= %(limit)s THEN %(limit_reached)s
               END AS reason
        FROM listed l
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE status <> 'void') AS held, bool_or(source_ref = %(reference)s) AS served
            FROM campaigns_coupon
            WHERE member_id = l.member_id AND template_id = %(template)s
        ) h
    ),
    ranked AS (
        SELECT line, written, key, member_id,
               CASE WHEN reason IS NULL AND count(*) FILTER (WHERE reason IS NULL) OVER (ORDER BY line) > %(room)s
                    THEN %(quantity)s ELSE reason END AS reason
        FROM judged
    ),
    rejected AS (
        INSERT INTO campaigns_couponbatchreject (batch_id, line, key, reason)
        SELECT %(batch)s, line, written, reason FROM ranked WHERE reason IS NOT NULL
        RETURNING reason
    )
    SELECT coalesce((SELECT array_agg(member_id ORDER BY line) FROM ranked WHERE reason IS NULL), ARRAY[]::bigint[]),
           (SELECT count(*) FROM rejected),
           (SELECT count(*) FROM rejected WHERE reason = %(limit_reached)s),
           (SELECT count(*) FROM rejected WHERE reason = %(quantity)s),
           coalesce((SELECT array_agg(line) FROM ranked WHERE reason = %(unknown)s), ARRAY[]::bigint[]),
           coalesce((SELECT array_agg(key) FROM ranked WHERE reason = %(unknown)s), ARRAY[]::text[])
"""  # noqa: S608 - the table and column names are ours
NO_LIMIT = 2**31  # a per-member limit or a room no count reaches


def _judge_chunk_in_sql(batch, template, start, stop):
    """(member ids to issue to, rejects written, over limit, over quantity) of the lines [start, stop)."""
    room = NO_LIMIT if template.total_quantity is None else template.total_quantity - template.issued_count
    parameters = {
        "batch": batch.pk,
        "start": start,
        "stop": stop,
        "reference": f"batch:{batch.pk}",
        "template": template.pk,
        "limit": NO_LIMIT if template.per_member_limit is None else template.per_member_limit,
        "room": room,
        "unknown": coupon_lists.UNKNOWN_MEMBER,
        "erased": coupon_lists.ERASED,
        "not_active": coupon_lists.NOT_ACTIVE,
        "same_member": coupon_lists.DUPLICATE_MEMBER,
        "already": coupon_lists.ALREADY_ISSUED,
        "limit_reached": coupon_lists.LIMIT_REACHED,
        "quantity": coupon_lists.QUANTITY_USED_UP,
        "slot": "{}",  # where a reason's number or status goes (str.format's slot)
    }
    _list_settings()
    with connection.cursor() as cursor:
        cursor.execute(LIST_CHUNK_SQL.format(column=ListKey(batch.list_key).value), parameters)
        taken, rejected, over_limit, over_quantity, unknown_lines, unknown_keys = cursor.fetchone()
    erased = _erased_keys(batch, set(unknown_keys))
    if erased:  # an unknown key that was an erased member's: say so
        lines = [line for line, key in zip(unknown_lines, unknown_keys, strict=True) if key in erased]
        CouponBatchReject.objects.filter(batch=batch, line__in=lines).update(reason=coupon_lists.ERASED)
    return taken, rejected, over_limit, over_quantity


def _listed_members(batch, template, keyed):
    """{line: (member id, status, coupons of the template she holds (not void), served by this batch)} for the
    keyed lines [(line, key)] whose key is a member's (SQLite: the ORM, in slices)."""
    reference = f"batch:{batch.pk}"
    keys = sorted({key for _, key in keyed})
    members = {}
    for offset in range(0, len(keys), LOOKUP_BATCH):
        part = {f"{batch.list_key}__in": keys[offset : offset + LOOKUP_BATCH]}
        members.update(
            (key, (member_id, status))
            for key, member_id, status in Member.objects.filter(**part).values_list(batch.list_key, "id", "status")
        )
    ids = sorted({member_id for member_id, _ in members.values()})
    held, served = Counter(), set()
    for offset in range(0, len(ids), LOOKUP_BATCH):
        coupons = Coupon.objects.filter(template=template, member_id__in=ids[offset : offset + LOOKUP_BATCH])
        for member_id, source_ref in coupons.exclude(status=CouponStatus.VOID).values_list("member_id", "source_ref"):
            held[member_id] += 1
            if source_ref == reference:
                served.add(member_id)
    return {
        line: (members[key][0], members[key][1], held[members[key][0]], int(members[key][0] in served))
        for line, key in keyed
        if key in members
    }


def _erased_keys(batch, keys):
    """The keys (phones, external ids) of members erased on their request (ErasedIdentity digests, under every
    configured key): such a line is rejected as erased, not as unknown."""
    kind = {ListKey.PHONE: ErasedIdentityKind.PHONE, ListKey.EXTERNAL_ID: ErasedIdentityKind.EXTERNAL_ID}.get(
        batch.list_key
    )
    if kind is None or not keys:
        return set()
    secrets = [secret for _, secret in erasure_keys()]
    digests = {identity_digest(secret, kind, value): value for value in keys for secret in secrets}
    found = set()
    names = list(digests)
    for offset in range(0, len(names), LOOKUP_BATCH):
        found |= set(
            ErasedIdentity.objects.filter(digest__in=names[offset : offset + LOOKUP_BATCH]).values_list(
                "digest", flat=True
            )
        )
    return {digests[digest] for digest in found}


def _judge_lines(batch, template, lines):
    """(member ids to issue to, in line order; rejects [(line, key as written, reason)]) for a chunk's prepared
    lines [(line, key as written, key)] (each key once in the file), as LIST_CHUNK_SQL judges them (SQLite)."""
    keyed = [(line, key) for line, _, key in lines]
    found = _listed_members(batch, template, keyed)
    erased = _erased_keys(batch, [key for line, key in keyed if line not in found])
    limit = template.per_member_limit
    room = None if template.total_quantity is None else template.total_quantity - template.issued_count
    taken, member_line, rejects = [], {}, []
    for line, raw, key in lines:
        reason = None
        if line not in found:
            reason = coupon_lists.ERASED if key in erased else coupon_lists.UNKNOWN_MEMBER
        else:
            member_id, status, held, served = found[line]
            if status == MemberStatus.ANONYMISED:
                reason = coupon_lists.ERASED
            elif status != MemberStatus.ACTIVE:
                reason = coupon_lists.NOT_ACTIVE.format(status)
            elif member_id in member_line:
                reason = coupon_lists.DUPLICATE_MEMBER.format(member_line[member_id])
            elif served:
                reason = coupon_lists.ALREADY_ISSUED
            elif limit is not None and held >= limit:
                reason = coupon_lists.LIMIT_REACHED
            elif room is not None and len(taken) >= room:
                reason = coupon_lists.QUANTITY_USED_UP
            else:
                taken.append(member_id)
                member_line[member_id] = line
        if reason is not None:
            rejects.append((line, raw, reason))
    return taken, rejects


def _judge_chunk_in_python(batch, template, start, stop):
    staged = CouponBatchLine.objects.filter(batch=batch, line__gte=start, line__lt=stop).order_by("line")
    lines = list(staged.values_list("line", "written", "key", "reason"))
    taken, rejects = _judge_lines(batch, template, [(line, raw, key) for line, raw, key, reason in lines if not reason])
    rejects += [(line, raw, reason) for line, raw, _, reason in lines if reason]
    CouponBatchReject.objects.bulk_create(
        [CouponBatchReject(batch=batch, line=line, key=raw, reason=reason) for line, raw, reason in rejects],
        batch_size=LOOKUP_BATCH,
    )
    staged.delete()
    reasons = Counter(reason for _, _, reason in rejects)
    return taken, len(rejects), reasons[coupon_lists.LIMIT_REACHED], reasons[coupon_lists.QUANTITY_USED_UP]


PROGRESS_FIELDS = ("status", "next_member_id", "issued", "over_limit", "over_quantity", "rejected", "finished_at")


def _issue_list_chunk(batch, template, chunk_size, now, today):
    """issue_batch_chunk for a list batch, in its transaction. The first step reads the keys of the whole file
    (prepare_list_lines); each next one takes the lines numbered [next_member_id, + chunk_size), judges them
    set-based, inserts their coupons as a tag batch does (insert_coupons, under the template's lock), writes
    their rejects and deletes them."""
    if not batch.lines_prepared:
        prepare_list_lines(batch)
        batch.lines_prepared, batch.status = True, BatchStatus.RUNNING
        batch.save(update_fields=["lines_prepared", "status"])
        return True
    start, stop = batch.next_member_id, batch.next_member_id + chunk_size
    judge = _judge_chunk_in_sql if connection.vendor == "postgresql" else _judge_chunk_in_python
    taken, rejected, over_limit, over_quantity = judge(batch, template, start, stop)
    inserted = insert_coupons(
        template,
        taken,
        reference=f"batch:{batch.pk}",
        actor=batch.created_by,
        source=CouponSource.BULK,
        now=now,
        today=today,
    )
    if inserted != len(taken):
        raise _CodeCollision()
    CouponTemplate.objects.filter(pk=template.pk).update(issued_count=F("issued_count") + inserted)
    batch.issued += inserted
    batch.rejected += rejected
    batch.over_limit += over_limit
    batch.over_quantity += over_quantity
    batch.next_member_id = stop
    batch.status = BatchStatus.RUNNING
    if batch.next_member_id > batch.last_member_id:
        batch.status, batch.finished_at = BatchStatus.DONE, now
    batch.save(update_fields=PROGRESS_FIELDS)
    return batch.status == BatchStatus.RUNNING


# --- Birthday coupons (a source of the reminders job) ------------------------------------------------------------


def _birthday_members(as_of, start, stop):
    """Active members in [start, stop) whose birthday is `as_of` (29 February: on the 28th in other years), as
    points' birthday greeting picks them."""
    days = [as_of.day]
    if as_of.month == 2 and as_of.day == 28 and (as_of + timedelta(days=1)).month == 3:
        days = [28, 29]
    members = Member.objects.filter(
        pk__gte=start, pk__lt=stop, status=MemberStatus.ACTIVE, birthday__month=as_of.month, birthday__day__in=days
    )
    return list(members.order_by("pk").values_list("pk", flat=True))


def birthday_coupons(as_of, start, stop, now):
    """ReminderSource of the reminders job, in its chunk's transaction: each active template flagged `birthday`
    issues a coupon to the chunk's members whose birthday is `as_of`, once per member, template and year
    (source_ref `birthday:<year>`), within the per-member limit and the quantity left (locks the template row).
    Writes coupons only: the birthday greeting is points'. Returns no messages."""
    templates = CouponTemplate.objects.filter(is_active=True, issue_on=IssueOn.BIRTHDAY).order_by("id")
    template_ids = list(templates.values_list("id", flat=True))
    members = _birthday_members(as_of, start, stop) if template_ids else []
    if not members:
        return []
    reference, today = f"birthday:{as_of.year}", business_date(now)
    for template_id in template_ids:
        template = CouponTemplate.objects.select_for_update().get(pk=template_id)
        if template.valid_until is not None and template.valid_until < today:
            continue
        held = list(
            Coupon.objects.filter(template=template, member_id__in=members)
            .exclude(status=CouponStatus.VOID)
            .values_list("member_id", "source_ref")
        )
        served = {member_id for member_id, source_ref in held if source_ref == reference}
        counts = Counter(member_id for member_id, _ in held)
        limit = template.per_member_limit
        eligible = [m for m in members if m not in served and (limit is None or counts[m] < limit)]
        if template.total_quantity is not None:
            eligible = eligible[: max(template.total_quantity - template.issued_count, 0)]
        inserted = insert_coupons(
            template,
            eligible,
            reference=reference,
            actor="birthday",
            source=CouponSource.BIRTHDAY,
            now=now,
            today=today,
        )
        CouponTemplate.objects.filter(pk=template.pk).update(issued_count=F("issued_count") + inserted)
    return []
