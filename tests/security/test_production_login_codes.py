"""Finding 11: the production stack kept login codes readable. Production refuses an SMS backend that keeps
one-time codes readable (the development outbox or console), in every process, and no backend logs a body."""

import logging

import pytest

from loyalty.messaging import send_message
from loyalty.models import Message
from tests.loyalty.test_settings import SAFE_SECRET, run_django

PRODUCTION = {"ENVIRONMENT": "production", "SECRET_KEY": SAFE_SECRET, "ALLOWED_HOSTS": "example.com"}


@pytest.mark.parametrize("backend", ["", "loyalty.messaging.OutboxBackend", "loyalty.messaging.ConsoleBackend"])
def test_production_refuses_an_sms_backend_that_keeps_codes_readable(backend):
    result = run_django({**PRODUCTION, **({"SMS_BACKEND": backend} if backend else {})}, "check")
    assert result.returncode != 0
    assert "the sms backend must not keep one-time codes readable" in result.stderr


def test_production_starts_with_a_delivering_sms_backend():
    result = run_django({**PRODUCTION, "SMS_BACKEND": "loyalty.messaging.HttpSmsBackend"}, "check")
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_the_outbox_never_logs_a_message_body(caplog, django_capture_on_commit_callbacks):
    with caplog.at_level(logging.DEBUG), django_capture_on_commit_callbacks(execute=True):
        send_message(
            channel="sms", kind="otp", recipient="+8613800138000", body="Your code is 493817.", secrets=["493817"]
        )
    assert Message.objects.get().status == "sent"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "outbox: sms message" in logged
    assert "493817" not in logged and "+8613800138000" not in logged
