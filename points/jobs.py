"""The points app's nightly jobs: what the job runner (loyalty.scheduling) runs, chunk by member id range (record
id range for the purge). The set-based statements themselves are in points.services (maintenance, idempotency):
only the points services write the ledger."""

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.clock import business_date, end_of_business_day
from loyalty.scheduling import JobDefinition, register_job
from points.services import idempotency, maintenance


def _release_until(as_of):
    """Release runs hourly for today; for an earlier date it releases what was due by the end of that date."""
    return min(timezone.now(), end_of_business_day(as_of))


def register_jobs():
    """Called from PointsConfig.ready()."""
    register_job(
        JobDefinition(
            name="release_pending",
            description=_("Make pending points whose pending period has ended available."),
            bounds=lambda as_of, params: maintenance.release_bounds(_release_until(as_of)),
            run_chunk=lambda as_of, start, stop, params: maintenance.release_chunk(start, stop, _release_until(as_of)),
            repeatable=True,
            default_as_of=business_date,
            latest_as_of=business_date,  # releases only what is due by now, so today is allowed
        )
    )
    register_job(
        JobDefinition(
            name="expire_points",
            description=_("Expire what remains of lots whose last valid day is the business date or earlier."),
            # prepare and finish move the watermark the chunks read lots from (maintenance.expire_prepare).
            prepare=maintenance.expire_prepare,
            bounds=lambda as_of, params: maintenance.expire_bounds(as_of),
            run_chunk=lambda as_of, start, stop, params: maintenance.expire_chunk(start, stop, as_of, timezone.now()),
            finish=maintenance.expire_finish,
        )
    )
    register_job(
        JobDefinition(
            name="purge_idempotency",
            description=_(
                "Delete idempotency records older than IDEMPOTENCY_RETENTION_DAYS (at least 30) before the end "
                "of the business date."
            ),
            # Chunks are ranges of record ids here, not member ids.
            bounds=lambda as_of, params: idempotency.purge_bounds(as_of),
            run_chunk=lambda as_of, start, stop, params: idempotency.purge_chunk(start, stop, as_of),
            chunk_size=idempotency.PURGE_CHUNK_SIZE,
        )
    )
