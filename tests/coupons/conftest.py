import pytest

from tests.conftest import staff_client
from tests.factories import StaffUserFactory


@pytest.fixture
def clerk_b_api(store_b):
    return staff_client(StaffUserFactory(username="clerk-b", role="clerk", stores=[store_b]))
