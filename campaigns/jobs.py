"""Set-based work behind campaigns' jobs: the coupons' nightly expiry and their bulk issue to a tag's or a
segment's members (SPEC §10), both chunked by id range."""

from collections import Counter
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F, Max, Min
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from campaigns.coupon_codes import new_codes
from campaigns.models_coupons import (
    BatchStatus,
    Coupon,
    CouponBatch,
    CouponSource,
    CouponStatus,
    CouponTemplate,
    IssueOn,
)
from campaigns.services.coupons import batch_representation, validity_for
from loyalty.clock import business_date
from loyalty.scheduling import JobDefinition, register_job
from members.models import Member, MemberStatus

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
            batch.save()
            return False
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
