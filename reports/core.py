"""The figures of the points, liability, members and segment-moves reports (SPEC §6): what the report views, the
dashboard and the alerts read. Each answers from the daily snapshot (reports.snapshots) for the business dates
that have one and from the raw tables for the others (today, or a day the job has not run for), with the same
definitions either way (tests/reports/core compare the two). Dates are business dates (settings.TIME_ZONE).

Points (per period, over the ledger entries written in it, by the kinds of LedgerEntry):
    issued   = Σ points of earn entries (pending ones included)
    redeemed = −Σ points of redeem and deduct entries − Σ points of cancel entries (net of points given back)
    expired  = −Σ points of expire entries
    reversed = −Σ points of reverse entries (refunds)
    adjusted = Σ points of adjust entries (signed: additions minus deductions)
    redemption_rate = redeemed ÷ issued, breakage = expired ÷ issued (0 when nothing was issued), 4 decimals.
Releases, transfers and merges move points between balances or members and are in none of them.

Liability at the end of a date: points_available = Σ available, points_pending = Σ pending over every member (as
of today: the points accounts, which check_ledger proves equal to the entries; for a past date: the sums of
available_delta and pending_delta of every entry written before its end); points_outstanding = available +
pending; money_value = outstanding ÷ the cash rate (PointsPolicy.cash_points_per_unit in force at the end of the
date), rounded half up to the cent. expiring = points due to expire after the date by the month of their last
valid day, for the 12 months from the day after it.

Members: total = members at the end of `to` (joined by then and not merged into another before then); new =
members who joined in the period; active = members with a purchase in the period (each once, refunds
notwithstanding); by tier (held at the end of `to`), RFM segment and lifecycle stage (the newest RFM run on or
before `to`). Segment moves: members per (segment in the RFM run of `from`, segment in the run of `to`), each run
the newest on or before the date; from_segment null for members not in the first run.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta
from django.db import connection, transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from loyalty.clock import business_date, end_of_business_day, start_of_business_day
from loyalty.models import JobRun, JobStatus
from members.jobs import member_bounds
from members.models import Lifecycle, Segment
from points.models import EntryKind, PointsAccount
from reports.models import (
    ExpiryForecastSnapshot,
    MemberDaySnapshot,
    MemberRecencySnapshot,
    MemberSnapshot,
    PointsFlowSnapshot,
    SegmentMoveSnapshot,
    SnapshotDay,
)
from reports.snapshots import (
    FORECAST_AT_SELECT,
    LIABILITY_SQL,
    MEMBER_COUNTED,
    MEMBER_GROUPS_SELECT,
    RECENCY_DAYS,
    SEGMENT_MOVE_SPANS,
    business_date_sql,
    forecast_case,
    forecast_months,
    member_params,
    reference_params,
    rfm_date_on_or_before,
    snapshot_dates,
    sql_params,
)

INTERVALS = ("day", "week", "month")
RATE = Decimal("0.0001")
CENT = Decimal("0.01")


# --- Periods -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One row of a report: its label and the dates it covers (a week or month cut to the report's range)."""

    period: str
    first: date
    last: date

    def days(self):
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def buckets(first, last, interval):
    """The report's rows over [first, last]: days (YYYY-MM-DD), weeks (their Monday) or months (YYYY-MM)."""
    rows, day = [], first
    while day <= last:
        if interval == "month":
            end = min(day.replace(day=1) + relativedelta(months=1, days=-1), last)
            rows.append(Bucket(day.strftime("%Y-%m"), day, end))
        elif interval == "week":
            monday = day - timedelta(days=day.weekday())
            end = min(monday + timedelta(days=6), last)
            rows.append(Bucket(monday.isoformat(), day, end))
        else:
            end = day
            rows.append(Bucket(day.isoformat(), day, day))
        day = end + timedelta(days=1)
    return rows


def raw_runs(first, last, snapshotted):
    """The runs of consecutive dates in [first, last] without a snapshot: [(first, last), ...]."""
    runs, start, day = [], None, first
    while day <= last:
        if day in snapshotted:
            if start is not None:
                runs.append((start, day - timedelta(days=1)))
                start = None
        elif start is None:
            start = day
        day += timedelta(days=1)
    if start is not None:
        runs.append((start, last))
    return runs


def rate(part, whole):
    """part ÷ whole as a number with 4 decimals (0 when whole is 0)."""
    if not whole:
        return 0.0
    return float((Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_UP))


def _as_date(value):
    return date.fromisoformat(value) if isinstance(value, str) else value


def _fetch(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- Points --------------------------------------------------------------------------------------------------

RAW_FLOW_SQL = """
SELECT {day} AS day, kind, SUM(points)
FROM points_ledgerentry
WHERE created_at >= %(start)s AND created_at < %(end)s {filters}
GROUP BY 1, 2
"""


def daily_points_flow(first, last, *, store_id=None, channel=None):
    """{date: Counter(kind → Σ points)} of the ledger entries written on each date of [first, last], of one store
    and/or channel when given."""
    snapshotted = snapshot_dates(first, last)
    flow = defaultdict(Counter)
    stored = PointsFlowSnapshot.objects.filter(business_date__in=snapshotted)
    if store_id is not None:
        stored = stored.filter(store_id=store_id)
    if channel is not None:
        stored = stored.filter(channel=channel)
    for day, kind, points in stored.values_list("business_date", "kind").annotate(points=Sum("points")).order_by():
        flow[day][kind] += points
    filters = ("AND store_id = %(store)s " if store_id is not None else "") + (
        "AND channel = %(channel)s" if channel is not None else ""
    )
    sql = RAW_FLOW_SQL.format(day=business_date_sql("created_at"), filters=filters)
    for run_first, run_last in raw_runs(first, last, snapshotted):
        params = sql_params(
            start=start_of_business_day(run_first), end=end_of_business_day(run_last), store=store_id, channel=channel
        )
        for day, kind, points in _fetch(sql, params):
            flow[_as_date(day)][kind] += int(points)  # PostgreSQL's SUM(bigint) is numeric
    return flow


def points_figures(kinds):
    """The report's figures from Σ points per entry kind (see the module docstring)."""
    issued = kinds[EntryKind.EARN]
    redeemed = -(kinds[EntryKind.REDEEM] + kinds[EntryKind.DEDUCT] + kinds[EntryKind.CANCEL])
    expired = -kinds[EntryKind.EXPIRE]
    return {
        "issued": issued,
        "redeemed": redeemed,
        "expired": expired,
        "reversed": -kinds[EntryKind.REVERSE],
        "adjusted": kinds[EntryKind.ADJUST],
        "redemption_rate": rate(redeemed, issued),
        "breakage": rate(expired, issued),
    }


def points_report(first, last, *, interval="day", store_id=None, channel=None):
    """{interval, from, to, rows: [{period, issued, redeemed, expired, reversed, adjusted, redemption_rate,
    breakage}], totals: {the same but period}}."""
    flow = daily_points_flow(first, last, store_id=store_id, channel=channel)
    rows, total = [], Counter()
    for bucket in buckets(first, last, interval):
        kinds = Counter()
        for day in bucket.days():
            kinds.update(flow.get(day, {}))
        total.update(kinds)
        rows.append({"period": bucket.period, **points_figures(kinds)})
    return {
        "interval": interval,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "rows": rows,
        "totals": points_figures(total),
    }


# --- Liability -----------------------------------------------------------------------------------------------

LIVE_FORECAST_SQL = """
SELECT {month_case} AS month, SUM(l.remaining)
FROM points_pointslot l
WHERE l.status IN ('pending', 'available') AND l.remaining > 0
  AND l.expires_at > %(end)s AND l.expires_at <= %(horizon)s
GROUP BY 1
"""


def money_value(points, cash_points_per_unit):
    return (Decimal(points) / Decimal(cash_points_per_unit)).quantize(CENT, rounding=ROUND_HALF_UP)


def liability(as_of, *, today=None):
    """The liability at the end of `as_of` (see the module docstring): from its snapshot; as of today from the
    points accounts and the lots as they are; for an earlier date without snapshot from the ledger (slow on a big
    ledger: the snapshot job back-fills). `source` says which."""
    from points.services.ledger import current_policy

    today = today or business_date()
    if as_of > today:
        raise ValueError("The liability of a date that has not begun is not known.")
    end = end_of_business_day(as_of)
    months = forecast_months(as_of)
    day = SnapshotDay.objects.filter(business_date=as_of).first()
    if day is not None:
        available, pending, cash_rate, source = (
            day.points_available,
            day.points_pending,
            day.cash_points_per_unit,
            "snapshot",
        )
        due = dict(ExpiryForecastSnapshot.objects.filter(business_date=as_of).values_list("month", "points"))
    else:
        month_case, month_values = forecast_case(months)
        params = sql_params(
            as_of=as_of, end=end, horizon=start_of_business_day(months[-1] + relativedelta(months=1)), **month_values
        )
        if as_of == today:
            sums = PointsAccount.objects.aggregate(available=Sum("available"), pending=Sum("pending"))
            available, pending, source = sums["available"] or 0, sums["pending"] or 0, "accounts"
            due = _fetch(LIVE_FORECAST_SQL.format(month_case=month_case), params)
            cash_rate = current_policy().cash_points_per_unit
        else:
            available, pending = (int(total) for total in _fetch(LIABILITY_SQL, params)[0])
            source = "ledger"
            due = _fetch(FORECAST_AT_SELECT.format(month_case=month_case), params)
            cash_rate = current_policy(end - timedelta(microseconds=1)).cash_points_per_unit
        due = {_as_date(month): points for month, points in due}
    outstanding = available + pending
    return {
        "as_of": as_of.isoformat(),
        "points_available": available,
        "points_pending": pending,
        "points_outstanding": outstanding,
        "money_value": f"{money_value(outstanding, cash_rate):.2f}",
        "cash_points_per_unit": cash_rate,
        "expiring": [{"month": month.strftime("%Y-%m"), "points": int(due.get(month, 0))} for month in months],
        "source": source,
    }


# --- Members -------------------------------------------------------------------------------------------------

RAW_NEW_SQL = """
SELECT {joined_day} AS day, COUNT(*)
FROM members_member m
WHERE m.joined_at >= %(start)s AND m.joined_at < %(end)s {store_filter}
  AND NOT EXISTS (SELECT 1 FROM members_membermerge mm WHERE mm.duplicate_id = m.id AND {merged_day} <= {joined_day})
GROUP BY 1
"""

RAW_ACTIVE_SQL = f"""
SELECT COUNT(DISTINCT p.member_id)
FROM members_purchase p JOIN members_member m ON m.id = p.member_id
WHERE p.occurred_at >= %(start)s AND p.occurred_at < %(end)s AND {MEMBER_COUNTED} {{store_filter}}
"""  # noqa: S608 - constant fragments only


def _store_filter(store_id):
    return "AND m.home_store_id = %(store)s" if store_id is not None else ""


def new_members_by_day(first, last, *, store_id=None):
    """{date: members who joined on it (not merged away by its end)} over [first, last], of one home store."""
    snapshotted = snapshot_dates(first, last)
    stored = MemberDaySnapshot.objects.filter(business_date__in=snapshotted)
    if store_id is not None:
        stored = stored.filter(home_store_id=store_id)
    new = Counter(dict(stored.values_list("business_date").annotate(n=Sum("new_members")).order_by()))
    sql = RAW_NEW_SQL.format(
        joined_day=business_date_sql("m.joined_at"),
        merged_day=business_date_sql("mm.created_at"),
        store_filter=_store_filter(store_id),
    )
    for run_first, run_last in raw_runs(first, last, snapshotted):
        params = sql_params(start=start_of_business_day(run_first), end=end_of_business_day(run_last), store=store_id)
        for day, count in _fetch(sql, params):
            new[_as_date(day)] += count
    return new


def active_members(first, last, *, store_id=None, snapshotted=None):
    """Members with a purchase in [first, last] (each once), of one home store: from the recency rows of `last`
    when it has a snapshot and the period is at most RECENCY_DAYS long, else from the purchases."""
    snapshotted = snapshot_dates(last, last) if snapshotted is None else snapshotted
    if last in snapshotted and (last - first).days < RECENCY_DAYS:
        rows = MemberRecencySnapshot.objects.filter(business_date=last, partial=False, last_purchase_date__gte=first)
        if store_id is not None:
            rows = rows.filter(home_store_id=store_id)
        return rows.aggregate(n=Sum("members"))["n"] or 0
    params = sql_params(start=start_of_business_day(first), end=end_of_business_day(last), store=store_id)
    return _fetch(RAW_ACTIVE_SQL.format(store_filter=_store_filter(store_id)), params)[0][0]


def active_by_bucket(rows, *, store_id=None, snapshotted=frozenset()):
    """active_members of each bucket in few queries: days with a snapshot from their day rows (one query), longer
    buckets ending on a snapshot day from its recency rows (one query), the others from the purchases."""
    active = {}
    days = [bucket for bucket in rows if bucket.first == bucket.last and bucket.last in snapshotted]
    if days:
        stored = MemberDaySnapshot.objects.filter(business_date__in=[bucket.last for bucket in days])
        if store_id is not None:
            stored = stored.filter(home_store_id=store_id)
        by_day = dict(stored.values_list("business_date").annotate(n=Sum("active_members")).order_by())
        active.update({bucket: by_day.get(bucket.last, 0) for bucket in days})
    spans = [
        bucket
        for bucket in rows
        if bucket not in active and bucket.last in snapshotted and (bucket.last - bucket.first).days < RECENCY_DAYS
    ]
    if spans:
        condition = Q()
        for bucket in spans:
            condition |= Q(business_date=bucket.last, last_purchase_date__gte=bucket.first)
        stored = MemberRecencySnapshot.objects.filter(condition, partial=False)
        if store_id is not None:
            stored = stored.filter(home_store_id=store_id)
        by_end = dict(stored.values_list("business_date").annotate(n=Sum("members")).order_by())
        active.update({bucket: by_end.get(bucket.last, 0) for bucket in spans})
    for bucket in rows:
        if bucket not in active:
            active[bucket] = active_members(bucket.first, bucket.last, store_id=store_id, snapshotted=snapshotted)
    return [active[bucket] for bucket in rows]


def member_groups(as_of, *, store_id=None):
    """[(tier, segment, lifecycle, members)] at the end of `as_of`, of one home store: from its snapshot, else from
    the members as the snapshot job would count them (one pass over the members table)."""
    if snapshot_dates(as_of, as_of):
        rows = MemberSnapshot.objects.filter(business_date=as_of, partial=False)
        if store_id is not None:
            rows = rows.filter(home_store_id=store_id)
        return list(
            rows.values_list("tier", "segment", "lifecycle").annotate(n=Sum("members")).order_by("tier", "segment")
        )
    low, high = member_bounds(as_of, {})
    if low is None:
        return []
    reference = reference_params(as_of)
    reference["rfm_as_of"] = date.fromisoformat(reference["rfm_as_of"]) if reference["rfm_as_of"] else None
    groups = Counter()
    for home_store_id, tier, segment, lifecycle, members, _new, _active in _fetch(
        MEMBER_GROUPS_SELECT, member_params(as_of, reference, low, high + 1)
    ):
        if store_id is None or home_store_id == store_id:
            groups[(tier, segment, lifecycle)] += members
    return [(*key, members) for key, members in groups.items()]


def _counts_by(groups, position, keys):
    counted = Counter()
    for group in groups:
        counted[group[position]] += group[3]
    rows = [{"key": key, "members": counted.pop(key, 0)} for key in keys]
    rows += [{"key": key or None, "members": n} for key, n in sorted(counted.items()) if n]
    return rows


def members_report(first, last, *, interval="day", store_id=None):
    """{from, to, total, new, active, by_tier, by_segment, by_lifecycle: [{key, members}], rows: [{period, new,
    active}]} (see the module docstring); keys null: no tier, not scored by RFM."""
    from tiers.models import Tier

    snapshotted = snapshot_dates(first, last)
    new = new_members_by_day(first, last, store_id=store_id)
    periods = buckets(first, last, interval)
    active = active_by_bucket(periods, store_id=store_id, snapshotted=snapshotted)
    rows = [
        {"period": bucket.period, "new": sum(new.get(day, 0) for day in bucket.days()), "active": count}
        for bucket, count in zip(periods, active, strict=True)
    ]
    groups = member_groups(last, store_id=store_id)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "total": sum(group[3] for group in groups),
        "new": sum(new.values()),
        "active": active_members(first, last, store_id=store_id, snapshotted=snapshotted),
        "by_tier": _counts_by(groups, 0, Tier.objects.order_by("rank").values_list("code", flat=True)),
        "by_segment": _counts_by(groups, 1, Segment.values),
        "by_lifecycle": _counts_by(groups, 2, Lifecycle.values),
        "rows": rows,
    }


# --- Segment moves -------------------------------------------------------------------------------------------

MOVES_SQL = """
SELECT COALESCE(a.segment, ''), b.segment, COUNT(*)
FROM members_rfmsnapshot b
LEFT JOIN members_rfmsnapshot a ON a.member_id = b.member_id AND a.as_of = %(from_date)s
WHERE b.as_of = %(to_date)s
GROUP BY COALESCE(a.segment, ''), b.segment
"""


def segment_move_counts(from_date, to_date):
    """[(from_segment, to_segment, members)] between the RFM runs of two dates: stored (SegmentMoveSnapshot) unless
    either run finished after the stored rows were made; else counted from the RFM rows and stored."""
    runs_finished = JobRun.objects.filter(
        job="rfm", status=JobStatus.DONE, business_date__in=[from_date, to_date]
    ).aggregate(at=Max("finished_at"))["at"]
    stored = SegmentMoveSnapshot.objects.filter(from_date=from_date, to_date=to_date)
    computed_at = stored.aggregate(at=Max("computed_at"))["at"]
    if computed_at is not None and (runs_finished is None or computed_at >= runs_finished):
        return list(stored.values_list("from_segment", "to_segment", "members"))
    counts = _fetch(MOVES_SQL, {"from_date": from_date, "to_date": to_date})
    now = timezone.now()
    with transaction.atomic():
        stored.delete()
        SegmentMoveSnapshot.objects.bulk_create(
            [
                SegmentMoveSnapshot(
                    from_date=from_date, to_date=to_date, from_segment=a, to_segment=b, members=n, computed_at=now
                )
                for a, b, n in counts
            ],
            ignore_conflicts=True,  # a request counting the same pair at the same time stored the same rows
        )
    return counts


def prepare_segment_moves(as_of):
    """Count and store the segment moves of the usual ranges ending on `as_of` (the snapshot job). Returns how
    many pairs of RFM runs it prepared."""
    to_date = rfm_date_on_or_before(as_of)
    if to_date is None:
        return 0
    pairs = {rfm_date_on_or_before(as_of - timedelta(days=span)) for span in SEGMENT_MOVE_SPANS} - {None}
    for from_date in pairs:
        segment_move_counts(from_date, to_date)
    return len(pairs)


def segment_moves(first, last):
    """{from, to, from_rfm_as_of, to_rfm_as_of, moves: [{from_segment, to_segment, members}]}: every pair with
    members, in the order of the segments (Segment), from_segment null (not in the first run) last."""
    from_date, to_date = rfm_date_on_or_before(first), rfm_date_on_or_before(last)
    counts = segment_move_counts(from_date, to_date) if from_date and to_date else []
    order = {segment: n for n, segment in enumerate(Segment.values)}
    moves = sorted(counts, key=lambda move: (order.get(move[0], len(order)), order.get(move[1], len(order))))
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "from_rfm_as_of": from_date.isoformat() if from_date else None,
        "to_rfm_as_of": to_date.isoformat() if to_date else None,
        "moves": [{"from_segment": a or None, "to_segment": b, "members": n} for a, b, n in moves],
    }
