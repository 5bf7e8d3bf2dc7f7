"""Celery tasks: thin wrappers that take ids, load fresh rows and call a service; safe to retry."""

import logging

from celery import shared_task
from django.db import transaction

from loyalty import messaging, scheduling

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def deliver_message_task(message_id, attempt=0):
    """Deliver attempt `attempt` of one queued message (a no-op when it is sent, or taken by another task, so a
    task delivered twice sends nothing twice). A failed provider call schedules the next attempt with backoff."""
    return messaging.deliver_message(message_id, attempt)


@shared_task(acks_late=True)
def deliver_messages_task(items):
    """Deliver a batch of queued messages: `items` are [message_id, attempt] pairs (see deliver_message_task)."""
    return messaging.deliver_messages(items)


@shared_task(acks_late=True)
def send_due_messages():
    """The sweep (every minute): queued messages whose time has come go to the workers."""
    return messaging.send_due_messages()


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_job_chunk(chunk_id):
    """One chunk of a nightly job. Done at most once (see loyalty.scheduling.run_chunk); a message redelivered
    after a worker died finds the chunk undone and does it."""
    return scheduling.run_chunk(chunk_id)


def _send_chunks(chunk_ids):
    for index, chunk_id in enumerate(chunk_ids):
        try:
            run_job_chunk.delay(chunk_id)
        except Exception:  # broker down: stop here (each try costs a timeout); the next start resumes the run
            logger.exception(
                "could not send job chunk %s (and %d more) to the workers", chunk_id, len(chunk_ids) - index - 1
            )
            return


def dispatch_job(name, as_of=None, *, params=None, triggered_by="", force=False):
    """Plan a job's run and send its unfinished chunks to the workers (after the plan is committed)."""
    run, todo = scheduling.start_run(name, as_of, params=params, triggered_by=triggered_by, force=force)
    if todo:
        transaction.on_commit(lambda: _send_chunks(todo))
    return run


RESUME_DAYS = 7


@shared_task(acks_late=True)
def start_scheduled_job(name, as_of=None):
    """What django-celery-beat calls on the schedule: resume this job's unfinished runs of the last week (a
    crash or a broker outage left chunks undone), then plan the job for its default business date and fan out."""
    from datetime import date, timedelta

    from django.utils import timezone

    from loyalty.models import JobRun, JobStatus

    since = timezone.localdate() - timedelta(days=RESUME_DAYS)
    latest = scheduling.job(name).latest_as_of()  # a run dated later (made before the runner refused such dates)
    stalled_runs = JobRun.objects.filter(job=name, business_date__gte=since, business_date__lte=latest)
    for stalled in stalled_runs.exclude(status=JobStatus.DONE):
        dispatch_job(name, stalled.business_date, triggered_by="beat:resume")
    run = dispatch_job(name, date.fromisoformat(as_of) if as_of else None, triggered_by="beat")
    return {"run": run.pk, "chunks": run.chunks_total}


# --- Webhooks (loyalty.webhooks) ------------------------------------------------------------------------------------

WEBHOOK_TASK_BUDGET_SECONDS = 50  # a subscription's task hands over to a fresh one after this long


@shared_task(acks_late=True)
def deliver_webhooks():
    """Periodic (every minute, and nudged after commits that wrote events): dispatch the outbox's new events to the
    subscriptions, send one delivery task per subscription with due deliveries, and purge old events."""
    from loyalty import webhooks

    dispatched = webhooks.dispatch_events()
    subscription_ids = webhooks.subscriptions_with_due_deliveries()
    for subscription_id in subscription_ids:
        deliver_subscription_webhooks.delay(subscription_id)
    purged = webhooks.purge_events()
    return {"dispatched": dispatched, "subscriptions": len(subscription_ids), "purged": purged}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver_subscription_webhooks(subscription_id):
    """Attempt one subscription's due deliveries, each member's in order. A worker killed mid-delivery leaves its
    lease to run out; then this task (redelivered) or the next periodic run takes the delivery again."""
    from loyalty import webhooks

    counts = webhooks.deliver_due(subscription_id, budget_seconds=WEBHOOK_TASK_BUDGET_SECONDS)
    if counts["more"]:
        deliver_subscription_webhooks.delay(subscription_id)
    return counts
