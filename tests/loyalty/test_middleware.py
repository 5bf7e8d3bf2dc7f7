"""loyalty.middleware.LazyMessageMiddleware: Django's MessageMiddleware with the storage made on first use. The
API's requests never make it, and every response is byte for byte what Django's middleware gives (status, every
header, body); the admin's messages still reach the next page."""

import time_machine
from django.contrib import messages
from django.contrib.messages import get_messages
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import override_settings
from django.utils.functional import empty

from loyalty.middleware import LazyMessageMiddleware
from tests.conftest import member_client, staff_client

LAZY = "loyalty.middleware.LazyMessageMiddleware"
DJANGO = "django.contrib.messages.middleware.MessageMiddleware"


def test_the_settings_use_it_in_place_of_djangos(settings):
    assert LAZY in settings.MIDDLEWARE and DJANGO not in settings.MIDDLEWARE
    assert issubclass(LazyMessageMiddleware, MessageMiddleware)  # the admin's check (admin.E409) accepts it
    # Where Django's was: after the session and authentication middleware, before clickjacking.
    middleware = settings.MIDDLEWARE
    position = middleware.index(LAZY)
    assert middleware.index("django.contrib.sessions.middleware.SessionMiddleware") < position
    assert middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") < position
    assert middleware.index("django.middleware.clickjacking.XFrameOptionsMiddleware") == position + 1


def answer(client, path, **extra):
    response = client.get(path, **extra)
    return response.status_code, sorted(response.headers.items()), response.content, response.wsgi_request


@time_machine.travel("2026-03-10 12:00:00+08:00", tick=False)
def test_api_and_probe_responses_are_the_same_bytes_and_never_make_the_storage(
    settings, pos_a, member_a, admin_user, anonymous
):
    me = member_client(member_a)
    admin = staff_client(admin_user)
    requests = [
        (pos_a, f"/api/v1/members/{member_a.pk}/points/", {}),
        (pos_a, f"/api/v1/members/{member_a.pk}/points/", {"HTTP_ACCEPT_LANGUAGE": "en"}),
        (pos_a, f"/api/v1/members/{member_a.pk + 1000}/points/", {}),  # 404
        (pos_a, "/api/v1/no-such-thing/", {}),  # Django's 404, in JSON
        (me, "/api/v1/me/points/", {}),
        (admin, f"/api/v1/members/{member_a.pk}/", {}),
        (anonymous, "/api/v1/me/points/", {}),  # 401
        (anonymous, "/healthz", {}),
    ]
    for client, path, extra in requests:
        *lazy, request = answer(client, path, **extra)
        assert request._messages._wrapped is empty, path  # nothing made the storage
        with override_settings(MIDDLEWARE=[DJANGO if name == LAZY else name for name in settings.MIDDLEWARE]):
            *eager, request = answer(client, path, **extra)
            assert not isinstance(request._messages, type(lazy))
        assert lazy == eager, path


def test_a_message_added_is_stored_as_djangos_and_shown_on_the_next_request(rf, db):
    def adding(request):
        messages.success(request, "Saved.")
        return HttpResponse("ok")

    def reading(request):
        shown.extend(str(message) for message in get_messages(request))
        return HttpResponse("ok")

    responses = []
    for middleware in (LazyMessageMiddleware, MessageMiddleware):
        response = SessionMiddleware(middleware(adding))(rf.get("/admin/"))
        responses.append((response.status_code, sorted(response.headers.items()), response.cookies.output()))
        assert response.cookies["messages"].value  # the message went into the cookie storage
        shown = []
        later = rf.get("/admin/")
        later.COOKIES["messages"] = response.cookies["messages"].value
        after = SessionMiddleware(middleware(reading))(later)
        assert shown == ["Saved."]
        assert after.cookies["messages"].value == ""  # read: the cookie is cleared, as Django does
    assert responses[0] == responses[1]
