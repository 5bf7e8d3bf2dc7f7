from celery import shared_task

from members.services.messaging import deliver_message


@shared_task(acks_late=True)
def deliver_message_task(message_id):
    """Deliver one queued message (no-op when it is no longer queued, so a retry sends nothing twice)."""
    return deliver_message(message_id)
