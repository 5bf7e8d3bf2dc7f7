"""Production settings refuse unsafe configurations; `check --deploy` passes with safe ones."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAFE_SECRET = secrets.token_urlsafe(50)  # random per run: a key written in the repository is a known one, refused
PRODUCTION_SMS = {"SMS_BACKEND": "loyalty.messaging.HttpSmsBackend"}


def run_django(env_overrides, *args):
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SMS_BACKEND"}}
    env.update(env_overrides)
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEBUG": "true", "SECRET_KEY": SAFE_SECRET, "ALLOWED_HOSTS": "example.com"}, "DEBUG must be off"),
        ({"ALLOWED_HOSTS": "example.com"}, "Set SECRET_KEY"),
        ({"SECRET_KEY": SAFE_SECRET, **PRODUCTION_SMS}, "Set ALLOWED_HOSTS"),
    ],
)
def test_production_refuses_to_start_unsafe(overrides, message):
    result = run_django({"ENVIRONMENT": "production", **overrides}, "check")
    assert result.returncode != 0
    assert message in result.stderr


def test_check_deploy_passes_with_production_settings():
    result = run_django(
        {"ENVIRONMENT": "production", "SECRET_KEY": SAFE_SECRET, "ALLOWED_HOSTS": "example.com", **PRODUCTION_SMS},
        "check",
        "--deploy",
        "--fail-level",
        "ERROR",
    )
    assert result.returncode == 0, result.stderr
    assert "ERRORS" not in result.stderr
