"""Finding 2: members minted points by back-dating sign-ins (and shares, to dodge the daily cap).

An engagement event happens now: a client's occurred_at may differ from the server's clock by at most
EVENT_CLOCK_SKEW_SECONDS (default 300) either way, else 400 invalid on occurred_at and nothing is written; within
the skew it is ignored (the event counts for the server's now and its business date)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from points.models import Event, LedgerEntry, PointsAccount
from tests.conftest import member_client

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 on 10 March in Shanghai
SIGN_IN = "/api/v1/me/sign-in/"
EVENTS = "/api/v1/events/"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def balance(member):
    account = PointsAccount.objects.filter(member=member).first()
    return (account.available + account.pending) if account else 0


def assert_refused(response, member):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == ["occurred_at"]
    assert balance(member) == 0
    assert not Event.objects.filter(member=member).exists()
    assert not LedgerEntry.objects.filter(member=member).exists()


def me(member):
    return member_client(member)


def test_thirty_back_dated_sign_ins_earn_nothing(member_a):
    client = me(member_a)
    for days in range(30, 0, -1):
        response = client.post(SIGN_IN, {"occurred_at": (NOW - timedelta(days=days)).isoformat()}, format="json")
        assert response.status_code == 400, response.content
    assert_refused(response, member_a)
    assert client.post(SIGN_IN, {}, format="json").status_code == 201
    assert balance(member_a) == 5  # one sign-in today, no streak


@pytest.mark.parametrize(
    "offset",
    [timedelta(days=-1), timedelta(minutes=-6), timedelta(seconds=-301), timedelta(seconds=301), timedelta(hours=20)],
)
def test_my_sign_in_outside_the_clock_skew_is_400(member_a, offset):
    response = me(member_a).post(SIGN_IN, {"occurred_at": (NOW + offset).isoformat()}, format="json")
    assert_refused(response, member_a)


@pytest.mark.parametrize("offset", [timedelta(seconds=-300), timedelta(seconds=300), timedelta(0)])
def test_my_sign_in_within_the_clock_skew_counts_for_now(member_a, offset):
    response = me(member_a).post(SIGN_IN, {"occurred_at": (NOW + offset).isoformat()}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["points"]["awarded"] == 5
    event = Event.objects.get(member=member_a)
    assert (event.occurred_at, event.business_date.isoformat()) == (NOW, "2026-03-10")


def test_a_sign_in_just_after_midnight_with_a_clock_behind_counts_for_today(member_a):
    midnight = datetime(2026, 3, 10, 16, 0, 30, tzinfo=UTC)  # 00:00:30 on 11 March in Shanghai
    with time_machine.travel(midnight, tick=False):
        client = me(member_a)
        early = client.post(SIGN_IN, {"occurred_at": (midnight - timedelta(minutes=2)).isoformat()}, format="json")
        assert early.status_code == 201, early.content
        assert Event.objects.get(member=member_a).business_date.isoformat() == "2026-03-11"
        again = client.post(SIGN_IN, {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "already_signed_in"
    assert balance(member_a) == 5


def test_the_skew_is_an_operator_setting(member_a, settings):
    settings.EVENT_CLOCK_SKEW_SECONDS = 60
    refused = me(member_a).post(SIGN_IN, {"occurred_at": (NOW - timedelta(seconds=61)).isoformat()}, format="json")
    assert_refused(refused, member_a)
    settings.EVENT_CLOCK_SKEW_SECONDS = 3600
    accepted = me(member_a).post(SIGN_IN, {"occurred_at": (NOW - timedelta(minutes=59)).isoformat()}, format="json")
    assert accepted.status_code == 201, accepted.content
    assert balance(member_a) == 5


def post_event(client, member, event_type, key, occurred_at=None):
    body = {"member": str(member.pk), "type": event_type}
    if occurred_at is not None:
        body["occurred_at"] = occurred_at.isoformat()
    return client.post(EVENTS, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize("offset", [timedelta(days=-3), timedelta(minutes=-10), timedelta(hours=12)])
@pytest.mark.parametrize("event_type", ["sign_in", "share"])
def test_events_back_dated_or_from_the_future_are_400(pos_a, member_a, event_type, offset):
    assert_refused(post_event(pos_a, member_a, event_type, "old", NOW + offset), member_a)


def test_back_dated_sign_in_events_cannot_build_a_streak(pos_a, member_a):
    for days in range(30, 0, -1):
        response = post_event(pos_a, member_a, "sign_in", f"s{days}", NOW - timedelta(days=days))
        assert response.status_code == 400, response.content
    assert balance(member_a) == 0
    assert post_event(pos_a, member_a, "sign_in", "today").json()["points"]["awarded"] == 5
    assert post_event(pos_a, member_a, "sign_in", "again", NOW - timedelta(minutes=1)).status_code == 409


def test_back_dated_shares_do_not_dodge_the_daily_cap(pos_a, member_a):
    awarded = [post_event(pos_a, member_a, "share", f"today-{i}").json()["points"]["awarded"] for i in range(3)]
    assert awarded == [2, 2, 2]
    for days in range(1, 6):
        assert post_event(pos_a, member_a, "share", f"past-{days}", NOW - timedelta(days=days)).status_code == 400
    fourth = post_event(pos_a, member_a, "share", "today-4", NOW - timedelta(seconds=30))
    assert fourth.status_code == 201
    assert (fourth.json()["points"]["awarded"], fourth.json()["capped"]) == (0, True)
    assert balance(member_a) == 6
    assert Event.objects.filter(member=member_a).count() == 4


def test_a_retry_of_an_accepted_event_replays_after_the_skew_has_passed(pos_a, member_a):
    first = post_event(pos_a, member_a, "share", "retry", NOW)
    assert first.status_code == 201
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        replay = post_event(pos_a, member_a, "share", "retry", NOW)
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert replay.json() == first.json()
    assert balance(member_a) == 2
