from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PointsConfig(AppConfig):
    name = "points"
    verbose_name = _("Points")

    def ready(self):
        from members.extensions import MemberField, register_member_field

        def represent(member):
            account = getattr(member, "points_account", None) if _has_account(member) else None
            return {"available": account.available if account else 0, "pending": account.pending if account else 0}

        register_member_field(MemberField(
            name="points",
            represent=represent,
            prepare_queryset=lambda queryset: queryset.select_related("points_account"),
        ))
        register_jobs()
        from members.locking import member_lockers
        from points.services.ledger import lock_accounts

        member_lockers.register(lock_accounts)  # step 1 of the lock order: the points account
        from members.imports import register_purchase_recorder
        from points.services import record_purchase

        register_purchase_recorder(record_purchase)  # import_purchases --award-points goes through the service


def _release_until(as_of):
    """Release runs hourly for today; for an earlier date it releases what was due by the end of that date."""
    from django.utils import timezone

    from loyalty.clock import end_of_business_day

    return min(timezone.now(), end_of_business_day(as_of))


def register_jobs():
    from django.utils import timezone

    from loyalty.clock import business_date
    from loyalty.scheduling import JobDefinition, register_job
    from points.services import idempotency, maintenance

    register_job(JobDefinition(
        name="release_pending",
        description="Make pending points whose pending period has ended available.",
        bounds=lambda as_of, params: maintenance.release_bounds(_release_until(as_of)),
        run_chunk=lambda as_of, start, stop, params: maintenance.release_chunk(start, stop, _release_until(as_of)),
        repeatable=True,
        default_as_of=business_date,
        latest_as_of=business_date,  # releases only what is due by now, so today is allowed
    ))
    register_job(JobDefinition(
        name="expire_points",
        description="Expire what remains of lots whose last valid day is the business date or earlier.",
        bounds=lambda as_of, params: maintenance.expire_bounds(as_of),
        run_chunk=lambda as_of, start, stop, params: maintenance.expire_chunk(start, stop, as_of, timezone.now()),
    ))
    register_job(JobDefinition(
        name="purge_idempotency",
        description="Delete idempotency records older than IDEMPOTENCY_RETENTION_DAYS (at least 30) before the end "
                    "of the business date.",
        # Chunks are ranges of record ids here, not member ids.
        bounds=lambda as_of, params: idempotency.purge_bounds(as_of),
        run_chunk=lambda as_of, start, stop, params: idempotency.purge_chunk(start, stop, as_of),
        chunk_size=idempotency.PURGE_CHUNK_SIZE,
    ))


def _has_account(member):
    from points.models import PointsAccount

    try:
        return member.points_account is not None
    except PointsAccount.DoesNotExist:
        return False
