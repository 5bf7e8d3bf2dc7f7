"""Every 4xx/5xx under /api/ is JSON in the shape {"code", "detail", "errors"?}; bad input is never a 500."""

import pytest
from django.urls import path
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny

import loyalty.urls


@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def _explode(request):
    raise RuntimeError("boom")


@pytest.fixture
def exploding_url(settings):
    class Urls:
        urlpatterns = [path("api/v1/explode/", _explode), *loyalty.urls.urlpatterns]
        handler404 = loyalty.urls.handler404
        handler500 = loyalty.urls.handler500

    settings.ROOT_URLCONF = Urls
    return "/api/v1/explode/"


def assert_error_shape(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"code", "detail", "errors", "id", "member_no"}


def test_malformed_json_is_400_parse_error(admin_api, store_a):
    response = admin_api.generic("POST", "/api/v1/members/", '{"phone": "138', content_type="application/json")
    assert_error_shape(response, 400, "parse_error")


def test_json_that_is_not_an_object_is_400(admin_api, store_a):
    response = admin_api.generic("POST", "/api/v1/members/", "[1, 2]", content_type="application/json")
    assert_error_shape(response, 400, "invalid")


def test_wrong_content_type_is_415(admin_api, store_a):
    response = admin_api.generic("POST", "/api/v1/members/", "phone=138", content_type="text/plain")
    assert_error_shape(response, 415, "unsupported_media_type")


def test_validation_errors_name_fields(admin_api, store_a):
    response = admin_api.post("/api/v1/members/", {"phone": "1", "gender": "x"}, format="json")
    assert_error_shape(response, 400, "invalid")
    assert set(response.json()["errors"]) == {"phone", "gender"}


def test_unknown_api_path_is_json_404(admin_api):
    assert_error_shape(admin_api.get("/api/v1/does-not-exist/"), 404, "not_found")


def test_unknown_api_path_is_json_404_with_debug(admin_api, settings):
    settings.DEBUG = True
    assert_error_shape(admin_api.get("/api/v1/does-not-exist/"), 404, "not_found")


def test_method_not_allowed_is_json(admin_api, db):
    assert_error_shape(admin_api.put("/api/v1/members/", {}, format="json"), 405, "method_not_allowed")


@pytest.mark.schema_unchecked(reason="a test-only view that raises")
def test_unexpected_exception_is_json_500(admin_api, exploding_url):
    admin_api.raise_request_exception = False
    assert_error_shape(admin_api.get(exploding_url), 500, "server_error")


@pytest.mark.schema_unchecked(reason="a test-only view that raises")
def test_unexpected_exception_is_json_500_with_debug(admin_api, exploding_url, settings):
    settings.DEBUG = True
    admin_api.raise_request_exception = False
    assert_error_shape(admin_api.get(exploding_url), 500, "server_error")


def test_session_write_without_csrf_is_json_403(client, admin_user):
    from rest_framework.test import APIClient

    api = APIClient(enforce_csrf_checks=True)
    api.force_login(admin_user)
    response = api.post("/api/v1/tags/", {"code": "x", "name": "x"}, format="json")
    assert_error_shape(response, 403, "permission_denied")


def test_errors_outside_the_api_stay_html(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_health_and_readiness(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    assert ready.json()["broker"] in {"eager", "ok"}
