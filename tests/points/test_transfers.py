"""Points transfers within a household (SPEC §5): off by default; two transfer entries in one transaction; the
points leave first-expiring-first and keep their expiry; a daily limit per sending member; idempotent; A→B and
B→A at the same moment finish without a deadlock. Exact balances, entries and error codes."""

import threading
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from loyalty.credentials import create_api_client
from loyalty.models import AuditEntry
from members.models import Member
from members.services import freeze_member, link_household
from points import services
from points.audit import ledger_mismatches
from points.models import (
    IdempotencyRecord,
    LedgerEntry,
    LotStatus,
    PointsAccount,
    PointsLot,
    PointsPolicy,
    PointsTransfer,
)
from tests.conftest import ALL_SCOPES, member_client, staff_client
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import adjust, assert_ledger_consistent, purchase, refund

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
RESULT_FIELDS = {"id", "member", "to", "points", "reason", "business_date", "created_at", "balance", "lots"}


@pytest.fixture(autouse=True)
def fixed_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def allow_transfers(daily_limit=1000):
    return PointsPolicy.objects.create(
        valid_from=datetime(2026, 1, 1, tzinfo=SHANGHAI), transfers_enabled=True, transfer_daily_limit=daily_limit
    )


def transfers_url(member):
    return f"/api/v1/members/{member.pk}/points/transfers/"


def post(client, path, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(path, body, format="json", **headers)


def assert_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    return body


def api_client(scopes=None):
    _, key = create_api_client(name=f"app-{uuid.uuid4()}", all_stores=True, scopes=scopes or ALL_SCOPES)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def available(member):
    account = PointsAccount.objects.filter(member=member).first()
    return account.available if account else 0


def give(member, points, at):
    with time_machine.travel(at, tick=False):
        adjust(member, points)


def written():
    return (
        LedgerEntry.objects.count(),
        PointsTransfer.objects.count(),
        PointsLot.objects.count(),
        IdempotencyRecord.objects.count(),
    )


@pytest.fixture
def mother(store_a):
    return MemberFactory(home_store=store_a, phone="+8613800138001")


@pytest.fixture
def daughter(store_a):
    return MemberFactory(home_store=store_a, phone="+8613800138002")


@pytest.fixture
def family(mother, daughter):
    link_household(actor="staff:clerk", member=mother, other=daughter)
    return mother, daughter


# --- The rules ------------------------------------------------------------------------------------------------


def test_transfers_are_off_by_default_409_transfer_disabled(admin_api, family):
    mother, daughter = family
    adjust(mother, 500)
    before = written()

    assert_error(
        post(admin_api, transfers_url(mother), {"to": str(daughter.pk), "points": 100}, key="t1"),
        409,
        "transfer_disabled",
    )

    assert (available(mother), available(daughter)) == (500, 0)
    assert written() == before


def test_a_transfer_moves_points_first_expiring_first_and_they_keep_their_expiry(admin_api, family):
    mother, daughter = family
    allow_transfers()
    give(mother, 300, datetime(2025, 6, 1, 10, 0, tzinfo=SHANGHAI))  # last valid day 2026-06-01
    give(mother, 500, datetime(2025, 9, 1, 10, 0, tzinfo=SHANGHAI))  # last valid day 2026-09-01
    first, second = PointsLot.objects.filter(member=mother).order_by("id")

    response = post(
        admin_api, transfers_url(mother), {"to": str(daughter.pk), "points": 400, "reason": "gift"}, key="t1"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == RESULT_FIELDS
    assert (body["member"], body["to"], body["points"], body["reason"], body["balance"], body["business_date"]) == (
        str(mother.pk),
        str(daughter.pk),
        400,
        "gift",
        400,
        "2026-03-10",
    )
    assert body["lots"] == [{"points": 300, "expires_on": "2026-06-01"}, {"points": 100, "expires_on": "2026-09-01"}]
    assert (available(mother), available(daughter)) == (400, 400)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.remaining, second.remaining) == (0, 400)
    arrived = list(
        PointsLot.objects.filter(member=daughter)
        .order_by("expires_at")
        .values_list("points", "remaining", "status", "expires_at")
    )
    assert arrived == [
        (300, 300, LotStatus.AVAILABLE, first.expires_at),
        (100, 100, LotStatus.AVAILABLE, second.expires_at),
    ]
    out_entry, in_entry = LedgerEntry.objects.filter(kind="transfer").order_by("id")
    assert (out_entry.member_id, out_entry.points, out_entry.balance_after, out_entry.reference, out_entry.actor) == (
        mother.pk,
        -400,
        400,
        f"member:{daughter.pk}",
        "staff:boss",
    )
    assert out_entry.reason == f"transfer to {daughter.member_no}: gift"
    assert (in_entry.member_id, in_entry.points, in_entry.balance_after, in_entry.reference) == (
        daughter.pk,
        400,
        400,
        f"member:{mother.pk}",
    )
    assert in_entry.expires_at == first.expires_at  # the soonest of what arrived
    transfer = PointsTransfer.objects.get()
    assert (transfer.out_entry, transfer.in_entry, transfer.points) == (out_entry, in_entry, 400)
    audit = AuditEntry.objects.get(action="points.transferred")
    assert (audit.actor, audit.target_id, audit.new_values) == (
        "staff:boss",
        str(mother.pk),
        {"transfer": transfer.pk, "to": daughter.pk, "points": 400, "reason": "gift"},
    )
    # Her ledger through the API shows the entry of her side only.
    ledger = admin_api.get(f"/api/v1/members/{daughter.pk}/points/ledger/?kind=transfer").json()["results"]
    assert [(e["kind"], e["points"], e["balance_after"]) for e in ledger] == [("transfer", 400, 400)]


def test_moved_points_expire_on_their_original_day(family):
    mother, daughter = family
    allow_transfers()
    give(mother, 300, datetime(2025, 6, 1, 10, 0, tzinfo=SHANGHAI))
    services.transfer_points(
        actor="test",
        scope="s",
        key="k",
        fingerprint="f",
        from_member_id=mother.pk,
        to_member_id=daughter.pk,
        points=200,
    )

    services.expire_points(as_of=date(2026, 6, 1))

    assert (available(mother), available(daughter)) == (0, 0)
    expired = LedgerEntry.objects.filter(kind="expire").order_by("member_id").values_list("member_id", "points")
    assert sorted(expired) == sorted([(mother.pk, -100), (daughter.pk, -200)])


def test_only_members_of_one_household_transfer(admin_api, mother, daughter, store_a):
    allow_transfers()
    adjust(mother, 500)
    before = written()

    assert_error(
        post(admin_api, transfers_url(mother), {"to": str(daughter.pk), "points": 100}, key="t1"),
        409,
        "not_same_household",
    )
    stranger, neighbour = MemberFactory.create_batch(2, home_store=store_a)
    link_household(actor="x", member=mother, other=daughter)
    link_household(actor="x", member=stranger, other=neighbour)
    assert_error(
        post(admin_api, transfers_url(mother), {"to": str(stranger.pk), "points": 100}, key="t2"),
        409,
        "not_same_household",
    )

    assert (available(mother), available(daughter), available(stranger)) == (500, 0, 0)
    assert written() == before


def test_the_daily_limit_counts_what_a_member_sent_on_the_business_day(admin_api, family, store_a):
    mother, daughter = family
    son = MemberFactory(home_store=store_a)
    link_household(actor="x", member=son, other=mother)
    allow_transfers(daily_limit=1000)
    adjust(mother, 3000)

    assert post(admin_api, transfers_url(mother), {"to": str(daughter.pk), "points": 600}, key="t1").status_code == 201
    body = assert_error(
        post(admin_api, transfers_url(mother), {"to": str(son.pk), "points": 401}, key="t2"), 409, "transfer_limit"
    )
    assert (body["limit"], body["sent_today"]) == (1000, 600)
    assert post(admin_api, transfers_url(mother), {"to": str(son.pk), "points": 400}, key="t3").status_code == 201
    assert (
        post(admin_api, transfers_url(daughter), {"to": str(son.pk), "points": 600}, key="t4").status_code == 201
    )  # the limit is per sending member
    assert_error(
        post(admin_api, transfers_url(mother), {"to": str(son.pk), "points": 1}, key="t5"), 409, "transfer_limit"
    )

    # The next business day starts at midnight in Shanghai.
    with time_machine.travel(datetime(2026, 3, 11, 0, 0, tzinfo=SHANGHAI), tick=False):
        tomorrow_api = staff_client(StaffUserFactory(role="admin"))  # the first token lasts 12 hours
        assert (
            post(tomorrow_api, transfers_url(mother), {"to": str(son.pk), "points": 1000}, key="t6").status_code == 201
        )
    assert (available(mother), available(daughter), available(son)) == (1000, 0, 2000)


def test_more_than_her_available_points_is_409_insufficient_points(admin_api, family, store_a):
    mother, daughter = family
    allow_transfers()
    adjust(mother, 100)
    purchase(mother, 500)  # 500 pending points are not hers to give yet
    before = written()

    body = assert_error(
        post(admin_api, transfers_url(mother), {"to": str(daughter.pk), "points": 101}, key="t1"),
        409,
        "insufficient_points",
    )

    assert (body["available"], body["required"]) == (100, 101)
    assert (available(mother), available(daughter)) == (100, 0)
    assert written() == before


@pytest.mark.parametrize("frozen", ["sender", "receiver"])
def test_a_frozen_member_neither_gives_nor_receives(admin_api, family, frozen):
    mother, daughter = family
    allow_transfers()
    adjust(mother, 500)
    freeze_member(actor="x", member=mother if frozen == "sender" else daughter, reason="fraud check", role="admin")
    before = written()

    assert_error(
        post(admin_api, transfers_url(mother), {"to": str(daughter.pk), "points": 100}, key="t1"), 409, "member_frozen"
    )

    assert (available(mother), available(daughter)) == (500, 0)
    assert written() == before


def test_a_retry_with_the_same_key_replays_and_another_body_is_refused(admin_api, family):
    mother, daughter = family
    allow_transfers()
    adjust(mother, 500)
    body = {"to": str(daughter.pk), "points": 100}

    first = post(admin_api, transfers_url(mother), body, key="t1")
    again = post(admin_api, transfers_url(mother), body, key="t1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert_error(post(admin_api, transfers_url(mother), {**body, "points": 101}, key="t1"), 409, "idempotency_conflict")
    assert_error(post(admin_api, transfers_url(mother), body), 400, "idempotency_key_required")
    assert PointsTransfer.objects.count() == 1
    assert (available(mother), available(daughter)) == (400, 100)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"points": 10}, "to"),
        ({"to": "abc", "points": 10}, "to"),
        ({"to": "1"}, "points"),
        ({"to": "1", "points": 0}, "points"),
        ({"to": "1", "points": "10"}, "points"),
        ({"to": "1", "points": 10, "reason": "x" * 151}, "reason"),
    ],
)
def test_bad_input_is_400_and_writes_nothing(admin_api, family, body, field):
    mother, _ = family
    before = written()
    response = assert_error(post(admin_api, transfers_url(mother), body, key="t1"), 400, "invalid")
    assert field in response["errors"]
    assert written() == before


def test_to_herself_or_an_unknown_member_is_400(admin_api, family):
    mother, _ = family
    allow_transfers()
    adjust(mother, 500)
    before = written()
    assert (
        "to"
        in assert_error(
            post(admin_api, transfers_url(mother), {"to": str(mother.pk), "points": 1}, key="a"), 400, "invalid"
        )["errors"]
    )
    assert (
        "to"
        in assert_error(post(admin_api, transfers_url(mother), {"to": "999999", "points": 1}, key="b"), 400, "invalid")[
            "errors"
        ]
    )
    assert written() == before


def test_a_receiver_in_debt_pays_it_off_first(family):
    mother, daughter = family
    allow_transfers()
    adjust(mother, 500)
    with time_machine.travel(NOW - timedelta(days=10), tick=False):
        order = purchase(daughter, 100)  # 100 points pending for 7 days
    services.release_pending(now=NOW)
    adjust(daughter, -100)
    refund(order["id"], "100.00")  # claws back 100 she already spent: -100
    assert available(daughter) == -100

    result = services.transfer_points(
        actor="test",
        scope="s",
        key="k",
        fingerprint="f",
        from_member_id=mother.pk,
        to_member_id=daughter.pk,
        points=150,
    ).result

    assert result["balance"] == 350
    assert (available(mother), available(daughter)) == (350, 50)
    assert PointsLot.objects.filter(member=daughter, status=LotStatus.DEBT).get().remaining == 0
    assert_ledger_consistent()


# --- Who may transfer -------------------------------------------------------------------------------------------


def test_a_client_app_with_points_write_transfers_for_its_stores_members(pos_a, family, member_b, store_b):
    mother, daughter = family
    allow_transfers()
    adjust(mother, 500)

    assert post(pos_a, transfers_url(mother), {"to": str(daughter.pk), "points": 50}, key="t1").status_code == 201
    assert_error(
        post(pos_a, transfers_url(member_b), {"to": str(daughter.pk), "points": 50}, key="t2"), 404, "not_found"
    )
    assert_error(
        post(
            api_client(scopes=["points:read"]), transfers_url(mother), {"to": str(daughter.pk), "points": 50}, key="t3"
        ),
        403,
        "permission_denied",
    )
    assert (available(mother), available(daughter)) == (450, 50)


def test_a_member_gives_points_to_her_household_herself(family, store_a):
    mother, daughter = family
    allow_transfers()
    adjust(mother, 500)
    me = member_client(mother)

    household = me.get("/api/v1/me/household/")
    response = post(me, "/api/v1/me/points/transfers/", {"to": str(daughter.pk), "points": 120}, key="m1")

    assert household.status_code == 200
    assert household.json() == {
        "id": str(Member.objects.get(pk=mother.pk).household_id),
        "members": [{"id": str(daughter.pk), "member_no": daughter.member_no, "name": daughter.name}],
    }
    assert response.status_code == 201, response.content
    assert (response.json()["balance"], PointsTransfer.objects.get().actor) == (380, f"member:{mother.pk}")
    assert (available(mother), available(daughter)) == (380, 120)
    # To a member, an id outside her household is just that, whether or not it exists.
    stranger = MemberFactory(home_store=store_a)
    for target in (str(stranger.pk), "999999"):
        assert_error(
            post(me, "/api/v1/me/points/transfers/", {"to": target, "points": 1}, key=f"x{target}"),
            409,
            "not_same_household",
        )
    assert member_client(stranger).get("/api/v1/me/household/").json() == {"id": None, "members": []}


def test_the_schema_describes_the_transfer_routes(tmp_path, db):
    import yaml
    from django.core.management import call_command

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    paths = yaml.safe_load(target.read_text())["paths"]
    for path, method in [
        ("/api/v1/members/{id}/points/transfers/", "post"),
        ("/api/v1/me/points/transfers/", "post"),
        ("/api/v1/me/household/", "get"),
    ]:
        assert method in paths[path], path
    staff = paths["/api/v1/members/{id}/points/transfers/"]["post"]
    assert {"201", "400", "404", "409"} <= set(staff["responses"])
    assert "transfer_disabled" in staff["responses"]["409"]["description"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in staff["parameters"])


# --- check_ledger ----------------------------------------------------------------------------------------------


@pytest.mark.tampers_ledger
def test_check_ledger_reports_a_transfer_entry_without_its_transfer(family):
    mother, _ = family
    account = services.ledger.lock_account(mother.pk)  # a credit that balances, but says it is a transfer
    entry = services.ledger.append_entry(account, kind="transfer", actor="forger", available_delta=70)
    PointsLot.objects.create(
        member=mother, entry=entry, status=LotStatus.AVAILABLE, points=70, remaining=70, earned_at=NOW, available_at=NOW
    )
    account.save()

    assert list(ledger_mismatches()) == [
        f"member {mother.pk}: transfer entry {entry.pk} (available +70, pending +0) is not one side of a transfer "
        "of hers with that amount"
    ]


# --- Concurrency (PostgreSQL) -------------------------------------------------------------------------------------


def run_together(calls):
    barrier, responses = threading.Barrier(len(calls)), [None] * len(calls)

    def worker(index):
        try:
            barrier.wait()
            responses[index] = calls[index]()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_transfers_both_ways_at_once_finish_without_deadlock_and_exact_balances(store_a):
    a, b = MemberFactory.create_batch(2, home_store=store_a)
    link_household(actor="x", member=a, other=b)
    allow_transfers(daily_limit=100_000)
    adjust(a, 5000)
    adjust(b, 5000)
    manager = StaffUserFactory(username="manager", role="admin")
    clients = [staff_client(manager) for _ in range(30)]

    def send(index):
        sender, receiver, points = (a, b, 100) if index % 2 == 0 else (b, a, 70)
        return lambda: post(
            clients[index], transfers_url(sender), {"to": str(receiver.pk), "points": points}, key=f"t{index}"
        )

    responses = run_together([send(i) for i in range(30)])

    assert Counter(r.status_code for r in responses) == {201: 30}
    assert (available(a), available(b)) == (5000 - 1500 + 1050, 5000 + 1500 - 1050)
    assert PointsTransfer.objects.count() == 30
    assert LedgerEntry.objects.filter(kind="transfer").count() == 60
    assert_ledger_consistent()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_transfer_retried_at_once_moves_the_points_once(store_a):
    a, b = MemberFactory.create_batch(2, home_store=store_a)
    link_household(actor="x", member=a, other=b)
    allow_transfers()
    adjust(a, 500)
    _, key = create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)

    def retry():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return post(client, transfers_url(a), {"to": str(b.pk), "points": 300}, key="same")

    responses = run_together([retry] * 10)

    assert [r.status_code for r in responses] == [201] * 10, [r.content for r in responses]
    assert len({str(r.json()) for r in responses}) == 1
    assert (available(a), available(b)) == (200, 300)
    assert PointsTransfer.objects.count() == 1
    assert_ledger_consistent()
