import pytest
from rest_framework.test import APIClient

from loyalty.credentials import create_api_client


@pytest.fixture
def api(store_a):
    """A factory of API clients for one client app bound to no store (one client per thread)."""
    _, key = create_api_client(name="POS")

    def client():
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return c

    return client
