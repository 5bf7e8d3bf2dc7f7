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

RFM_CHUNK_SQL = """
WITH net AS (
    SELECT p.member_id, p.occurred_at,
           p.amount - COALESCE((SELECT SUM(r.amount) FROM members_refund r
                                 WHERE r.purchase_id = p.id AND r.occurred_at < %(window_end)s), 0) AS net
    FROM members_purchase p
    WHERE p.member_id >= %(start)s AND p.member_id < %(stop)s AND p.occurred_at < %(window_end)s
), agg AS (
    SELECT member_id,
           MAX(occurred_at) FILTER (WHERE net > 0 AND occurred_at >= %(window_start)s) AS last_in_window,
           COUNT(*) FILTER (WHERE net > 0 AND occurred_at >= %(window_start)s) AS frequency,
           COALESCE(SUM(net) FILTER (WHERE net > 0 AND occurred_at >= %(window_start)s), 0) AS monetary,
           MAX(occurred_at) FILTER (WHERE net > 0) AS last_ever,
           COUNT(*) FILTER (WHERE net > 0) AS orders_ever
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
INSERT INTO members_rfmsnapshot (member_id, as_of, window_days, recency_days, frequency, monetary,
                                 r_score, f_score, m_score, segment, lifecycle)
SELECT member_id, %(as_of)s, %(window_days)s, recency_days, frequency, monetary, NULL, NULL, NULL, 'inactive',
       lifecycle
FROM rows
ON CONFLICT (as_of, member_id) DO UPDATE SET
    window_days = EXCLUDED.window_days, recency_days = EXCLUDED.recency_days, frequency = EXCLUDED.frequency,
    monetary = EXCLUDED.monetary, r_score = NULL, f_score = NULL, m_score = NULL, segment = 'inactive',
    lifecycle = EXCLUDED.lifecycle
"""

# Scores 1-5 with PostgreSQL's cume_dist() (equal values always get equal scores), and the eight segments by
# comparing each member's value with the mean (or median) over the members who bought in the window.
RFM_SCORE_SQL = """
WITH buyers AS (
    SELECT member_id, recency_days, frequency, monetary FROM members_rfmsnapshot
    WHERE as_of = %(as_of)s AND frequency > 0
), basis AS (
    SELECT CASE WHEN %(median)s THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY recency_days)
                ELSE AVG(recency_days) END AS recency,
           CASE WHEN %(median)s THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY frequency)
                ELSE AVG(frequency) END AS frequency,
           CASE WHEN %(median)s THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY monetary)
                ELSE AVG(monetary) END AS monetary
    FROM buyers
), scored AS (
    SELECT b.member_id,
           CEIL(5 * CUME_DIST() OVER (ORDER BY b.recency_days DESC)) AS r_score,
           CEIL(5 * CUME_DIST() OVER (ORDER BY b.frequency ASC)) AS f_score,
           CEIL(5 * CUME_DIST() OVER (ORDER BY b.monetary ASC)) AS m_score,
           b.recency_days < basis.recency AS r_high,
           b.frequency > basis.frequency AS f_high,
           b.monetary > basis.monetary AS m_high
    FROM buyers b CROSS JOIN basis
)
UPDATE members_rfmsnapshot s
SET r_score = scored.r_score, f_score = scored.f_score, m_score = scored.m_score,
    segment = CASE
        WHEN r_high AND f_high AND m_high THEN 'important_value'
        WHEN r_high AND NOT f_high AND m_high THEN 'important_develop'
        WHEN NOT r_high AND f_high AND m_high THEN 'important_retain'
        WHEN NOT r_high AND NOT f_high AND m_high THEN 'important_winback'
        WHEN r_high AND f_high AND NOT m_high THEN 'general_value'
        WHEN r_high AND NOT f_high AND NOT m_high THEN 'general_develop'
        WHEN NOT r_high AND f_high AND NOT m_high THEN 'general_retain'
        ELSE 'general_winback'
    END
FROM scored
WHERE s.as_of = %(as_of)s AND s.member_id = scored.member_id
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


def rfm_prepare(as_of, params):
    _require_postgresql("rfm")


def rfm_chunk(as_of, start, stop, params):
    """Recency, frequency, monetary and lifecycle for members in [start, stop), from purchases net of refunds
    (a fully refunded order does not count), dates in the business time zone."""
    _require_postgresql("rfm")
    with connection.cursor() as cursor:
        cursor.execute(RFM_CHUNK_SQL, _rfm_params(as_of, params, start, stop))
        return {"members": cursor.rowcount}


def rfm_finish(as_of, params):
    """Scores and segments over all members with a purchase in the window (needs the whole population)."""
    with connection.cursor() as cursor:
        cursor.execute(RFM_SCORE_SQL, {"as_of": as_of, "median": params.get("basis") == "median"})
        scored = cursor.rowcount
    return {"buyers": scored}


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
