"""The stored-value app's nightly job: what the job runner (loyalty.scheduling) runs, chunk by member id range. The
set-based statement itself is stored_value.services.expiry's: only the stored-value services write the ledger."""

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.scheduling import JobDefinition, register_job
from stored_value.services import expiry


def register_jobs():
    """Called from StoredValueConfig.ready()."""
    register_job(
        JobDefinition(
            name="expire_stored_value_bonus",
            description=_(
                "Expire what is left of stored-value bonus money whose validity ended by the end of the "
                "business date (the same entries the lazy expiry before a member's next change writes)."
            ),
            bounds=lambda as_of, params: expiry.bonus_expiry_bounds(as_of),
            run_chunk=lambda as_of, start, stop, params: expiry.expire_bonus_chunk(start, stop, as_of, timezone.now()),
            chunk_size=expiry.CHUNK_SIZE,
        )
    )
