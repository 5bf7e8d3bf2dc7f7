"""Stored results of the reports that need raw rows (retention cohorts, categories bought together, the top
categories and SKUs from the order lines) and of repurchase and behaviour for their standard ranges: at a million
members, ten million purchases and millions of order lines each takes seconds to a minute of scanning, too slow
per request, so the nightly `report_results` job (04:30, after the 04:00 snapshot) computes them for the standard
parameter sets and stores them (reports.models.ReportResult); the endpoints answer from a stored result when the
request's parameters match one, else compute live.

The standard parameter sets for the job's business date D (yesterday when it runs at night), no store or channel:
- retention: join months from the first day of the month 11 months before D's to D (the last 12 join months);
- basket: D − 89 … D (the last 90 days), min_support 0.01 (a request with a higher min_support on the same range
  is answered from it, narrowed);
- repurchase: the dashboard's periods (reports.dashboard.PERIOD_DAYS: the last 7, 30 and 90 days, D − n + 1 … D)
  and the period of the same length before each (D − 2n + 1 … D − n), which the dashboard compares them with;
- behaviour: D − 29 … D and D − 89 … D (the last 30 and 90 days);
- top categories and top SKUs: the last 30 and 90 days, each ordered by amount and by quantity, the first
  TOP_LIMIT rows (the endpoint's largest `limit`, so a request with any `limit` is answered from them, cut).

The job: one chunk per parameter set (so several workers share it and a crashed run resumes at the sets not yet
stored; the top lists of one kind and range are one chunk, both orders from one pass over the order lines); each
chunk computes its report and upserts its row(s) in the chunk's transaction, so a re-run for the same date
replaces the rows and never duplicates them. Its finishing step deletes results the job stored for dates more
than KEEP_DAYS before D (their ranges are no longer any endpoint's default).
"""

import json
import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.scheduling import JobDefinition, register_job
from reports import behaviour
from reports.models import ReportResult

KEEP_DAYS = 35
# The job's sorts and hashes (DISTINCT over a year of purchases, the category pairs) spill to disk with the default
# 4 MB; more, for its own transactions only, keeps them in memory. The web's requests keep the server's default.
JOB_WORK_MEM = "128MB"
STORED_REPORTS = ("repurchase", "retention", "basket", "behaviour", "top")
# The dashboard's periods (reports.dashboard.PERIOD_DAYS), whose repurchase rate it compares with the period before.
REPURCHASE_DAYS = (7, 30, 90)
BEHAVIOUR_DAYS = (30, 90)
TOP_DAYS = (30, 90)
TOP_KINDS = ("categories", "skus")  # top rewards read the redemptions, a few milliseconds: always live
TOP_ORDERS = ("amount", "quantity")
TOP_LIMIT = behaviour.TOP_MAX_LIMIT  # the top endpoint's largest `limit`: every request is served


def key_params(report, period, **options):
    """The parameters a stored result is keyed by (basket: without min_support, see answer(); top: with kind and
    order_by, without limit)."""
    params = dict(period.echo)
    if report == "retention":
        del params["channel"]
    if report == "top":
        params.update(kind=options["kind"], order_by=options["order_by"])
    return params


def params_key(params):
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def compute(report, period):
    """The report's body for the period, computed now from the raw rows."""
    if report == "basket":
        return behaviour.basket(period, behaviour.DEFAULT_MIN_SUPPORT)
    return getattr(behaviour, report)(period)


def _days_ending(last, days):
    return behaviour.Period(last - timedelta(days=days - 1), last)


def standard_sets(as_of):
    """[(report, Period, options)] the job stores for business date `as_of`, one chunk each (see the module
    docstring; a top set stores both orders)."""
    retention_first, _ = behaviour.default_retention_period(as_of)
    sets = [
        ("retention", behaviour.Period(retention_first, as_of), {}),
        ("basket", _days_ending(as_of, 90), {}),
    ]
    for days in REPURCHASE_DAYS:
        sets.append(("repurchase", _days_ending(as_of, days), {}))
        sets.append(("repurchase", _days_ending(as_of - timedelta(days=days), days), {}))
    sets += [("behaviour", _days_ending(as_of, days), {}) for days in BEHAVIOUR_DAYS]
    sets += [("top", _days_ending(as_of, days), {"kind": kind}) for kind in TOP_KINDS for days in TOP_DAYS]
    return sets


def _upsert(report, params, result, as_of, seconds):
    row, _ = ReportResult.objects.update_or_create(
        report=report,
        params_key=params_key(params),
        defaults={
            "params": params,
            "result": result,
            "as_of": as_of,
            "computed_at": timezone.now(),
            "seconds": seconds,
        },
    )
    return row


def store_result(report, period, as_of, **options):
    """Compute one report for one parameter set and store it (replacing the row of the same key); a top set
    stores one row per order (TOP_ORDERS). Returns the rows."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # for the runner's transaction only (is_local)
            cursor.execute("SELECT set_config('work_mem', %s, true)", [JOB_WORK_MEM])
    began = time.monotonic()
    if report == "top":
        kind = options["kind"]
        lists = behaviour.top_lines_both_orders(period, kind, TOP_LIMIT)
        seconds = round(time.monotonic() - began, 3)
        return [
            _upsert(
                report,
                key_params(report, period, kind=kind, order_by=order_by),
                behaviour.top_body(period, kind, order_by, lists[order_by]),
                as_of,
                seconds,
            )
            for order_by in TOP_ORDERS
        ]
    result = compute(report, period)
    return [_upsert(report, key_params(report, period), result, as_of, round(time.monotonic() - began, 3))]


def stored_result(report, period, **options):
    """The stored row for the report and the period's parameters (top: kind and order_by), or None."""
    key = params_key(key_params(report, period, **options))
    return ReportResult.objects.filter(report=report, params_key=key).first()


def answer(report, period, **options):
    """The report's body: from a stored result when one matches the parameters (`source: "stored"`, `computed_at`
    when the job computed it), else computed now (`source: "live"`, `computed_at` now). basket takes
    `min_support`: a stored result (computed at the default 0.01) serves any min_support at least as high."""
    row = stored_result(report, period)
    if report == "basket":
        min_support = options.get("min_support", behaviour.DEFAULT_MIN_SUPPORT)
        if row is not None and min_support >= behaviour.DEFAULT_MIN_SUPPORT:
            body = behaviour.filter_basket(row.result, min_support)
            return {**body, "source": "stored", "computed_at": row.computed_at.isoformat()}
        computed_at = timezone.now()
        return {**behaviour.basket(period, min_support), "source": "live", "computed_at": computed_at.isoformat()}
    if row is not None:
        return {**row.result, "source": "stored", "computed_at": row.computed_at.isoformat()}
    computed_at = timezone.now()
    return {**compute(report, period), "source": "live", "computed_at": computed_at.isoformat()}


def answer_top(period, kind, *, order_by="amount", limit=20):
    """The top report's body (behaviour.top): categories and SKUs from the stored list when one matches the
    period, kind and order_by (its first `limit` rows: the stored list is the first TOP_LIMIT of the same sort, or
    every row when there are fewer), else computed now; rewards always now. The body is the same either way, key
    for key and in the same order (no source field: the stored lists are as the job found the order lines)."""
    if kind in TOP_KINDS and limit <= TOP_LIMIT:
        row = stored_result("top", period, kind=kind, order_by=order_by)
        if row is not None:
            return behaviour.top_body(period, kind, order_by, row.result["rows"][:limit])
    return behaviour.top(period, kind, order_by=order_by, limit=limit)


# --- The nightly job ------------------------------------------------------------------------------------------


def _bounds(as_of, params):
    return 0, len(standard_sets(as_of)) - 1


def _run_chunk(as_of, start, stop, params):
    """Store the standard sets with index in [start, stop) (one per chunk)."""
    stored = 0
    for index, (report, period, options) in enumerate(standard_sets(as_of)):
        if start <= index < stop:
            stored += len(store_result(report, period, as_of, **options))
    return {"results": stored}


def _finish(as_of, params):
    purged, _ = ReportResult.objects.filter(as_of__lt=as_of - timedelta(days=KEEP_DAYS)).delete()
    return {"purged": purged}


def register_jobs():
    """Called from ReportsConfig.ready()."""
    register_job(
        JobDefinition(
            name="report_results",
            description=_(
                "Compute and store the raw-row reports (retention cohorts, categories bought together, "
                "top categories and SKUs) and repurchase and behaviour for their standard ranges, so their endpoints "
                "answer from them."
            ),
            bounds=_bounds,
            run_chunk=_run_chunk,
            finish=_finish,
            chunk_size=1,
        )
    )
