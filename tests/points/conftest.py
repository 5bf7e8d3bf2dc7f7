import pytest
from rest_framework.test import APIClient

from loyalty.credentials import create_api_client
from points.models import Reward
from tests.conftest import ALL_SCOPES
from tests.factories import MemberFactory


@pytest.fixture
def api(store_a):
    """A factory of API clients for one client app for all stores, with every scope (one client per thread)."""
    _, key = create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)

    def client():
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return c

    return client


@pytest.fixture
def member(store_a):
    """A member of store A (the ledger, earning, release and expiry tests' one member)."""
    return MemberFactory(home_store=store_a)


@pytest.fixture
def mug(db):
    """A gift reward of 100 points, 100 in stock."""
    return Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=100)
