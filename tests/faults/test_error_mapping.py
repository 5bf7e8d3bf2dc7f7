"""Which database errors are an outage (503 `temporarily_unavailable`, Retry-After) and which stay a bug (500);
the same 503 from the API's middleware for a view outside DRF; and the timeout settings refuse nonsense."""

import os
import sqlite3
import subprocess
import sys

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import IntegrityError, InterfaceError, OperationalError
from django.urls import path

import loyalty.urls
from loyalty.api import database_unavailable
from tests.faults.conftest import assert_temporarily_unavailable


@pytest.mark.parametrize(
    ("cause", "unavailable"),
    [
        (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), True),
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), True),
        (psycopg.errors.TooManyConnections("sorry, too many clients already"), True),
        (psycopg.errors.DeadlockDetected("deadlock detected"), True),
        (psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"), False),  # a bug: 500
        (sqlite3.OperationalError("no such table: points_ledgerentry"), False),
    ],
)
def test_which_operational_errors_are_an_outage(cause, unavailable):
    error = OperationalError(str(cause))
    error.__cause__ = cause
    assert database_unavailable(error) is unavailable


def test_an_integrity_error_is_not_an_outage():
    error = IntegrityError("duplicate key value")
    error.__cause__ = psycopg.errors.UniqueViolation("duplicate key value")
    assert database_unavailable(error) is False


def _plain_view(request):
    raise InterfaceError("connection already closed")


@pytest.mark.schema_unchecked(reason="a test-only view")
def test_a_plain_django_view_under_the_api_answers_503_too(admin_api, settings):
    """Outside DRF's views (their handler does it for them), the API's middleware gives the same answer."""

    class Urls:
        urlpatterns = [path("api/v1/plain/", _plain_view), *loyalty.urls.urlpatterns]

    settings.ROOT_URLCONF = Urls
    admin_api.raise_request_exception = False
    assert_temporarily_unavailable(admin_api.get("/api/v1/plain/"))


@pytest.mark.parametrize("variable", ["WEB_DB_LOCK_TIMEOUT_SECONDS", "WEB_DB_STATEMENT_TIMEOUT_SECONDS"])
def test_a_negative_timeout_is_refused_at_start(variable):
    env = {**os.environ, "ENVIRONMENT": "test", variable: "-1"}
    done = subprocess.run(
        [sys.executable, "-c", "import loyalty.settings"],
        env=env,
        capture_output=True,  # noqa: S603
        text=True,
        timeout=60,
        cwd=django_settings.BASE_DIR,
    )
    assert done.returncode != 0
    assert "must be 0 or more" in done.stderr
