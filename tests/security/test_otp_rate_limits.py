"""Finding 10: the OTP rate limits raced and could be turned against members. Code requests are counted under row
locks (one per phone, one per client address), so parallel requests cannot slip past a limit; the address is the
one loyalty.network.client_ip trusts (X-Forwarded-For only behind NUM_PROXIES proxies); and wrong guesses burn a
code only for the addresses that did not ask for it, so an attacker guessing against a phone cannot stop its owner
from asking for a fresh code after the cool-down and logging in with it."""

import re
import threading
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from loyalty.models import Message
from members.models import OtpChallenge

pytestmark = pytest.mark.django_db

OTP_URL = "/api/v1/auth/otp"
TOKEN_URL = "/api/v1/auth/member-token"
ME_URL = "/api/v1/me/"
PHONE = "+8613800138000"  # member_a's phone
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CODE_RE = re.compile(r"\b(\d{6})\b")

OWNER = "203.0.113.10"
ATTACKER = "198.51.100.66"


@pytest.fixture
def frozen():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def outcome(response):
    return response.status_code if response.status_code < 400 else response.json()["code"]


def ask(phone=PHONE, address="127.0.0.1", forwarded=None):
    extra = {"REMOTE_ADDR": address}
    if forwarded:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return APIClient().post(OTP_URL, {"phone": phone}, format="json", **extra)


def guess(code, address, phone=PHONE):
    return APIClient().post(TOKEN_URL, {"phone": phone, "code": code}, format="json", REMOTE_ADDR=address)


def code_sent(phone=PHONE):
    """The code in the newest SMS to the phone: what the owner reads on her phone (the outbox keeps it whole)."""
    message = Message.objects.filter(recipient=phone, kind="otp").latest("id")
    return CODE_RE.search(message.body).group(1)


def wrong(code, shift=1):
    return f"{(int(code) + shift) % 10**6:06d}"


def in_parallel(count, request):
    barrier, responses = threading.Barrier(count), [None] * count

    def worker(index):
        try:
            barrier.wait()
            responses[index] = request(index)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


# --- Parallel requests (PostgreSQL) -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twelve_parallel_code_requests_for_one_phone_issue_exactly_one_code(member_a):
    responses = in_parallel(12, lambda index: ask())

    assert Counter(map(outcome, responses)) == {202: 1, "throttled": 11}
    assert OtpChallenge.objects.filter(phone=PHONE).count() == 1
    assert Message.objects.filter(recipient=PHONE, kind="otp").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twelve_parallel_code_requests_for_different_phones_from_one_address_keep_its_hourly_limit(db, settings):
    settings.OTP_MAX_PER_IP_PER_HOUR = 5

    responses = in_parallel(12, lambda index: ask(phone=f"+86139123456{index:02d}", address="192.0.2.7"))

    assert Counter(map(outcome, responses)) == {202: 5, "throttled": 7}
    assert OtpChallenge.objects.filter(ip_address="192.0.2.7").count() == 5
    assert Message.objects.filter(kind="otp").count() == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twelve_parallel_wrong_guesses_count_exactly_against_the_code(member_a):
    assert outcome(ask(address=OWNER)) == 202
    sent = code_sent()

    responses = in_parallel(12, lambda index: guess(wrong(sent, index + 1), f"192.0.2.{index + 1}"))

    assert Counter(map(outcome, responses)) == {"otp_invalid": 5, "throttled": 7}
    assert OtpChallenge.objects.get().foreign_attempts == 5
    assert outcome(guess(sent, OWNER)) == 200  # her own attempts are untouched


# --- The client address -----------------------------------------------------------------------------------------


def test_a_spoofed_x_forwarded_for_does_not_escape_the_per_address_limit_without_a_trusted_proxy(db, settings):
    settings.NUM_PROXIES = 0
    settings.OTP_MAX_PER_IP_PER_HOUR = 3

    tries = [outcome(ask(phone=f"+86139123456{i:02d}", address="192.0.2.7", forwarded=f"10.0.{i}.1")) for i in range(5)]

    assert tries == [202, 202, 202, "throttled", "throttled"]
    assert set(OtpChallenge.objects.values_list("ip_address", flat=True)) == {"192.0.2.7"}


def test_behind_one_trusted_proxy_different_clients_are_counted_apart(db, settings):
    settings.NUM_PROXIES = 1
    settings.OTP_MAX_PER_IP_PER_HOUR = 2
    proxy = "10.0.0.2"  # every request reaches us from the proxy; it appends the address it saw

    # The client writes whatever it likes in front; only the entry the proxy appended counts.
    first = [
        outcome(ask(phone=f"+86139123456{i:02d}", address=proxy, forwarded=f"10.9.{i}.9, 203.0.113.7"))
        for i in range(3)
    ]
    second = [
        outcome(ask(phone=f"+86139123457{i:02d}", address=proxy, forwarded=f"10.8.{i}.8, 203.0.113.8"))
        for i in range(3)
    ]

    assert first == [202, 202, "throttled"]
    assert second == [202, 202, "throttled"]  # not one global limit for everyone behind the proxy
    assert Counter(OtpChallenge.objects.values_list("ip_address", flat=True)) == {"203.0.113.7": 2, "203.0.113.8": 2}


# --- Wrong guesses do not lock the owner out --------------------------------------------------------------------


def test_an_attackers_wrong_guesses_burn_the_code_but_the_owner_logs_in_with_a_fresh_one(member_a, frozen):
    assert settings.OTP_MAX_ATTEMPTS == 5
    # The attacker asks for a code to her phone and guesses, from addresses of his choosing.
    assert outcome(ask(address=ATTACKER)) == 202
    sent = code_sent()
    attacker_tries = [outcome(guess(wrong(sent, i), f"198.51.100.{i}")) for i in range(1, 8)]
    assert attacker_tries == ["otp_invalid"] * 5 + ["throttled"] * 2
    # The code on her phone is burnt for her too (she did not ask for it); after the cool-down she asks afresh.
    assert outcome(guess(sent, OWNER)) == "throttled"
    too_soon = ask(address=OWNER)
    assert outcome(too_soon) == "throttled"
    assert too_soon["Retry-After"] == "60"
    frozen.shift(settings.OTP_RESEND_INTERVAL.total_seconds())
    assert outcome(ask(address=OWNER)) == 202
    fresh = code_sent()

    # The attacker keeps guessing: from his own address at the code he asked for (it has not lost a guess from
    # there yet), from a new address at the newest code, hers. Her fresh code stays hers.
    from_his_address = [outcome(guess(wrong(fresh, i), ATTACKER)) for i in range(1, 7)]
    from_elsewhere = [outcome(guess(wrong(fresh, i), "192.0.2.1")) for i in range(1, 9)]
    assert from_his_address == ["otp_invalid"] * 5 + ["throttled"]
    assert from_elsewhere == ["otp_invalid"] * 5 + ["throttled"] * 3
    hers = OtpChallenge.objects.get(ip_address=OWNER)
    assert (hers.attempts, hers.foreign_attempts) == (0, 5)
    login = guess(fresh, OWNER)

    assert login.status_code == 200
    assert login.json()["member"]["id"] == str(member_a.pk)
    assert APIClient().get(ME_URL, HTTP_AUTHORIZATION=f"Bearer {login.json()['access']}").status_code == 200
    assert OtpChallenge.objects.filter(used_at__isnull=True).count() == 0  # her login used up every code


def test_a_code_takes_at_most_twice_the_attempt_limit_in_wrong_guesses_whoever_guesses(member_a, frozen):
    """The attacker asked for the code himself: his own address and every other address together get
    2 x OTP_MAX_ATTEMPTS wrong guesses at it, then even the right code is refused everywhere."""
    assert outcome(ask(address=ATTACKER)) == 202
    sent = code_sent()

    own = [outcome(guess(wrong(sent, i), ATTACKER)) for i in range(1, 7)]
    others = [outcome(guess(wrong(sent, i), f"192.0.2.{i}")) for i in range(1, 7)]

    assert own == ["otp_invalid"] * 5 + ["throttled"]
    assert others == ["otp_invalid"] * 5 + ["throttled"]
    assert outcome(guess(sent, ATTACKER)) == "throttled"
    assert outcome(guess(sent, "192.0.2.99")) == "throttled"
    challenge = OtpChallenge.objects.get()
    assert (challenge.attempts, challenge.foreign_attempts, challenge.used_at) == (5, 5, None)


def test_the_owners_typos_count_against_her_own_attempts_only(member_a, frozen):
    assert outcome(ask(address=OWNER)) == 202
    sent = code_sent()
    assert [outcome(guess(wrong(sent, i), ATTACKER)) for i in range(1, 6)] == ["otp_invalid"] * 5

    typos = [outcome(guess(wrong(sent, i), OWNER)) for i in range(1, 5)]

    assert typos == ["otp_invalid"] * 4
    assert outcome(guess(sent, OWNER)) == 200
