"""Low findings: a body over DATA_UPLOAD_MAX_MEMORY_SIZE, or JSON nested deeper than the parser can follow, was a
500 with a traceback, even unauthenticated. Now 413 `request_too_large` and 400 `invalid`, in the error shape."""

import pytest

pytestmark = pytest.mark.django_db

PURCHASES = "/api/v1/purchases/"
STAFF_TOKEN = "/api/v1/auth/staff-token"


def assert_error_shape(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"code", "detail", "errors"}


# Unauthenticated: the open sign-in endpoint, and an endpoint that needs a key (refused 413 before the 401).
CALLERS = [("anonymous", STAFF_TOKEN), ("anonymous", PURCHASES), ("pos_a", PURCHASES)]


@pytest.mark.parametrize(("who", "path"), CALLERS)
def test_a_3_mb_body_is_413_request_too_large(request, who, path):
    client = request.getfixturevalue(who)
    body = '{"username": "boss", "password": "x", "pad": "' + "x" * (3 * 1024 * 1024) + '"}'

    response = client.post(path, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="big")

    assert_error_shape(response, 413, "request_too_large")


@pytest.mark.parametrize(("who", "path"), [("anonymous", STAFF_TOKEN), ("pos_a", PURCHASES)])
@pytest.mark.parametrize("depth", [10_000, 65])
def test_json_nested_too_deep_is_400_invalid(request, who, path, depth):
    client = request.getfixturevalue(who)
    body = '{"username": ' + "[" * depth + "]" * depth + "}"

    response = client.post(path, data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="deep")

    assert_error_shape(response, 400, "invalid")
    assert list(response.json()["errors"]) == ["non_field_errors"]


def test_nesting_up_to_the_limit_reaches_the_view(pos_a, member_a):
    nested = "[" * 62 + "]" * 62
    body = f'{{"member": "{member_a.pk}", "type": "share", "payload": {{"a": {nested}}}}}'

    response = pos_a.post("/api/v1/events/", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="ok")

    assert response.status_code == 201, response.json()


def test_a_body_under_the_limit_still_reaches_the_view(pos_a):
    response = pos_a.post(PURCHASES, data="{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY="small")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
