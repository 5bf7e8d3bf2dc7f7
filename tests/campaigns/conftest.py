from tests.points.conftest import api  # noqa: F401 - the API-client factory for concurrent tills
