"""Finding 9: member tokens could not be revoked. Refresh tokens are kept server-side (only a hash) and rotated: each
refresh uses its token up and answers the next; a used token presented again revokes its whole login (family); a
member logs out by revoking her family; and a freeze, an anonymisation, a merge or a phone change bumps the
member's token version, so every access and refresh token issued before is refused (401 not_authenticated)."""

import hashlib
import re
import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.core import signing
from django.db import connection
from rest_framework.test import APIClient

from loyalty.models import Message
from members.models import Member, MemberRefreshToken, MemberStatus

pytestmark = pytest.mark.django_db

OTP_URL = "/api/v1/auth/otp"
TOKEN_URL = "/api/v1/auth/member-token"
REFRESH_URL = "/api/v1/auth/member-token/refresh"
LOGOUT_URL = "/api/v1/auth/member-token/logout"
ME_URL = "/api/v1/me/"
MEMBERS_URL = "/api/v1/members/"
PHONE = "+8613800138000"  # member_a's phone
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CODE_RE = re.compile(r"\b(\d{6})\b")
SALT = "members.member-token"


@pytest.fixture(autouse=True)
def _codes_without_cool_down(settings):
    """Several logins of one phone in a row (her devices): the OTP limits are tests/security/test_otp_rate_limits."""
    settings.OTP_RESEND_INTERVAL = timedelta(0)


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def outcome(response):
    return response.status_code if response.status_code < 400 else response.json()["code"]


def login(phone=PHONE, address="203.0.113.10"):
    """Log in as the owner of the phone would, through the API: ask for a code, read it on the phone, send it."""
    client = APIClient(REMOTE_ADDR=address)
    assert client.post(OTP_URL, {"phone": phone}, format="json").status_code == 202
    code = CODE_RE.search(Message.objects.filter(recipient=phone, kind="otp").latest("id").body).group(1)
    response = client.post(TOKEN_URL, {"phone": phone, "code": code}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token):
    return APIClient().post(REFRESH_URL, {"refresh": token}, format="json")


def logout(token):
    return APIClient().post(LOGOUT_URL, {"refresh": token}, format="json")


def me(access):
    return APIClient().get(ME_URL, HTTP_AUTHORIZATION=f"Bearer {access}")


# --- Rotation and reuse -----------------------------------------------------------------------------------------


def test_a_refresh_answers_a_new_pair_and_uses_the_refresh_token_up(member_a):
    first = login()

    rotated = refresh(first["refresh"])

    assert rotated.status_code == 200
    pair = rotated.json()
    assert set(pair) == {"access", "refresh"}
    assert pair["refresh"] != first["refresh"]
    assert me(pair["access"]).json()["id"] == str(member_a.pk)
    assert outcome(refresh(pair["refresh"])) == 200  # the next one works, once
    rows = MemberRefreshToken.objects.order_by("id")
    assert len({row.family for row in rows}) == 1
    assert [row.used_at is not None for row in rows] == [True, True, False]


def test_a_refresh_token_presented_again_revokes_every_token_of_its_login(member_a):
    stolen = login()
    on_another_phone = login(address="198.51.100.7")  # her second device: another login, another family
    legit = refresh(stolen["refresh"]).json()  # the app rotated; the thief kept a copy of the old token

    replay = refresh(stolen["refresh"])

    assert replay.status_code == 401
    assert replay.json()["code"] == "not_authenticated"
    assert outcome(refresh(legit["refresh"])) == "not_authenticated"  # the whole family is revoked
    assert outcome(refresh(on_another_phone["refresh"])) == 200  # her other login is not


def test_only_a_hash_of_a_refresh_token_is_stored(member_a):
    tokens = login()

    row = MemberRefreshToken.objects.get()

    assert row.token_hash == hashlib.sha256(tokens["refresh"].encode()).hexdigest()
    stored = [str(value) for value in MemberRefreshToken.objects.values_list(flat=False).get()]
    assert tokens["refresh"] not in stored


def test_a_login_expires_after_the_refresh_ttl_however_often_it_was_refreshed(member_a, frozen):
    tokens = login()
    frozen.shift(settings.MEMBER_REFRESH_TOKEN_TTL - timedelta(days=1))
    tokens = refresh(tokens["refresh"]).json()

    frozen.shift(timedelta(days=1))

    assert outcome(refresh(tokens["refresh"])) == "not_authenticated"


@pytest.mark.parametrize("kind", ["forged", "signed"])
def test_a_refresh_token_never_issued_is_refused(member_a, kind):
    # "signed": a refresh token of the old kind (signed, reusable for 30 days), no longer accepted.
    token = "forged" if kind == "forged" else signing.dumps({"m": member_a.pk, "k": "refresh"}, salt=SALT)

    response = refresh(token)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_an_access_token_is_not_a_refresh_token_and_the_other_way_round(member_a):
    tokens = login()

    assert outcome(refresh(tokens["access"])) == "not_authenticated"
    assert outcome(me(tokens["refresh"])) == "not_authenticated"


# --- Logout -----------------------------------------------------------------------------------------------------


def test_logout_revokes_the_login_and_leaves_her_other_logins(member_a):
    tokens = login()
    other = login(address="198.51.100.7")
    current = refresh(tokens["refresh"]).json()

    response = logout(current["refresh"])

    assert response.status_code == 204
    assert outcome(refresh(current["refresh"])) == "not_authenticated"
    assert outcome(refresh(tokens["refresh"])) == "not_authenticated"
    assert outcome(logout(current["refresh"])) == 204  # idempotent
    assert outcome(refresh(other["refresh"])) == 200


def test_logout_with_a_token_never_issued_is_not_authenticated(member_a):
    response = logout("forged")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_logout_without_a_refresh_token_is_invalid(member_a):
    response = APIClient().post(LOGOUT_URL, {}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "refresh" in response.json()["errors"]


# --- Freeze, anonymise, merge and a phone change end her tokens -------------------------------------------------


def freeze(admin_api, member):
    return admin_api.post(f"{MEMBERS_URL}{member.pk}/freeze/", {"reason": "stolen phone"}, format="json")


def anonymise(admin_api, member):
    return admin_api.post(f"{MEMBERS_URL}{member.pk}/anonymise/", {"reason": "her request"}, format="json")


def change_phone(admin_api, member):
    return admin_api.patch(f"{MEMBERS_URL}{member.pk}/", {"phone": "+8613700137000"}, format="json")


def merge_away(admin_api, member):
    survivor = Member.objects.get(phone="+8613900139000")
    return admin_api.post(
        f"{MEMBERS_URL}{survivor.pk}/merge/", {"duplicate": str(member.pk), "reason": "same person"}, format="json"
    )


@pytest.mark.parametrize("action", [freeze, anonymise, change_phone, merge_away])
def test_a_freeze_an_anonymisation_a_merge_or_a_phone_change_ends_every_token_issued_before(
    admin_api, member_a, member_b, action
):
    before = login()
    rotated = refresh(before["refresh"]).json()
    assert outcome(me(rotated["access"])) == 200

    assert action(admin_api, member_a).status_code in (200, 201)

    for access in (before["access"], rotated["access"]):
        refused = me(access)
        assert refused.status_code == 401
        assert refused.json()["code"] == "not_authenticated"
    assert outcome(refresh(rotated["refresh"])) == "not_authenticated"
    assert Member.objects.get(pk=member_a.pk).token_version == 1


def test_after_a_freeze_and_a_new_login_the_new_tokens_work(admin_api, member_a, frozen):
    old = login()
    freeze(admin_api, member_a)
    frozen.shift(settings.OTP_RESEND_INTERVAL)

    new = login()

    assert Member.objects.get(pk=member_a.pk).status == MemberStatus.FROZEN
    assert outcome(me(new["access"])) == 200
    assert outcome(refresh(new["refresh"])) == 200
    assert outcome(me(old["access"])) == "not_authenticated"


def test_a_change_that_does_not_touch_her_phone_keeps_her_tokens(admin_api, member_a):
    tokens = login()

    assert admin_api.patch(f"{MEMBERS_URL}{member_a.pk}/", {"name": "新名字"}, format="json").status_code == 200

    assert outcome(me(tokens["access"])) == 200
    assert outcome(refresh(tokens["refresh"])) == 200


def test_an_access_token_of_an_older_version_is_refused_within_its_ttl(member_a):
    tokens = login()
    Member.objects.filter(pk=member_a.pk).update(token_version=1)

    assert outcome(me(tokens["access"])) == "not_authenticated"


# --- Parallel refreshes (PostgreSQL) ----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_refreshes_with_one_token_give_exactly_one_success(member_a):
    tokens = login()
    count = 8
    barrier, responses = threading.Barrier(count), [None] * count

    def worker(index):
        try:
            barrier.wait()
            responses[index] = refresh(tokens["refresh"])
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(map(outcome, responses)) == {200: 1, "not_authenticated": count - 1}
    assert MemberRefreshToken.objects.count() == 2  # the login's token and the one next token issued
    # The others presented a used token: the family is revoked, the winner's next token with it.
    winner = next(response.json() for response in responses if response.status_code == 200)
    assert outcome(refresh(winner["refresh"])) == "not_authenticated"
    assert MemberRefreshToken.objects.filter(revoked_at__isnull=True).count() == 0
