"""The `snapshot` job (SPEC §6, §7; 04:00, after rfm and tiers): one business date's aggregates, stored so that the
reports and the dashboard read a few hundred rows per day instead of the raw tables.

For a business date D (its end: 00:00 of D+1 in the business time zone):
- members (reports.MemberSnapshot, chunked by member id range): members at the end of D per home store, tier,
  RFM segment and lifecycle stage, with those who joined on D (new) and those with a purchase on D (active). A
  member merged into another before the end of D is not counted. Her tier is the one she held at the end of D:
  the from_tier of her first tier change after it, else her current tier, else the entry tier (rank 0). Segment
  and lifecycle come from the newest finished RFM run on or before D ("" before the first).
- recency (reports.MemberRecencySnapshot, same chunks): members per home store and the date of their last
  purchase among the RECENCY_DAYS days up to D, so that the members active in a period ending on D are counted
  exactly (each once) from a few rows.
- points flow (reports.PointsFlowSnapshot): the ledger entries written on D summed per store, channel and kind.
- stored-value flow (reports.StoredValueFlowSnapshot): the stored-value ledger entries written on D summed per store
  and kind (what the stored-value report's rows are made of).
- liability (reports.SnapshotDay): the sums of available_delta and pending_delta over every ledger entry written
  before the end of D (the balances as they were then, whatever happened since).
- expiry forecast (reports.ExpiryForecastSnapshot): points due to expire after D by the month of their last valid
  day, for the 12 months from D+1, each lot's remaining as it was at the end of D (its remaining now less the
  movements of entries written since).
- segment moves (reports.SegmentMoveSnapshot): the matrices of the usual ranges ending on D (SEGMENT_MOVE_SPANS).

Idempotent per date: `prepare` deletes the date's rows, the chunks write partial rows (work and done mark in one
transaction, by the runner), and `finish` merges them and writes the rest and the SnapshotDay row in the
finishing transaction; a re-run (`--force`) replaces the date's rows, never adds to them. Back-fill with
`run_job snapshot --as-of D1 --to D2`. Set-based SQL on PostgreSQL and SQLite alike (dates are cut by bound
instants; the one date cast is the database's own).
"""

from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import connection
from django.utils.translation import gettext_lazy as _

from loyalty.clock import end_of_business_day, start_of_business_day
from loyalty.models import JobRun, JobStatus
from loyalty.scheduling import JobDefinition, register_job
from members.jobs import member_bounds
from reports.models import (
    ExpiryForecastSnapshot,
    MemberDaySnapshot,
    MemberRecencySnapshot,
    MemberSnapshot,
    PointsFlowSnapshot,
    SnapshotDay,
    StoredValueFlowSnapshot,
)

JOB = "snapshot"
CHUNK_SIZE = 100_000
RECENCY_DAYS = 93  # periods of up to a quarter (90 days and a little) are counted from the recency rows
FORECAST_MONTHS = 12
# The ranges whose segment moves the job prepares for D: D-1 → D, and the 7-, 30- and 90-day ranges ending on D.
SEGMENT_MOVE_SPANS = (1, 6, 29, 89)


def business_date_sql(column):
    """SQL for the business date of a timestamp column (named parameters %(tz)s and %(db_tz)s, see sql_params)."""
    if connection.vendor == "postgresql":
        return f"(({column}) AT TIME ZONE %(tz)s)::date"
    return f"django_datetime_cast_date({column}, %(tz)s, %(db_tz)s)"


def sql_params(**values):
    """Bound parameters for this module's SQL: instants as the database stores them, plus the time zones."""
    adapt = connection.ops.adapt_datetimefield_value
    params = {key: adapt(value) if hasattr(value, "tzinfo") else value for key, value in values.items()}
    return {**params, "tz": settings.TIME_ZONE, "db_tz": connection.timezone_name}


def day_bounds(as_of):
    return start_of_business_day(as_of), end_of_business_day(as_of)


def rfm_date_on_or_before(day):
    """The newest business date on or before `day` with a finished RFM run, or None."""
    return (
        JobRun.objects.filter(job="rfm", status=JobStatus.DONE, business_date__lte=day)
        .order_by("-business_date")
        .values_list("business_date", flat=True)
        .first()
    )


def entry_tier_id():
    from tiers.models import Tier

    return Tier.objects.filter(rank=0).values_list("id", flat=True).first()


# --- Members (per chunk of member ids) --------------------------------------------------------------------------

# A member counts from the instant she joined until she was merged into another member.
MEMBER_COUNTED = """m.joined_at < %(end)s
  AND NOT EXISTS (SELECT 1 FROM members_membermerge mm WHERE mm.duplicate_id = m.id AND mm.created_at < %(end)s)"""

# Members [start, stop) at the end of the day per home store, tier, segment and lifecycle stage (home_store_id,
# tier, segment, lifecycle, members, new_members, active_members); reports.core reads it for a day without snapshot.
MEMBER_GROUPS_SELECT = f"""
SELECT m.home_store_id, COALESCE(t.code, '') AS tier, COALESCE(r.segment, '') AS segment,
       COALESCE(r.lifecycle, '') AS lifecycle, COUNT(*) AS members,
       SUM(CASE WHEN m.joined_at >= %(day_start)s THEN 1 ELSE 0 END) AS new_members,
       COUNT(b.member_id) AS active_members
FROM members_member m
LEFT JOIN (
    SELECT member_id, from_tier_id FROM (
        SELECT member_id, from_tier_id, ROW_NUMBER() OVER (PARTITION BY member_id ORDER BY at, id) AS n
        FROM tiers_tierchange
        WHERE member_id >= %(start)s AND member_id < %(stop)s AND at >= %(end)s
    ) changes WHERE n = 1
) later ON later.member_id = m.id
LEFT JOIN tiers_membertier mt ON mt.member_id = m.id
LEFT JOIN tiers_tier t ON t.id = COALESCE(
    CASE WHEN later.member_id IS NULL THEN mt.tier_id ELSE later.from_tier_id END, %(entry_tier)s)
LEFT JOIN members_rfmsnapshot r ON r.member_id = m.id AND r.as_of = %(rfm_as_of)s
LEFT JOIN (
    SELECT DISTINCT member_id FROM members_purchase
    WHERE member_id >= %(start)s AND member_id < %(stop)s AND occurred_at >= %(day_start)s AND occurred_at < %(end)s
) b ON b.member_id = m.id
WHERE m.id >= %(start)s AND m.id < %(stop)s AND {MEMBER_COUNTED}
GROUP BY m.home_store_id, COALESCE(t.code, ''), COALESCE(r.segment, ''), COALESCE(r.lifecycle, '')
"""  # noqa: S608 - constant fragments only; every value is a bound parameter

MEMBERS_SQL = f"""
INSERT INTO reports_membersnapshot (business_date, partial, home_store_id, tier, segment, lifecycle, members,
                                    new_members, active_members)
SELECT %(as_of)s, TRUE, g.* FROM ({MEMBER_GROUPS_SELECT}) g
"""  # noqa: S608 - constant fragments only

RECENCY_SQL = f"""
INSERT INTO reports_memberrecencysnapshot (business_date, home_store_id, last_purchase_date, members, partial)
SELECT %(as_of)s, m.home_store_id, last.day, COUNT(*), TRUE
FROM (
    SELECT member_id, {{last_day}} AS day FROM members_purchase
    WHERE member_id >= %(start)s AND member_id < %(stop)s
      AND occurred_at >= %(recent_start)s AND occurred_at < %(end)s
    GROUP BY member_id
) last
JOIN members_member m ON m.id = last.member_id
WHERE {MEMBER_COUNTED}
GROUP BY m.home_store_id, last.day
"""  # noqa: S608 - constant fragments only


def member_params(as_of, params, start=None, stop=None):
    day_start, end = day_bounds(as_of)
    return sql_params(
        as_of=as_of,
        start=start,
        stop=stop,
        day_start=day_start,
        end=end,
        recent_start=start_of_business_day(as_of - timedelta(days=RECENCY_DAYS - 1)),
        rfm_as_of=params.get("rfm_as_of"),
        entry_tier=params.get("entry_tier"),
    )


def snapshot_chunk(as_of, start, stop, params):
    """The member and recency rows of members [start, stop), partial until the run finishes."""
    values = member_params(as_of, _reference(as_of, params), start, stop)
    with connection.cursor() as cursor:
        cursor.execute(MEMBERS_SQL, values)
        groups = cursor.rowcount
        cursor.execute(RECENCY_SQL.format(last_day=business_date_sql("MAX(occurred_at)")), values)
    return {"member_groups": groups}


def _reference(as_of, params):
    """The run's reference data as `prepare` fixed it in the run's params (every chunk uses the same RFM run even
    if another one finishes meanwhile); looked up afresh for a run planned without it."""
    if "rfm_as_of" not in params:
        params = {**params, **reference_params(as_of)}
    rfm_as_of = params["rfm_as_of"]
    return {**params, "rfm_as_of": date.fromisoformat(rfm_as_of) if rfm_as_of else None}


def reference_params(as_of):
    rfm_as_of = rfm_date_on_or_before(as_of)
    return {"rfm_as_of": rfm_as_of.isoformat() if rfm_as_of else None, "entry_tier": entry_tier_id()}


# --- The rest of the day (in the finishing transaction) -------------------------------------------------------

MERGE_MEMBERS_SQL = [
    """
INSERT INTO reports_membersnapshot (business_date, home_store_id, tier, segment, lifecycle, members, new_members,
                                    active_members, partial)
SELECT business_date, home_store_id, tier, segment, lifecycle, SUM(members), SUM(new_members), SUM(active_members),
       FALSE
FROM reports_membersnapshot WHERE business_date = %(as_of)s AND partial
GROUP BY business_date, home_store_id, tier, segment, lifecycle
""",
    "DELETE FROM reports_membersnapshot WHERE business_date = %(as_of)s AND partial",
    """
INSERT INTO reports_memberdaysnapshot (business_date, home_store_id, members, new_members, active_members)
SELECT business_date, home_store_id, SUM(members), SUM(new_members), SUM(active_members)
FROM reports_membersnapshot WHERE business_date = %(as_of)s
GROUP BY business_date, home_store_id
""",
    """
INSERT INTO reports_memberrecencysnapshot (business_date, home_store_id, last_purchase_date, members, partial)
SELECT business_date, home_store_id, last_purchase_date, SUM(members), FALSE
FROM reports_memberrecencysnapshot WHERE business_date = %(as_of)s AND partial
GROUP BY business_date, home_store_id, last_purchase_date
""",
    "DELETE FROM reports_memberrecencysnapshot WHERE business_date = %(as_of)s AND partial",
]

FLOW_SQL = """
INSERT INTO reports_pointsflowsnapshot (business_date, store_id, channel, kind, entries, points, available_delta,
                                        pending_delta)
SELECT %(as_of)s, store_id, channel, kind, COUNT(*), SUM(points), SUM(available_delta), SUM(pending_delta)
FROM points_ledgerentry
WHERE created_at >= %(day_start)s AND created_at < %(end)s
GROUP BY store_id, channel, kind
"""

SV_FLOW_SQL = """
INSERT INTO reports_storedvalueflowsnapshot (business_date, store_id, kind, entries, principal_delta, bonus_delta)
SELECT %(as_of)s, store_id, kind, COUNT(*), SUM(principal_delta), SUM(bonus_delta)
FROM stored_value_storedvalueentry
WHERE created_at >= %(day_start)s AND created_at < %(end)s
GROUP BY store_id, kind
"""

LIABILITY_SQL = """
SELECT COALESCE(SUM(available_delta), 0), COALESCE(SUM(pending_delta), 0)
FROM points_ledgerentry WHERE created_at < %(end)s
"""

# Each lot's remaining at the end of D: its remaining now less the movements of entries written since (a lot's
# remaining is its points plus its movements: check_ledger verifies it), so only the entries written after D are
# read, not the whole ledger; lots made after D (a later earn's, a merge's, a return's) are left out.
FORECAST_AT_SELECT = """
SELECT due.month, SUM(due.remaining)
FROM (
    SELECT {month_case} AS month, l.remaining - COALESCE(since.points, 0) AS remaining
    FROM points_pointslot l
    LEFT JOIN (
        SELECT mv.lot_id, SUM(mv.points) AS points
        FROM points_lotmovement mv JOIN points_ledgerentry e ON e.id = mv.entry_id
        WHERE e.created_at >= %(end)s
        GROUP BY mv.lot_id
    ) since ON since.lot_id = l.id
    LEFT JOIN (SELECT id FROM points_ledgerentry WHERE created_at >= %(end)s) made_since ON made_since.id = l.entry_id
    WHERE l.status <> 'debt' AND l.expires_at > %(end)s AND l.expires_at <= %(horizon)s AND made_since.id IS NULL
) due
GROUP BY due.month
HAVING SUM(due.remaining) <> 0
"""

FORECAST_AT_SQL = f"""
INSERT INTO reports_expiryforecastsnapshot (business_date, month, points)
SELECT %(as_of)s, f.* FROM ({FORECAST_AT_SELECT}) f
"""  # noqa: S608 - constant fragments only


def forecast_months(as_of):
    """The 12 months of the forecast after `as_of` (first days), starting with the month of the day after it."""
    first = (as_of + timedelta(days=1)).replace(day=1)
    return [first + relativedelta(months=n) for n in range(FORECAST_MONTHS)]


def forecast_case(months):
    """SQL mapping a lot's expires_at to the month of its last valid day (the day before expires_at's day), with
    the bound parameters it names: last valid day in month M ⇔ start of M < expires_at ≤ start of M+1."""
    whens, values = [], {}
    for n, month in enumerate(months):
        whens.append(f"WHEN l.expires_at <= %(month_end_{n})s THEN %(month_{n})s")
        values[f"month_{n}"] = month
        values[f"month_end_{n}"] = start_of_business_day(month + relativedelta(months=1))
    return "CASE " + " ".join(whens) + " END", values


def snapshot_prepare(as_of, params):
    """Delete the date's rows (its SnapshotDay first: the date reads from the raw tables until the run finishes),
    and fix the RFM run and the entry tier the chunks use in the run's params."""
    JobRun.objects.filter(job=JOB, business_date=as_of).update(params={**params, **reference_params(as_of)})
    SnapshotDay.objects.filter(business_date=as_of).delete()
    for model in (
        MemberSnapshot,
        MemberDaySnapshot,
        MemberRecencySnapshot,
        PointsFlowSnapshot,
        StoredValueFlowSnapshot,
        ExpiryForecastSnapshot,
    ):
        model.objects.filter(business_date=as_of).delete()


def snapshot_finish(as_of, params):
    """Merge the chunks' rows; write the points and stored-value flows, the liability and its expiry forecast, the
    segment moves, and the SnapshotDay row that makes the date readable. Runs in the finishing transaction."""
    from points.services.ledger import current_policy
    from reports.core import prepare_segment_moves

    day_start, end = day_bounds(as_of)
    months = forecast_months(as_of)
    month_case, month_values = forecast_case(months)
    values = sql_params(
        as_of=as_of,
        day_start=day_start,
        end=end,
        horizon=start_of_business_day(months[-1] + relativedelta(months=1)),
        **month_values,
    )
    with connection.cursor() as cursor:
        for statement in MERGE_MEMBERS_SQL:
            cursor.execute(statement, values)
        cursor.execute(FLOW_SQL, values)
        cursor.execute(SV_FLOW_SQL, values)
        cursor.execute(LIABILITY_SQL, values)
        available, pending = (int(total) for total in cursor.fetchone())  # PostgreSQL's SUM(bigint) is numeric
        cursor.execute(FORECAST_AT_SQL.format(month_case=month_case), values)
    members = sum(MemberDaySnapshot.objects.filter(business_date=as_of).values_list("members", flat=True))
    reference = _reference(as_of, params)
    moves = prepare_segment_moves(as_of)
    SnapshotDay.objects.create(
        business_date=as_of,
        points_available=available,
        points_pending=pending,
        members=members,
        cash_points_per_unit=current_policy(end - timedelta(microseconds=1)).cash_points_per_unit,
        rfm_as_of=reference["rfm_as_of"],
    )
    return {"members": members, "points_available": available, "points_pending": pending, "segment_moves": moves}


def snapshot_dates(first, last):
    """The dates in [first, last] that have a finished snapshot."""
    return set(
        SnapshotDay.objects.filter(business_date__gte=first, business_date__lte=last).values_list(
            "business_date", flat=True
        )
    )


def register_jobs():
    """Called from ReportsConfig.ready()."""
    register_job(
        JobDefinition(
            name=JOB,
            description=_(
                "The day's aggregates for the reports: points and stored-value flows, liability and expiry "
                "forecast, members by store, tier, segment and lifecycle, segment moves."
            ),
            bounds=member_bounds,
            run_chunk=snapshot_chunk,
            prepare=snapshot_prepare,
            finish=snapshot_finish,
            chunk_size=CHUNK_SIZE,
        )
    )
