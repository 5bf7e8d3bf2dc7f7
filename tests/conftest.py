import os
from importlib import import_module

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from kombu import pools as kombu_pools
from rest_framework.test import APIClient

from loyalty.access import CLIENT_SCOPES
from loyalty.credentials import create_api_client, issue_staff_token
from members.services import issue_member_tokens
from tests.browser.support import Page, browser_missing, start_chromium
from tests.factories import PASSWORD, MemberFactory, StaffUserFactory, StoreFactory

__all__ = ["PASSWORD"]  # imported from here by many tests

ALL_SCOPES = sorted(CLIENT_SCOPES)


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need PostgreSQL's locking; `redis` tests need REDIS_URL; `browser` tests need
    chromium and chromedriver. Elsewhere they skip, saying why."""
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    no_browser = browser_missing() if any("browser" in item.keywords for item in items) else ""
    for item in items:
        if "browser" in item.keywords and no_browser:
            item.add_marker(pytest.mark.skip(reason=no_browser))
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL)"))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis (REDIS_URL)"))


@pytest.fixture(scope="session")
def browser(live_server):
    """One headless Chromium for the whole session (tests.browser.support.start_chromium). It quits before the
    live server stops (it depends on it), so no connection of it is left for the server's threads to close after
    the test database is gone."""
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def browser_artifacts(tmp_path_factory):
    """Where the browser tests write their screenshots: BROWSER_ARTIFACTS, else a pytest temporary folder."""
    folder = os.environ.get("BROWSER_ARTIFACTS")
    return folder or tmp_path_factory.mktemp("browser")


@pytest.fixture
def page(browser, live_server, browser_artifacts):
    """The browser with no cookies and no console entries left from another test, bound to this test's live
    server (tests.browser.support.Page)."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's, not only the open page's
    # The browser is the session's: its console log still holds what an earlier test's page logged. Reading the
    # log empties it, so each test sees only its own entries.
    browser.get_log("browser")
    yield Page(browser, live_server.url, browser_artifacts)
    # Leave the page before the live server's database goes: no request of this test may still be in flight.
    browser.get("about:blank")


@pytest.fixture(autouse=True, scope="session")
def _tasks_run_in_process():
    """Tasks run eagerly in tests even when REDIS_URL is set (CI's PostgreSQL run); the worker tests in
    tests/jobs start a real worker and switch this off for themselves."""
    from loyalty.celery import app

    app.conf.task_always_eager = True
    yield


@pytest.fixture(autouse=True)
def _tasks_back_in_process():
    """Every test starts with tasks running in-process and open broker pools, whatever a test before it left behind
    (the worker tests point the app at a broker of their own and switch eager mode off inside their fixtures)."""
    from loyalty.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = True
    # Celery acquires a producer even for an eager task: a test that closed the broker pools (the worker tests
    # point the app at their own broker and back) must not leave the next one a closed pool.
    if app._pool is not None and app._pool._closed:
        app._pool = None
        app.amqp._producer_pool = None
    for pool in list(kombu_pools.producers.values()):  # kombu keeps producer pools per broker URL, process-wide
        if pool.connections is not None and pool.connections._closed:
            kombu_pools.reset()
            app.amqp._producer_pool = None
            break


@pytest.fixture(autouse=True)
def _responses_match_the_schema(request, monkeypatch):
    """Every response of /api/v1/ that a test receives through Django's test client must be one the published
    OpenAPI schema declares, status and body (tests/schema_check.py). Tests of deliberately undeclared answers
    (an unexpected server error) are marked schema_unchecked."""
    if request.node.get_closest_marker("schema_unchecked"):
        return
    from django.test.client import Client

    from tests.schema_check import check_response

    original = Client.request

    def checked(self, **environ):
        response = original(self, **environ)
        check_response(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""), response)
        return response

    monkeypatch.setattr(Client, "request", checked)


@pytest.fixture(autouse=True)
def _isolate(settings):
    from loyalty.config_cache import clear_all

    clear_all()  # the configuration tables are cached per process: not across tests
    cache.clear()
    settings.LANGUAGE_CODE = "en"
    yield
    cache.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """check_ledger's invariants hold after every test's data, checked while the test's database is still
    there (tests that break the ledger on purpose are marked tampers_ledger)."""
    result = yield
    uses_db = item.get_closest_marker("django_db") or {"db", "transactional_db"} & set(item.fixturenames)
    if uses_db and not item.get_closest_marker("tampers_ledger"):
        from points.audit import all_ledger_mismatches

        mismatches = list(all_ledger_mismatches())
        assert mismatches == [], "check_ledger would fail after this test"
    return result


@pytest.fixture
def migration_defaults(transactional_db):
    """The rows the data migrations make (the points policy, the default earning rules, the tier ladder), which the
    flush after an earlier transactional test removed: made again by the migrations' own functions (each makes its
    rows only when the table is empty). The role groups come back by themselves (post_migrate)."""
    from django.apps import apps

    import_module("points.migrations.0002_append_only_and_defaults").create_defaults(apps, None)
    import_module("tiers.migrations.0002_default_ladder").create_ladder(apps, None)


@pytest.fixture
def store_a(db):
    return StoreFactory(code="A001", name="Store A")


@pytest.fixture
def store_b(db):
    return StoreFactory(code="B001", name="Store B")


def _client(**headers):
    client = APIClient()
    client.credentials(**headers)
    return client


def staff_client(user):
    token, _ = issue_staff_token(user=user)
    return _client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def admin_user(db):
    return StaffUserFactory(username="boss", role="admin")


@pytest.fixture
def admin_api(admin_user):
    return staff_client(admin_user)


@pytest.fixture
def clerk_a(store_a):
    return StaffUserFactory(username="clerk-a", role="clerk", stores=[store_a])


@pytest.fixture
def clerk_api(clerk_a):
    return staff_client(clerk_a)


@pytest.fixture
def marketer_api(db):
    return staff_client(StaffUserFactory(username="marketing", role="marketer"))


@pytest.fixture
def pos_a(store_a):
    """A client app bound to store A, with every scope."""
    _, key = create_api_client(name="POS A", stores=[store_a], scopes=ALL_SCOPES)
    return _client(HTTP_AUTHORIZATION=f"Api-Key {key}")


@pytest.fixture
def app_client(db):
    """A client app for all stores (the mini-program backend), with every scope."""
    _, key = create_api_client(name="Mini-program", all_stores=True, scopes=ALL_SCOPES)
    return _client(HTTP_AUTHORIZATION=f"Api-Key {key}")


def member_client(member):
    return _client(HTTP_AUTHORIZATION=f"Bearer {issue_member_tokens(member)['access']}")


@pytest.fixture
def member_a(store_a):
    return MemberFactory(home_store=store_a, phone="+8613800138000")


@pytest.fixture
def member_b(store_b):
    return MemberFactory(home_store=store_b, phone="+8613900139000")


@pytest.fixture
def anonymous():
    return APIClient()


@pytest.fixture
def on_postgres():
    return connection.vendor == "postgresql"
