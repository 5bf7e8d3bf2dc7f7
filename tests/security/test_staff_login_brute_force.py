"""Finding 1: staff password brute force. The staff logins (the API token and the admin login page) are throttled
per client address and per username, the address is read from X-Forwarded-For only behind NUM_PROXIES trusted
proxies, and a username is locked for a cool-down after repeated failures, even for the right password."""

import re
import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from loyalty.models import AuditEntry, StaffToken
from members.models import OtpChallenge
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

STAFF_TOKEN_URL = "/api/v1/auth/staff-token"
ADMIN_LOGIN_URL = "/admin/login/"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def limits(settings):
    settings.STAFF_LOGIN_RATE = "5/min"
    settings.STAFF_LOGIN_USERNAME_RATE = "100/min"
    settings.STAFF_LOGIN_MAX_FAILURES = 10
    settings.STAFF_LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
    settings.STAFF_LOGIN_LOCK_DURATION = timedelta(minutes=15)
    return settings


def outcome(response):
    if response.status_code < 400:
        return response.status_code
    return response.json()["code"]


def staff_login(client, password, spoofed=None, **extra):
    if spoofed:
        extra["HTTP_X_FORWARDED_FOR"] = spoofed
    return client.post(STAFF_TOKEN_URL, {"username": "clerk-a", "password": password}, format="json", **extra)


def test_rotating_x_forwarded_for_is_throttled_then_the_username_is_locked(anonymous, clerk_a, limits, frozen):
    tries = [outcome(staff_login(anonymous, f"wrong-{i}", spoofed=f"10.0.{i}.1")) for i in range(6)]
    assert tries == ["not_authenticated"] * 5 + ["throttled"]

    frozen.shift(61)  # the next minute: five more tries from the same (real) address, the tenth failure locks
    tries = [outcome(staff_login(anonymous, f"again-{i}", spoofed=f"10.1.{i}.1")) for i in range(5)]
    assert tries == ["not_authenticated"] * 5
    locked = AuditEntry.objects.get(action="staff_login.locked")
    assert locked.new_values["username"] == "clerk-a"
    assert locked.new_values["failures"] == 10

    frozen.shift(61)  # not throttled any more, but locked: the right password gets the same answer as a wrong one
    right = staff_login(anonymous, PASSWORD)
    wrong = staff_login(anonymous, "wrong")
    assert right.status_code == wrong.status_code == 429
    assert right.json() == wrong.json()
    assert right.json()["code"] == "login_locked"
    assert int(right["Retry-After"]) == 15 * 60 - 61
    assert StaffToken.objects.count() == 0

    frozen.shift(15 * 60)  # the cool-down is over
    assert outcome(staff_login(anonymous, PASSWORD)) == 201
    assert StaffToken.objects.filter(user=clerk_a).count() == 1


def test_one_username_tried_from_many_addresses_is_throttled(anonymous, clerk_a, limits, frozen):
    limits.STAFF_LOGIN_RATE = "100/min"
    limits.STAFF_LOGIN_USERNAME_RATE = "3/min"
    tries = [outcome(staff_login(anonymous, "wrong", REMOTE_ADDR=f"192.0.2.{i}")) for i in range(1, 5)]
    assert tries == ["not_authenticated"] * 3 + ["throttled"]
    frozen.shift(61)
    assert outcome(staff_login(anonymous, PASSWORD, REMOTE_ADDR="192.0.2.9")) == 201


def admin_login(client, password, username="boss", spoofed=None):
    extra = {"HTTP_X_FORWARDED_FOR": spoofed} if spoofed else {}
    return client.post(ADMIN_LOGIN_URL, {"username": username, "password": password, "next": "/admin/"}, **extra)


def page_without_csrf_token(response):
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def test_the_admin_login_page_is_throttled_and_locked(admin_user, limits, frozen):
    client = Client()
    statuses = [admin_login(client, f"wrong-{i}", spoofed=f"10.0.{i}.1").status_code for i in range(6)]
    assert statuses == [200] * 5 + [429]  # 200: the form again, with its error

    frozen.shift(61)
    statuses = [admin_login(client, f"again-{i}").status_code for i in range(5)]
    assert statuses == [200] * 5
    assert AuditEntry.objects.filter(action="staff_login.locked", new_values__username="boss").count() == 1

    frozen.shift(61)
    right, wrong = admin_login(client, PASSWORD), admin_login(client, "wrong")
    assert right.status_code == wrong.status_code == 429
    assert page_without_csrf_token(right) == page_without_csrf_token(wrong)
    assert "Too many failed logins for this username" in right.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still not logged in

    frozen.shift(15 * 60)
    response = admin_login(client, PASSWORD)
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_api_and_the_admin_share_the_failure_count(anonymous, clerk_a, admin_user, limits, frozen):
    limits.STAFF_LOGIN_RATE = "100/min"
    for i in range(5):
        assert outcome(staff_login(anonymous, f"wrong-{i}")) == "not_authenticated"
    for i in range(5):
        assert admin_login(Client(), f"wrong-{i}", username="clerk-a").status_code == 200
    assert outcome(staff_login(anonymous, PASSWORD)) == "login_locked"


def test_an_admin_unlocks_a_locked_staff_user_and_it_is_audited(anonymous, clerk_a, admin_user, limits, frozen):
    limits.STAFF_LOGIN_RATE = "100/min"
    for i in range(10):
        staff_login(anonymous, f"wrong-{i}")
    assert outcome(staff_login(anonymous, PASSWORD)) == "login_locked"

    admin = Client()
    admin.force_login(admin_user)
    response = admin.post(
        "/admin/members/staffuser/",
        {"action": "unlock_logins", "_selected_action": [str(clerk_a.pk)]},
    )
    assert response.status_code == 302

    unlocked = AuditEntry.objects.get(action="staff_login.unlocked")
    assert unlocked.actor == "staff:boss"
    assert unlocked.new_values == {"username": "clerk-a", "locked_until": None}
    assert outcome(staff_login(anonymous, PASSWORD)) == 201


def test_a_clerk_cannot_unlock(anonymous, clerk_a, limits, frozen):
    from members.models import StaffUser

    limits.STAFF_LOGIN_RATE = "100/min"
    for i in range(10):
        staff_login(anonymous, f"wrong-{i}")
    clerk = Client()
    clerk.force_login(StaffUser.objects.get(pk=clerk_a.pk))
    clerk.post("/admin/members/staffuser/", {"action": "unlock_logins", "_selected_action": [str(clerk_a.pk)]})
    assert not AuditEntry.objects.filter(action="staff_login.unlocked").exists()
    assert outcome(staff_login(anonymous, PASSWORD)) == "login_locked"


# --- The client address -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_proxies", "forwarded", "expected"),
    [
        (0, "203.0.113.7", "127.0.0.9"),  # no proxy trusted: the header is the client's to write, ignored
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the entry the one proxy appended, not the client's
        (2, "198.51.100.1, 203.0.113.7", "198.51.100.1"),
        (3, "198.51.100.1, 203.0.113.7", "198.51.100.1"),  # fewer entries than proxies: the first
        (1, None, "127.0.0.9"),
        (1, "not-an-address", "127.0.0.9"),
    ],
)
def test_the_client_address_trusts_only_the_configured_proxies(settings, num_proxies, forwarded, expected):
    from loyalty.network import client_ip

    settings.NUM_PROXIES = num_proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.9", **extra)
    assert client_ip(request) == expected


def test_behind_one_proxy_the_login_throttle_counts_the_address_the_proxy_saw(clerk_a, limits, frozen):
    limits.NUM_PROXIES = 1
    client = APIClient()
    # The client writes the first entries, the proxy appends the address it saw: only that one counts.
    tries = [outcome(staff_login(client, "wrong", spoofed=f"10.0.{i}.1, 203.0.113.7")) for i in range(6)]
    assert tries == ["not_authenticated"] * 5 + ["throttled"]
    assert outcome(staff_login(client, "wrong", spoofed="10.0.0.1, 203.0.113.8")) == "not_authenticated"


def test_the_otp_request_records_the_address_from_the_trusted_header_position(anonymous, settings):
    settings.NUM_PROXIES = 1
    response = anonymous.post(
        "/api/v1/auth/otp", {"phone": "138 0013 8000"}, format="json", HTTP_X_FORWARDED_FOR="10.9.9.9, 203.0.113.7"
    )
    assert response.status_code == 202
    assert OtpChallenge.objects.get().ip_address == "203.0.113.7"

    settings.NUM_PROXIES = 0
    response = anonymous.post(
        "/api/v1/auth/otp", {"phone": "139 0013 9000"}, format="json", HTTP_X_FORWARDED_FOR="203.0.113.7"
    )
    assert response.status_code == 202
    assert OtpChallenge.objects.latest("id").ip_address == "127.0.0.1"


# --- Parallel tries (PostgreSQL) --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_wrong_tries_cannot_exceed_the_failure_limit(clerk_a, limits):
    limits.STAFF_LOGIN_RATE = "1000/min"
    limits.STAFF_LOGIN_USERNAME_RATE = "1000/min"
    limits.STAFF_LOGIN_MAX_FAILURES = 5
    count = 20
    barrier, responses = threading.Barrier(count), [None] * count

    def worker(index):
        try:
            barrier.wait()
            responses[index] = staff_login(APIClient(), f"wrong-{index}", REMOTE_ADDR=f"192.0.2.{index + 1}")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(map(outcome, responses)) == {"not_authenticated": 5, "login_locked": 15}
    assert AuditEntry.objects.filter(action="staff_login.locked").count() == 1
    assert outcome(staff_login(APIClient(), PASSWORD)) == "login_locked"
