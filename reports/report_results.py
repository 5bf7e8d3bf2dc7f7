"""Stored results of the reports that need raw rows (retention cohorts, categories bought together) and of
repurchase and behaviour for their standard ranges: at a million members and ten million purchases each takes
seconds to a minute of scanning, too slow per request, so the nightly `report_results` job (04:30, after the
04:00 snapshot) computes them for the standard parameter sets and stores them (reports.models.ReportResult); the
endpoints answer from a stored result when the request's parameters match one, else compute live.

The standard parameter sets for the job's business date D (yesterday when it runs at night), no store or channel:
- retention: join months from the first day of the month 11 months before D's to D (the last 12 join months);
- basket: D − 89 … D (the last 90 days), min_support 0.01 (a request with a higher min_support on the same range
  is answered from it, narrowed);
- repurchase and behaviour: D − 29 … D and D − 89 … D (the last 30 and 90 days).

The job: one chunk per parameter set (so several workers share it and a crashed run resumes at the sets not yet
stored); each chunk computes its report and upserts its row in the chunk's transaction, so a re-run for the same
date replaces the rows and never duplicates them. Its finishing step deletes results the job stored for dates more
than KEEP_DAYS before D (their ranges are no longer any endpoint's default).
"""

import json
import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from loyalty.scheduling import JobDefinition, register_job
from reports import behaviour
from reports.models import ReportResult

KEEP_DAYS = 35
# The job's sorts and hashes (DISTINCT over a year of purchases, the category pairs) spill to disk with the default
# 4 MB; more, for its own transactions only, keeps them in memory. The web's requests keep the server's default.
JOB_WORK_MEM = "128MB"
STORED_REPORTS = ("repurchase", "retention", "basket", "behaviour")


def key_params(report, period):
    """The parameters a stored result is keyed by (basket: without min_support, see answer())."""
    params = dict(period.echo)
    if report == "retention":
        del params["channel"]
    return params


def params_key(params):
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def compute(report, period):
    """The report's body for the period, computed now from the raw rows."""
    if report == "basket":
        return behaviour.basket(period, behaviour.DEFAULT_MIN_SUPPORT)
    return getattr(behaviour, report)(period)


def standard_sets(as_of):
    """[(report, Period)] the job stores for business date `as_of` (see the module docstring)."""
    retention_first, _ = behaviour.default_retention_period(as_of)
    last_30, last_90 = as_of - timedelta(days=29), as_of - timedelta(days=89)
    return [
        ("retention", behaviour.Period(retention_first, as_of)),
        ("basket", behaviour.Period(last_90, as_of)),
        ("repurchase", behaviour.Period(last_30, as_of)),
        ("repurchase", behaviour.Period(last_90, as_of)),
        ("behaviour", behaviour.Period(last_30, as_of)),
        ("behaviour", behaviour.Period(last_90, as_of)),
    ]


def store_result(report, period, as_of):
    """Compute one report for one parameter set and store it (replacing the row of the same key)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # for the runner's transaction only (is_local)
            cursor.execute("SELECT set_config('work_mem', %s, true)", [JOB_WORK_MEM])
    began = time.monotonic()
    result = compute(report, period)
    params = key_params(report, period)
    row, _ = ReportResult.objects.update_or_create(
        report=report,
        params_key=params_key(params),
        defaults={
            "params": params,
            "result": result,
            "as_of": as_of,
            "computed_at": timezone.now(),
            "seconds": round(time.monotonic() - began, 3),
        },
    )
    return row


def stored_result(report, period):
    """The stored row for the report and the period's parameters, or None."""
    return ReportResult.objects.filter(report=report, params_key=params_key(key_params(report, period))).first()


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


# --- The nightly job ------------------------------------------------------------------------------------------


def _bounds(as_of, params):
    return 0, len(standard_sets(as_of)) - 1


def _run_chunk(as_of, start, stop, params):
    """Store the standard sets with index in [start, stop) (one per chunk)."""
    stored = 0
    for index, (report, period) in enumerate(standard_sets(as_of)):
        if start <= index < stop:
            store_result(report, period, as_of)
            stored += 1
    return {"results": stored}


def _finish(as_of, params):
    purged, _ = ReportResult.objects.filter(as_of__lt=as_of - timedelta(days=KEEP_DAYS)).delete()
    return {"purged": purged}


def register_jobs():
    """Called from ReportsConfig.ready()."""
    register_job(
        JobDefinition(
            name="report_results",
            description="Compute and store the raw-row reports (retention cohorts, categories bought together) "
            "and repurchase and behaviour for their standard ranges, so their endpoints answer from them.",
            bounds=_bounds,
            run_chunk=_run_chunk,
            finish=_finish,
            chunk_size=1,
        )
    )
