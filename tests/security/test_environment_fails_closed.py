"""Finding 12: an unsafe default environment. With ENVIRONMENT unset the service ran with DEBUG and the public
development SECRET_KEY, and a member token signed with that key opened a member's /me/. Now no process starts
without ENVIRONMENT (development is chosen, never fallen into: `make run`, `make test` and pytest set theirs), and
production refuses every known development or published key, not only short ones."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.loyalty.test_settings import SAFE_SECRET, run_django

ROOT = Path(__file__).resolve().parents[2]
UNSET_MESSAGE = "ENVIRONMENT is not set: set it to development, test or production"
KEY_MESSAGE = "Set SECRET_KEY to a random value of at least 50 characters in production, not a development or"
PRODUCTION = {
    "ENVIRONMENT": "production",
    "ALLOWED_HOSTS": "example.com",
    "SMS_BACKEND": "loyalty.messaging.HttpSmsBackend",
}


def without_environment(*command, **extra):
    """Run `command` in the project folder with ENVIRONMENT removed from the environment (and `extra` added)."""
    env = {key: value for key, value in os.environ.items() if key != "ENVIRONMENT"}
    env.update(extra)
    return subprocess.run(  # noqa: S603 - our own interpreter with fixed arguments
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def no_dotenv_environment():
    """The settings read .env too (the real environment wins): a developer's .env that chooses an environment
    would make the 'unset' cases start, rightly. They need a clone without one."""
    dotenv = ROOT / ".env"
    if dotenv.exists() and re.search(r"^\s*(export\s+)?ENVIRONMENT\s*=", dotenv.read_text(), re.MULTILINE):
        pytest.skip(".env sets ENVIRONMENT")


@pytest.mark.usefixtures("no_dotenv_environment")
@pytest.mark.parametrize(
    "command",
    [
        ("manage.py", "check"),  # every management command
        ("manage.py", "makemigrations", "--check", "--dry-run"),  # one Django lets past a settings error
        ("-c", "import loyalty.wsgi"),  # gunicorn's application
        ("-c", "from loyalty.celery import app; app.loader.import_default_modules()"),  # a worker's start
    ],
    ids=["manage.py", "makemigrations", "wsgi", "celery"],
)
def test_without_environment_no_process_starts(command):
    result = without_environment(*command)
    assert result.returncode != 0
    assert UNSET_MESSAGE in result.stderr
    assert "`export ENVIRONMENT=development`" in result.stderr  # the message says how to choose


@pytest.mark.usefixtures("no_dotenv_environment")
def test_an_empty_environment_is_unset_too():
    result = without_environment("manage.py", "check", ENVIRONMENT="")
    assert result.returncode != 0
    assert UNSET_MESSAGE in result.stderr


@pytest.mark.parametrize("value", ["prod", "Production", "dev"])
def test_an_unknown_environment_is_refused_naming_the_choices(value):
    result = without_environment("manage.py", "check", ENVIRONMENT=value)
    assert result.returncode != 0
    assert f"ENVIRONMENT must be development, test or production, not {value!r}." in result.stderr


@pytest.mark.parametrize(
    "key",
    [
        "insecure-development-key-change-me",  # the settings' development default
        "build-only-collectstatic-key-not-used-at-run-time-0123456789",  # the Dockerfile's build key, 61 characters
        "s" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz",  # the test suite's old production key, 56 characters
        "django-insecure-" + "k2v9x7q4m1p8z3w6r5t0y2u8i4o6a1s3d5f7g9h0j2l4",  # startproject's development kind
        "abcd" * 20,  # long, but four characters (Django's deploy check wants at least 5 different ones)
        "short-but-random-Qm3x9",
    ],
    ids=["settings-default", "dockerfile-build", "old-test-key", "django-insecure", "four-characters", "short"],
)
def test_production_refuses_a_development_or_published_key(key):
    result = run_django({**PRODUCTION, "SECRET_KEY": key}, "check")
    assert result.returncode != 0
    assert KEY_MESSAGE in result.stderr


def test_production_refuses_to_run_on_the_default_key():
    result = run_django(PRODUCTION, "check")  # SECRET_KEY unset: the development default
    assert result.returncode != 0
    assert KEY_MESSAGE in result.stderr


def test_production_starts_with_a_random_key():
    result = run_django({**PRODUCTION, "SECRET_KEY": SAFE_SECRET}, "check")
    assert result.returncode == 0, result.stderr


# Files that show operators how to set SECRET_KEY. A literal value in one of them is public.
DOCUMENTED = ["README.md", ".env.example", "docker-compose.yml", "Dockerfile", ".ci/run", "bench/README.md"]
ASSIGNMENT = re.compile(r"""\bSECRET_KEY[ \t]*[=:][ \t]*["']?([^\s"'\\|`]*)""")


def test_every_key_written_in_the_documentation_and_deploy_files_is_refused_in_production():
    literals = {}
    for name in DOCUMENTED:
        for value in ASSIGNMENT.findall((ROOT / name).read_text()):
            if value and not value.startswith("$"):  # "$(python3 -c ...)", "${SECRET_KEY:?...}": not literals
                literals[value] = name
    assert {value: name for value, name in literals.items() if value not in settings.KNOWN_PUBLIC_SECRET_KEYS} == {}


def test_the_suite_runs_with_the_test_environment():
    assert (os.environ["ENVIRONMENT"], settings.ENVIRONMENT) == ("test", "test")


@pytest.mark.usefixtures("no_dotenv_environment")
def test_a_bare_pytest_run_without_environment_gets_the_test_settings():
    """pytest-django loads the settings before any conftest: the `-p tests.environment` plugin (pyproject's addopts)
    sets ENVIRONMENT first, so `python -m pytest` works from a shell that has none."""
    result = without_environment("-m", "pytest", "--collect-only", "-q", "tests/security/test_forwarded_proto.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 tests collected" in result.stdout
