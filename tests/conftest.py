import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from members.services import create_api_client, issue_member_tokens, issue_staff_token
from tests.factories import MemberFactory, StaffUserFactory, StoreFactory

PASSWORD = "correct horse battery"


def pytest_collection_modifyitems(config, items):
    """Tests marked `postgres` need PostgreSQL's locking; `redis` tests need REDIS_URL. Elsewhere they skip."""
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL)"))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs Redis (REDIS_URL)"))


@pytest.fixture(autouse=True)
def _isolate(settings):
    cache.clear()
    settings.LANGUAGE_CODE = "en"
    yield
    cache.clear()


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
    _, key = create_api_client(name="POS A", stores=[store_a])
    return _client(HTTP_AUTHORIZATION=f"Api-Key {key}")


@pytest.fixture
def app_client(db):
    """A client app bound to no store (the mini-program backend)."""
    _, key = create_api_client(name="Mini-program")
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
