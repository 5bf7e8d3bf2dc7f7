"""Set-based work behind campaigns' nightly jobs: the coupons' expiry (SPEC §10)."""

from django.db.models import Max, Min
from django.utils import timezone

from campaigns.models_coupons import Coupon, CouponStatus
from loyalty.scheduling import JobDefinition, register_job

EXPIRE_CHUNK_SIZE = 200_000


def _expirable(as_of):
    return Coupon.objects.filter(status=CouponStatus.UNUSED, valid_until__lte=as_of)


def expire_coupons_bounds(as_of, params):
    """The coupon id range of unused coupons whose last day is `as_of` or earlier (one aggregate on the partial
    index coupon_unused_until_idx)."""
    bounds = _expirable(as_of).aggregate(low=Min("id"), high=Max("id"))
    return bounds["low"], bounds["high"]


def expire_coupons_chunk(as_of, start, stop, params):
    """One UPDATE: unused coupons with ids in [start, stop) whose last valid day is `as_of` or earlier become
    expired. Idempotent per date (what it leaves is still valid after `as_of`, or not unused). A coupon being
    redeemed holds its row lock: the UPDATE waits and then skips it (no longer unused)."""
    expired = (
        _expirable(as_of)
        .filter(id__gte=start, id__lt=stop)
        .update(status=CouponStatus.EXPIRED, status_changed_at=timezone.now())
    )
    return {"expired": expired}


def register_jobs():
    register_job(
        JobDefinition(
            name="expire_coupons",
            description="Unused coupons whose last valid day is the business date or earlier become expired.",
            bounds=expire_coupons_bounds,
            run_chunk=expire_coupons_chunk,
            chunk_size=EXPIRE_CHUNK_SIZE,
        )
    )
