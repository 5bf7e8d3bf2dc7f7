"""The message log and its channel backends: `send_message` records a message and delivers it after commit
through the backend of its channel (settings.MESSAGE_BACKENDS).

Backends, one per channel (settings.MESSAGE_BACKENDS). A backend delivers one Message and says
whether the message log may keep one-time codes readable (`keeps_secrets`): the development outbox does, so a
tester can read an OTP in GET /api/v1/messages/; production backends do not, and the log keeps the body masked.
"""

import json
import logging
import urllib.error
import urllib.request

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from loyalty.log_masking import mask_phones
from loyalty.models import Message, MessageStatus

logger = logging.getLogger(__name__)
MASK = "******"


class DeliveryFailed(Exception):
    pass


class OutboxBackend:
    """Development and test: the message log is the outbox. Nothing leaves the machine."""

    keeps_secrets = True

    def deliver(self, message, body):
        # Never the body in the logs: it may hold a one-time code (the message log keeps it, in development).
        logger.info("outbox: %s message %s (%s) recorded", message.channel, message.pk, message.kind)
        return ""


class ConsoleBackend(OutboxBackend):
    """Development: print each message to standard output as well (the recipient's phone masked)."""

    def deliver(self, message, body):
        print(f"[{message.channel}] to {mask_phones(message.recipient)}: {body}", flush=True)  # noqa: T201
        return ""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would repeat the request, bearer token included, to whatever host the Location
    names. The 3xx answer then reaches the caller as an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class HttpSmsBackend:
    """Production SMS through an HTTP gateway: POST {"to", "text"} as JSON with a bearer token to SMS_HTTP_URL.
    The gateway's JSON answer may carry an "id", kept as the provider's message id. A redirect is not followed (the
    token would go with it, to another host): it is a failed send, logged with its status only."""

    keeps_secrets = False
    timeout_seconds = 5

    def deliver(self, message, body):
        if not settings.SMS_HTTP_URL:
            raise DeliveryFailed("SMS_HTTP_URL is not set")
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
            settings.SMS_HTTP_URL,
            data=json.dumps({"to": message.recipient, "text": body}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {settings.SMS_HTTP_TOKEN}"},
            method="POST",
        )
        try:
            opener = urllib.request.build_opener(_NoRedirects)  # and the usual handlers (proxies from the env)
            with opener.open(request, timeout=self.timeout_seconds) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            error.close()
            if 300 <= error.code < 400:
                logger.warning(
                    "sms message %s not sent: the gateway answered %s (a redirect), not followed with the token",
                    message.pk,
                    error.code,
                )
                raise DeliveryFailed(f"the SMS gateway answered {error.code} (a redirect, not followed)") from error
            raise DeliveryFailed(f"the SMS gateway answered {error.code}") from error
        except (OSError, ValueError) as error:
            raise DeliveryFailed(str(error)) from error
        return str(answer.get("id", "")) if isinstance(answer, dict) else ""


SECRET_CHANNELS = ("sms",)  # the channels that carry one-time login codes


def refuse_backends_that_keep_codes():
    """Production refuses a backend that keeps one-time codes readable (the development outbox or console): with
    one, staff could read a member's login code in the message log and log in as her."""
    for channel in SECRET_CHANNELS:
        path = settings.MESSAGE_BACKENDS.get(channel, "")
        if path and getattr(import_string(path), "keeps_secrets", False):
            raise ImproperlyConfigured(
                f"In production the {channel} backend must not keep one-time codes readable: {path} does. Set "
                f"SMS_BACKEND to a delivering backend, e.g. loyalty.messaging.HttpSmsBackend with SMS_HTTP_URL."
            )


def backend_for(channel):
    path = settings.MESSAGE_BACKENDS.get(channel)
    if not path:
        raise DeliveryFailed(f"No backend for channel {channel}")
    return path, import_string(path)()


def send_message(
    *, channel, kind, recipient, body, member=None, subject="", secrets=(), immediate=True, requires_consent=False
):
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
    message = Message(
        member=member,
        recipient=recipient,
        channel=channel,
        kind=kind,
        subject=subject,
        body=stored,
        backend=backend_path,
    )
    if requires_consent and (member is None or not getattr(member, f"consent_{channel}", False)):
        message.status, message.status_reason = MessageStatus.SKIPPED, "no consent for this channel"
        message.save()
        return message
    message.save()
    if immediate:
        transaction.on_commit(lambda: deliver_message(message.pk, body))
    else:
        from loyalty.tasks import deliver_message_task

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
    Message.objects.filter(pk=message.pk).update(
        status=MessageStatus.SENT, sent_at=timezone.now(), provider_message_id=provider_id or ""
    )
    return MessageStatus.SENT
