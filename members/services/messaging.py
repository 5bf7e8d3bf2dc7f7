"""Recording and delivering messages: every message is a row in the message log with what became of it."""

import logging

from django.db import transaction
from django.utils import timezone

from members.messages import DeliveryFailed, backend_for
from members.models import Message, MessageStatus

logger = logging.getLogger(__name__)
MASK = "******"


def send_message(*, channel, kind, recipient, body, member=None, subject="", secrets=(), immediate=True,
                 requires_consent=False):
    """Record a message and deliver it after the surrounding transaction commits.

    `secrets` (one-time codes) are masked in the stored body unless the channel's backend keeps secrets.
    `immediate` delivers in this process right after commit (login codes: the member is waiting, and the code
    never passes through the broker); otherwise a Celery task delivers it. `requires_consent` skips the message
    (status skipped, with the reason) when the member has not consented to the channel.
    """
    backend_path, backend = backend_for(channel)
    stored = body
    if not backend.keeps_secrets:
        for secret in secrets:
            stored = stored.replace(secret, MASK)
    message = Message(member=member, recipient=recipient, channel=channel, kind=kind, subject=subject,
                      body=stored, backend=backend_path)
    if requires_consent and (member is None or not getattr(member, f"consent_{channel}", False)):
        message.status, message.status_reason = MessageStatus.SKIPPED, "no consent for this channel"
        message.save()
        return message
    message.save()
    if immediate:
        transaction.on_commit(lambda: deliver_message(message.pk, body))
    else:
        from members.tasks import deliver_message_task

        def enqueue():
            try:
                deliver_message_task.delay(message.pk)
            except Exception:  # broker down: the message stays queued and a later sweep sends it
                logger.exception("Could not enqueue message %s", message.pk)

        transaction.on_commit(enqueue)
    return message


def deliver_message(message_id, body=None):
    """Hand a queued message to its backend and record sent or failed. Safe to call twice: only queued messages
    are delivered."""
    message = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED).first()
    if message is None:
        return None
    _, backend = backend_for(message.channel)
    try:
        provider_id = backend.deliver(message, body if body is not None else message.body)
    except DeliveryFailed as error:
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.FAILED, status_reason=str(error)[:200])
        return MessageStatus.FAILED
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENT, sent_at=timezone.now(),
                                                 provider_message_id=provider_id or "")
    return MessageStatus.SENT
