"""The set-based SQL behind the members' nightly jobs: RFM segmentation with lifecycle stages (SPEC §4) and
rule-based tags. Chunked by member id range; idempotent per business date. PostgreSQL only: they lean on its
window functions and time-zone date arithmetic (the SQLite demo database says so instead of guessing)."""

from datetime import timedelta

from django.conf import settings
from django.db import NotSupportedError, connection
from django.utils.translation import gettext_lazy as _

from loyalty.clock import end_of_business_day, start_of_business_day
from loyalty.scheduling import JobDefinition, register_job
from members.models import Member, RfmSnapshot
from members.services import login

DEFAULT_WINDOW_DAYS = 365
NEW_MEMBER_DAYS, ACTIVE_DAYS, DORMANT_DAYS = 30, 90, 180


def _require_postgresql(job):
    if connection.vendor != "postgresql":
        raise NotSupportedError(f"The {job} job needs PostgreSQL (set DATABASE_URL).")


def member_bounds(as_of, params):
    ids = Member.objects.order_by()
    return (
        ids.order_by("id").values_list("id", flat=True).first(),
        ids.order_by("-id").values_list("id", flat=True).first(),
    )


# --- RFM ------------------------------------------------------------------------------------------------------

# The refunds are summed once per refunded purchase of the chunk (a join: refunded_amount > 0 marks them, as it is
# kept with the refund rows; refunds after the window's end do not count, so they are summed, not read off it).
# The purchases come from purchase_member_time_cover_idx alone (an index-only scan over the member id range).
RFM_CHUNK_SQL = """
WITH refunded AS (
    SELECT r.purchase_id, SUM(r.amount) AS amount
    FROM members_purchase p JOIN members_refund r ON r.purchase_id = p.id
    WHERE p.member_id >= %(start)s AND p.member_id < %(stop)s AND p.occurred_at < %(window_end)s
      AND p.refunded_amount > 0 AND r.occurred_at < %(window_end)s
    GROUP BY r.purchase_id
), net AS (  -- the orders that count: not refunded in full (a member with none has no agg row: zeros below)
    SELECT p.member_id, p.occurred_at, p.amount - COALESCE(refunded.amount, 0) AS net
    FROM members_purchase p LEFT JOIN refunded ON refunded.purchase_id = p.id
    WHERE p.member_id >= %(start)s AND p.member_id < %(stop)s AND p.occurred_at < %(window_end)s
      AND p.amount > COALESCE(refunded.amount, 0)
), agg AS (
    SELECT member_id,
           MAX(occurred_at) FILTER (WHERE occurred_at >= %(window_start)s) AS last_in_window,
           COUNT(*) FILTER (WHERE occurred_at >= %(window_start)s) AS frequency,
           COALESCE(SUM(net) FILTER (WHERE occurred_at >= %(window_start)s), 0) AS monetary,
           MAX(occurred_at) AS last_ever,
           COUNT(*) AS orders_ever
    FROM net GROUP BY member_id
), rows AS (
    SELECT m.id AS member_id,
           CASE WHEN agg.frequency > 0
                THEN %(as_of)s::date - (agg.last_in_window AT TIME ZONE %(tz)s)::date END AS recency_days,
           COALESCE(agg.frequency, 0) AS frequency,
           COALESCE(agg.monetary, 0) AS monetary,
           CASE
               WHEN m.joined_at >= %(new_since)s AND COALESCE(agg.orders_ever, 0) <= 1 THEN 'new'
               WHEN COALESCE(agg.orders_ever, 0) = 0 THEN 'never_purchased'
               WHEN %(as_of)s::date - (agg.last_ever AT TIME ZONE %(tz)s)::date <= %(active_days)s THEN 'active'
               WHEN %(as_of)s::date - (agg.last_ever AT TIME ZONE %(tz)s)::date <= %(dormant_days)s THEN 'dormant'
               ELSE 'lost'
           END AS lifecycle
    FROM members_member m LEFT JOIN agg ON agg.member_id = m.id
    WHERE m.id >= %(start)s AND m.id < %(stop)s AND m.joined_at < %(window_end)s
)
INSERT INTO members_rfmchunkvalues (as_of, member_id, recency_days, frequency, monetary, lifecycle)
SELECT %(as_of)s, member_id, recency_days, frequency, monetary, lifecycle FROM rows
ON CONFLICT (as_of, member_id) DO UPDATE SET
    recency_days = EXCLUDED.recency_days, frequency = EXCLUDED.frequency, monetary = EXCLUDED.monetary,
    lifecycle = EXCLUDED.lifecycle
"""

# Every member's snapshot row, written once: scores 1-5 with PostgreSQL's cume_dist() over the members who bought in
# the window (equal values always get equal scores), and the eight segments by comparing each buyer's value with
# the mean (or median) over them; members who did not buy get no scores and the segment "inactive". A forced re-run
# replaces the date's rows (deleted first, in the same transaction).
RFM_SCORE_SQL = """
WITH basis AS (
    SELECT CASE WHEN %(median)s THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY recency_days)
                ELSE AVG(recency_days) END AS recency,
           CASE WHEN %(median)s THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY frequency)
                ELSE AVG(frequency) END AS frequency,
           CASE WHEN %(median)s THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY monetary)
                ELSE AVG(monetary) END AS monetary
    FROM members_rfmchunkvalues WHERE as_of = %(as_of)s AND frequency > 0
), scored AS (
    SELECT v.member_id, v.recency_days, v.frequency, v.monetary, v.lifecycle,
           CEIL(5 * CUME_DIST() OVER (PARTITION BY v.frequency > 0 ORDER BY v.recency_days DESC)) AS r_score,
           CEIL(5 * CUME_DIST() OVER (PARTITION BY v.frequency > 0 ORDER BY v.frequency ASC)) AS f_score,
           CEIL(5 * CUME_DIST() OVER (PARTITION BY v.frequency > 0 ORDER BY v.monetary ASC)) AS m_score,
           v.recency_days < basis.recency AS r_high,
           v.frequency > basis.frequency AS f_high,
           v.monetary > basis.monetary AS m_high
    FROM members_rfmchunkvalues v CROSS JOIN basis
    WHERE v.as_of = %(as_of)s
)
INSERT INTO members_rfmsnapshot (member_id, as_of, window_days, recency_days, frequency, monetary,
                                 r_score, f_score, m_score, segment, lifecycle)
SELECT member_id, %(as_of)s, %(window_days)s, recency_days, frequency, monetary,
       CASE WHEN frequency > 0 THEN r_score END, CASE WHEN frequency > 0 THEN f_score END,
       CASE WHEN frequency > 0 THEN m_score END,
       CASE
           WHEN frequency = 0 THEN 'inactive'
           WHEN r_high AND f_high AND m_high THEN 'important_value'
           WHEN r_high AND NOT f_high AND m_high THEN 'important_develop'
           WHEN NOT r_high AND f_high AND m_high THEN 'important_retain'
           WHEN NOT r_high AND NOT f_high AND m_high THEN 'important_winback'
           WHEN r_high AND f_high AND NOT m_high THEN 'general_value'
           WHEN r_high AND NOT f_high AND NOT m_high THEN 'general_develop'
           WHEN NOT r_high AND f_high AND NOT m_high THEN 'general_retain'
           ELSE 'general_winback'
       END,
       lifecycle
FROM scored
ORDER BY member_id
"""


def _rfm_params(as_of, params, start=None, stop=None):
    window_days = int(params.get("window_days") or DEFAULT_WINDOW_DAYS)
    return {
        "as_of": as_of,
        "window_days": window_days,
        "start": start,
        "stop": stop,
        "tz": settings.TIME_ZONE,
        "window_start": start_of_business_day(as_of - timedelta(days=window_days - 1)),
        "window_end": end_of_business_day(as_of),
        "new_since": start_of_business_day(as_of - timedelta(days=NEW_MEMBER_DAYS)),
        "active_days": ACTIVE_DAYS,
        "dormant_days": DORMANT_DAYS,
    }


# Per transaction (SET LOCAL: the runner's chunk or finishing transaction). JIT off: compiling the chunk's
# expressions cost ~2.5 s of every ~100,000-member chunk, more than it saved. work_mem: the chunk hashes its refunds
# and aggregates (~60 MB at 100,000 members); the scoring sorts the buyers three times (~50 MB each at 1M members),
# spilling to temporary files at the server's default 4 MB. Far below the 1 GiB a job may use.
RFM_CHUNK_WORK_MEM = "128MB"
RFM_SCORE_WORK_MEM = "256MB"


def _job_session_settings(cursor, *, work_mem):
    cursor.execute("SELECT set_config('jit', 'off', true), set_config('work_mem', %s, true)", [work_mem])


def rfm_prepare(as_of, params):
    """A (re-)planned run starts from no working rows for its date (a resumed run keeps its done chunks' rows)."""
    _require_postgresql("rfm")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM members_rfmchunkvalues WHERE as_of = %s", [as_of])


def rfm_chunk(as_of, start, stop, params):
    """Recency, frequency, monetary and lifecycle for members in [start, stop), from purchases net of refunds
    (a fully refunded order does not count), dates in the business time zone."""
    _require_postgresql("rfm")
    with connection.cursor() as cursor:
        _job_session_settings(cursor, work_mem=RFM_CHUNK_WORK_MEM)
        cursor.execute(RFM_CHUNK_SQL, _rfm_params(as_of, params, start, stop))
        return {"members": cursor.rowcount}


def rfm_finish(as_of, params):
    """Scores and segments over all members with a purchase in the window (needs the whole population): the date's
    snapshot rows written once from the chunks' working rows, which are then deleted."""
    window_days = int(params.get("window_days") or DEFAULT_WINDOW_DAYS)
    with connection.cursor() as cursor:
        _job_session_settings(cursor, work_mem=RFM_SCORE_WORK_MEM)
        cursor.execute("DELETE FROM members_rfmsnapshot WHERE as_of = %s", [as_of])
        cursor.execute(
            RFM_SCORE_SQL, {"as_of": as_of, "window_days": window_days, "median": params.get("basis") == "median"}
        )
        cursor.execute(
            "SELECT count(*) FILTER (WHERE frequency > 0) FROM members_rfmchunkvalues WHERE as_of = %s", [as_of]
        )
        (buyers,) = cursor.fetchone()
        cursor.execute("DELETE FROM members_rfmchunkvalues WHERE as_of = %s", [as_of])
    return {"buyers": buyers}


def latest_rfm_date():
    """The newest business date with a completed RFM run, or None before the first."""
    from loyalty.models import JobRun, JobStatus

    return (
        JobRun.objects.filter(job="rfm", status=JobStatus.DONE)
        .order_by("-business_date")
        .values_list("business_date", flat=True)
        .first()
    )


def current_rfm(member_ids, as_of=None):
    as_of = as_of or latest_rfm_date()
    if as_of is None:
        return {}
    return {row.member_id: row for row in RfmSnapshot.objects.filter(as_of=as_of, member_id__in=member_ids)}


# --- Rule-based tags ------------------------------------------------------------------------------------------


def rule_tags_chunk(as_of, start, stop, params):
    """Recompute rule tags for members in [start, stop): add the tag where the rule holds, remove it where it
    no longer does (and everywhere for a rule tag that was switched off). `params["tags"]` limits the codes."""
    from django.utils import timezone

    from members.models import Tag, TagKind
    from members.tag_rules import InvalidRule, compile_rule

    tags = Tag.objects.filter(kind=TagKind.RULE)
    if params.get("tags"):
        tags = tags.filter(code__in=params["tags"])
    rfm_date = latest_rfm_date()
    counts = {"added": 0, "removed": 0, "invalid_rules": 0}
    with connection.cursor() as cursor:
        for tag in tags:
            if not tag.is_active:
                cursor.execute(
                    "DELETE FROM members_membertag WHERE tag_id = %s AND member_id >= %s AND member_id < %s",
                    [tag.pk, start, stop],
                )
                counts["removed"] += cursor.rowcount
                continue
            try:
                condition, condition_params = compile_rule(tag.rule, as_of=as_of, rfm_date=rfm_date)
            except InvalidRule:
                counts["invalid_rules"] += 1
                continue
            condition = f"m.status <> 'merged' AND ({condition})"  # a merged duplicate is in no segment
            cursor.execute(
                "DELETE FROM members_membertag WHERE tag_id = %s AND member_id >= %s AND member_id < %s "  # noqa: S608
                f"AND NOT EXISTS (SELECT 1 FROM members_member m WHERE m.id = members_membertag.member_id "
                f"AND {condition})",
                [tag.pk, start, stop, *condition_params],
            )
            counts["removed"] += cursor.rowcount
            cursor.execute(
                "INSERT INTO members_membertag (member_id, tag_id, added_at, added_by) "  # noqa: S608
                f"SELECT m.id, %s, %s, 'rule' FROM members_member m WHERE m.id >= %s AND m.id < %s AND {condition} "
                "ON CONFLICT (member_id, tag_id) DO NOTHING",
                [tag.pk, timezone.now(), start, stop, *condition_params],
            )
            counts["added"] += cursor.rowcount
    return counts


PURGE_CHUNK_SIZE = 100_000


def _purge_cutoff(as_of):
    """The purge for business date `as_of` deletes what ended before the end of that day (a day that has ended)."""
    return end_of_business_day(as_of)


def register_jobs():
    """Called from MembersConfig.ready()."""
    register_job(
        JobDefinition(
            name="purge_member_logins",
            description=_(
                "Delete member refresh tokens that expired before the end of the business date, and login "
                "codes and their request locks older than a day before it."
            ),
            # Chunks are ranges of refresh token ids here, not member ids; the codes go in the finishing step.
            bounds=lambda as_of, params: login.refresh_token_purge_bounds(_purge_cutoff(as_of)),
            run_chunk=lambda as_of, start, stop, params: login.purge_refresh_tokens(start, stop, _purge_cutoff(as_of)),
            finish=lambda as_of, params: login.purge_login_codes(_purge_cutoff(as_of)),
            chunk_size=PURGE_CHUNK_SIZE,
        )
    )
    register_job(
        JobDefinition(
            name="rule_tags",
            description=_("Recompute rule-based tags (their conditions compiled to SQL) for every member."),
            bounds=member_bounds,
            run_chunk=rule_tags_chunk,
            chunk_size=100_000,
        )
    )
    register_job(
        JobDefinition(
            name="rfm",
            description=_("RFM values, scores, segments and lifecycle stages as of the business date (SPEC §4)."),
            bounds=member_bounds,
            run_chunk=rfm_chunk,
            prepare=rfm_prepare,
            finish=rfm_finish,
            chunk_size=100_000,
        )
    )
