"""pytest plugin, loaded with `-p tests.environment` (pyproject's addopts): the suite runs with ENVIRONMENT=test.

The settings refuse to start without ENVIRONMENT, and pytest-django loads them before any conftest.py is read, so
this is set here, at plugin import, before pytest-django's start-up: a bare `python -m pytest` works, and so does
every subprocess a test starts with a copy of os.environ. The suite is written for the test settings, so a value
exported in the shell (development, say) is overridden; a test that needs another environment passes its own to
the subprocess it starts."""

import os

os.environ["ENVIRONMENT"] = "test"
