import pytest

from loyalty.credentials import create_api_client
from tests.conftest import ALL_SCOPES, _client, staff_client
from tests.factories import MemberFactory, StaffUserFactory


@pytest.fixture
def manager_api(store_a):
    return staff_client(StaffUserFactory(username="manager-a", role="manager", stores=[store_a]))


@pytest.fixture
def pos_b(store_b):
    _, key = create_api_client(name="POS B", stores=[store_b], scopes=ALL_SCOPES)
    return _client(HTTP_AUTHORIZATION=f"Api-Key {key}")


@pytest.fixture
def member_b(store_b):
    return MemberFactory(home_store=store_b)
