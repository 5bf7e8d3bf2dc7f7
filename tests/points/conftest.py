import pytest
from rest_framework.test import APIClient

from loyalty.credentials import create_api_client
from tests.conftest import ALL_SCOPES


@pytest.fixture
def api(store_a):
    """A factory of API clients for one client app for all stores, with every scope (one client per thread)."""
    _, key = create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)

    def client():
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return c

    return client
