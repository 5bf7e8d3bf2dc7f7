"""Celery tasks of the campaigns app: thin wrappers over its jobs, safe to run twice."""

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_coupon_batch(batch_id):
    """Walk a coupon batch's members chunk by chunk (campaigns.jobs.run_coupon_batch); a second worker on the same
    batch waits its turn per chunk and finds nothing left to do."""
    from campaigns.jobs import run_coupon_batch as run

    return run(batch_id)
