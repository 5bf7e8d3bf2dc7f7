"""Nightly jobs: a registry the apps fill (points: release, expiry and the idempotency purge; tiers: downgrades;
members: RFM and rule tags), and the runner that records each run per (job, business date), splits it into id
chunks (member ids; record ids for the purge) that several workers can share, and resumes a crashed run from its
unfinished chunks.

A chunk's work and the mark that it is done commit in one transaction, so a worker killed mid-chunk leaves the
chunk undone (PostgreSQL rolls the work back) and the next attempt does it once. Chunks are taken with
SELECT ... FOR UPDATE SKIP LOCKED, so two workers never run the same chunk at the same time.

A run acts only for a business date that has ended (yesterday or earlier; release_pending: up to today): start_run
refuses a later date before writing anything, whichever path asked (run_job, the Celery tasks, the API).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loyalty.clock import business_date
from loyalty.errors import DomainError
from loyalty.models import JobChunk, JobRun, JobStatus
from loyalty.registry import ExtensionPoint

logger = logging.getLogger(__name__)


def yesterday():
    return business_date() - timedelta(days=1)


@dataclass(frozen=True)
class JobDefinition:
    name: str
    description: str
    bounds: Callable[[date, dict], tuple[int | None, int | None]]  # member ids the run must cover
    run_chunk: Callable[[date, int, int, dict], dict]  # runs inside the runner's transaction; returns counts
    chunk_size: int = 50_000
    prepare: Callable[[date, dict], None] | None = None  # once, before the chunks (its own transaction)
    finish: Callable[[date, dict], dict] | None = None  # once, after the last chunk (the finishing transaction)
    repeatable: bool = False  # runs several times a day (release_pending, hourly): a new run resets the day's
    default_as_of: Callable[[], date] = yesterday
    # The latest business date a run may act for: a day that has ended, so that a date typed a year ahead cannot
    # expire or downgrade today what is still valid. release_pending acts "up to now" and allows today.
    latest_as_of: Callable[[], date] = yesterday


_jobs = ExtensionPoint("jobs", "JobDefinitions by name: each app registers its nightly jobs in ready().", keyed=True)


class UnknownJob(LookupError):
    pass


class BusinessDateNotEnded(DomainError):
    status = 400
    code = "business_date_not_ended"
    default_detail = gettext_lazy("That business date has not ended yet.")


def check_as_of(definition, as_of):
    """Refuse a business date later than the job allows (for most jobs: later than yesterday)."""
    latest = definition.latest_as_of()
    if as_of > latest:
        raise BusinessDateNotEnded(
            _(
                "%(job)s cannot run for %(date)s: that business date has not ended yet. The latest date allowed is "
                "%(latest)s."
            )
            % {"job": definition.name, "date": as_of.isoformat(), "latest": latest.isoformat()},
            latest_as_of=latest.isoformat(),
        )


def register_job(definition):
    _jobs.register(definition, key=definition.name)


def job_names():
    return _jobs.keys()


def job(name):
    definition = _jobs.get(name)
    if definition is None:
        raise UnknownJob(f"Unknown job {name!r}; jobs: {', '.join(job_names())}")
    return definition


def start_run(name, as_of=None, *, params=None, triggered_by="", force=False):
    """Create (or pick up) the run of a job for a business date and plan its chunks. Returns (run, todo) where
    `todo` lists the ids of chunks still to run: empty when the run is already done (and not forced). Raises
    BusinessDateNotEnded, before anything is written, for a date later than the job's latest_as_of."""
    definition = job(name)
    as_of = as_of or definition.default_as_of()
    check_as_of(definition, as_of)
    with transaction.atomic(durable=True):
        run, created = JobRun.objects.select_for_update().get_or_create(
            job=name,
            business_date=as_of,
            defaults={"params": params or {}, "triggered_by": triggered_by, "started_at": timezone.now()},
        )
        if run.status == JobStatus.DONE and not (force or definition.repeatable):
            return run, []
        if not created and (run.status == JobStatus.DONE or force):
            run.chunks.all().delete()
            run.chunks_total = run.chunks_done = 0
            run.counts, run.params, run.started_at = {}, params or run.params, timezone.now()
        run.status, run.error, run.finished_at = JobStatus.RUNNING, "", None
        run.save()
    if run.chunks_total == 0:
        _plan(run, definition)
    todo = list(run.chunks.exclude(status=JobStatus.DONE).order_by("start_id").values_list("id", flat=True))
    if not todo:
        finish_run(run.pk)
    return run, todo


def _plan(run, definition):
    if definition.prepare:
        with transaction.atomic(durable=True):
            definition.prepare(run.business_date, run.params)
    low, high = definition.bounds(run.business_date, run.params)
    chunks = []
    if low is not None:
        start = low
        while start <= high:
            chunks.append(JobChunk(run=run, start_id=start, stop_id=start + definition.chunk_size))
            start += definition.chunk_size
    with transaction.atomic(durable=True):
        JobChunk.objects.bulk_create(chunks, ignore_conflicts=True)
        JobRun.objects.filter(pk=run.pk).update(chunks_total=len(chunks))
    run.chunks_total = len(chunks)


def run_chunk(chunk_id):
    """Do one chunk, exactly once: skipped when done or when another worker holds it. Returns True if it ran."""
    try:
        with transaction.atomic(durable=True):
            chunk = (
                JobChunk.objects.select_for_update(skip_locked=True)
                .select_related("run")
                .filter(pk=chunk_id)
                .exclude(status=JobStatus.DONE)
                .first()
            )
            if chunk is None:
                return False
            run = chunk.run
            if settings.JOB_CHUNK_PAUSE_SECONDS > 0:
                # Spread the load on the primary: a pause per chunk, with the chunk taken (no other worker
                # waits for it) and before its work (a worker killed here leaves nothing half done).
                time.sleep(settings.JOB_CHUNK_PAUSE_SECONDS)
            counts = job(run.job).run_chunk(run.business_date, chunk.start_id, chunk.stop_id, run.params)
            chunk.status, chunk.counts, chunk.finished_at = JobStatus.DONE, counts or {}, timezone.now()
            chunk.attempts += 1
            chunk.save()
    except Exception as error:
        logger.exception("job chunk %s failed", chunk_id)
        with transaction.atomic(durable=True):
            JobChunk.objects.filter(pk=chunk_id).update(status=JobStatus.FAILED, error=str(error)[:2000])
            JobRun.objects.filter(chunks__pk=chunk_id).update(status=JobStatus.FAILED, error=str(error)[:2000])
        raise
    finish_run(run.pk)
    return True


def finish_run(run_id):
    """Close the run when its last chunk is done: sum the counts and run the job's finishing step, once."""
    with transaction.atomic(durable=True):
        run = JobRun.objects.select_for_update().get(pk=run_id)
        done = run.chunks.filter(status=JobStatus.DONE)
        run.chunks_done = done.count()
        if run.status != JobStatus.RUNNING or run.chunks_done < run.chunks_total:
            run.save(update_fields=["chunks_done"])
            return run
        counts: dict[str, Any] = {}
        for chunk_counts in done.values_list("counts", flat=True):
            for key, value in (chunk_counts or {}).items():
                counts[key] = counts.get(key, 0) + value
        definition = job(run.job)
        if definition.finish:
            counts.update(definition.finish(run.business_date, run.params) or {})
        run.counts, run.status, run.finished_at = counts, JobStatus.DONE, timezone.now()
        run.save()
    return run


def run_inline(name, as_of=None, *, params=None, triggered_by="", force=False):
    """Run a job in this process, chunk after chunk (`manage.py run_job`); resumes an unfinished run."""
    run, todo = start_run(name, as_of, params=params, triggered_by=triggered_by, force=force)
    for chunk_id in todo:
        run_chunk(chunk_id)
    run.refresh_from_db()
    return run
