"""Message backends, one per channel (settings.MESSAGE_BACKENDS). A backend delivers one Message and says
whether the message log may keep one-time codes readable (`keeps_secrets`): the development outbox does, so a
tester can read an OTP in GET /api/v1/messages/; production backends do not, and the log keeps the body masked.
"""

import json
import logging
import urllib.request

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    pass


class OutboxBackend:
    """Development and test: the message log is the outbox. Nothing leaves the machine."""

    keeps_secrets = True

    def deliver(self, message, body):
        logger.info("outbox %s to %s: %s", message.channel, message.recipient, body)
        return ""


class ConsoleBackend(OutboxBackend):
    """Development: print each message to standard output as well."""

    def deliver(self, message, body):
        print(f"[{message.channel}] to {message.recipient}: {body}", flush=True)  # noqa: T201
        return ""


class HttpSmsBackend:
    """Production SMS through an HTTP gateway: POST {"to", "text"} as JSON with a bearer token to SMS_HTTP_URL.
    The gateway's JSON answer may carry an "id", kept as the provider's message id."""

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
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                answer = json.loads(response.read() or b"{}")
        except (OSError, ValueError) as error:
            raise DeliveryFailed(str(error)) from error
        return str(answer.get("id", "")) if isinstance(answer, dict) else ""


def backend_for(channel):
    path = settings.MESSAGE_BACKENDS.get(channel)
    if not path:
        raise DeliveryFailed(f"No backend for channel {channel}")
    return path, import_string(path)()
