"""loyalty.middleware: Django's MessageMiddleware with the storage made on first use, and Django's SessionMiddleware
with the (empty) session store made on first use for a request without a session cookie. The API's requests make
neither, and every response is byte for byte what Django's middleware gives (status, every header, body); the
admin's messages still reach the next page, its login still makes a session."""

import time_machine
from django.contrib import messages
from django.contrib.messages import get_messages
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import override_settings
from django.utils.functional import SimpleLazyObject, empty

from loyalty.middleware import LazyMessageMiddleware, LazySessionMiddleware
from tests.conftest import PASSWORD, member_client, staff_client
from tests.factories import StaffUserFactory

LAZY = "loyalty.middleware.LazyMessageMiddleware"
DJANGO = "django.contrib.messages.middleware.MessageMiddleware"
LAZY_SESSION = "loyalty.middleware.LazySessionMiddleware"
DJANGO_SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
DJANGOS = {LAZY: DJANGO, LAZY_SESSION: DJANGO_SESSION}


def test_the_settings_use_it_in_place_of_djangos(settings):
    assert LAZY in settings.MIDDLEWARE and DJANGO not in settings.MIDDLEWARE
    assert LAZY_SESSION in settings.MIDDLEWARE and DJANGO_SESSION not in settings.MIDDLEWARE
    assert issubclass(LazySessionMiddleware, SessionMiddleware)
    assert issubclass(LazyMessageMiddleware, MessageMiddleware)  # the admin's check (admin.E409) accepts it
    # Where Django's was: after the session and authentication middleware, before clickjacking.
    middleware = settings.MIDDLEWARE
    position = middleware.index(LAZY)
    assert middleware.index(LAZY_SESSION) < position
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
        (anonymous, "/healthz", {}),
    ]
    # No credentials: DRF tries the admin session (StaffSessionAuthentication), so the store is made and read.
    session_read = [(anonymous, "/api/v1/me/points/", {})]  # 401
    for client, path, extra in requests + session_read:
        *lazy, request = answer(client, path, **extra)
        assert request._messages._wrapped is empty, path  # nothing made the storage
        made = (client, path, extra) in session_read
        assert (request.session._wrapped is not empty) is made, path  # nor the session store, unless read
        with override_settings(MIDDLEWARE=[DJANGOS.get(name, name) for name in settings.MIDDLEWARE]):
            fresh = type(client)()  # a client loads the middleware once: a new one with the same credentials
            fresh.credentials(**client._credentials)
            *eager, request = answer(fresh, path, **extra)
            assert not isinstance(request.session, SimpleLazyObject)  # Django's middleware did run
            assert not isinstance(request._messages, SimpleLazyObject)
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


def test_a_session_is_made_when_used_and_a_cookie_is_handled_as_django_does(client, db):
    user = StaffUserFactory(username="boss", role="admin", is_staff=True, is_superuser=True)
    assert "sessionid" not in client.cookies
    page = client.get("/admin/login/")  # no cookie yet: the login form makes the CSRF token, not a session
    assert page.status_code == 200 and "sessionid" not in page.cookies
    login = client.post("/admin/login/?next=/admin/", {"username": user.username, "password": PASSWORD})
    assert login.status_code == 302 and login.cookies["sessionid"].value  # used: made, saved, its cookie set
    assert "Cookie" in login["Vary"]
    home = client.get("/admin/")  # with the cookie: Django's own store, eagerly, as before
    assert home.status_code == 200 and home.wsgi_request.user == user
    assert not isinstance(home.wsgi_request.session, SimpleLazyObject)
    assert "Cookie" in home["Vary"]
