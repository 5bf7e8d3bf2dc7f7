"""Messages tests: English templates, a fixed time outside the quiet hours, and a provider that records what it
is given (and fails when told to)."""

import importlib
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.messaging import DeliveryFailed, OutboxBackend
from tests.jobs.conftest import broker, redis_server, start_worker  # noqa: F401 - a real worker (PostgreSQL tests)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 6, 10, 12, 0, tzinfo=SHANGHAI)


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


class RecordingBackend(OutboxBackend):
    """A provider that records every call (message id, recipient, body) and answers from `answers` in turn: None
    takes the message, a DeliveryFailed is raised."""

    calls: list = []
    answers: list = []
    keeps_secrets = False

    def deliver(self, message, body):
        RecordingBackend.calls.append((message.pk, message.channel, message.recipient, body))
        answer = RecordingBackend.answers.pop(0) if RecordingBackend.answers else None
        if isinstance(answer, DeliveryFailed):
            raise answer
        return f"provider-{message.pk}"


@pytest.fixture(autouse=True)
def _english_and_recorded(settings):
    settings.MESSAGE_LANGUAGE = "en"
    settings.MESSAGE_QUIET_HOURS = "21:00-09:00"
    settings.MESSAGE_FREQUENCY_CAP_DAYS = 7
    settings.MESSAGE_MAX_ATTEMPTS = 5
    settings.MESSAGE_RETRY_BASE_SECONDS = 60
    settings.MESSAGE_BACKENDS = {
        **settings.MESSAGE_BACKENDS,
        "sms": "tests.messages.conftest.RecordingBackend",
        "wechat": "tests.messages.conftest.RecordingBackend",
        "email": "tests.messages.conftest.RecordingBackend",
    }
    RecordingBackend.calls, RecordingBackend.answers = [], []
    yield


@pytest.fixture
def provider():
    return RecordingBackend


@pytest.fixture
def noon():
    with time_machine.travel(NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def seeded_templates():
    """Transactional tests start from emptied tables: put back the templates and the ladder the migrations make."""
    from django.apps import apps

    importlib.import_module("loyalty.migrations.0009_default_message_templates").create_templates(apps, None)
    importlib.import_module("tiers.migrations.0002_default_ladder").create_ladder(apps, None)
