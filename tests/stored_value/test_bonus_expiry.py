"""The nightly expiry of bonus money (expire_stored_value_bonus): set-based per chunk, idempotent, the very entries,
movements and events the lazy expiry before a member's next change writes, whichever comes first. Runs on SQLite
(the per-member fallback) and, with DATABASE_URL, on PostgreSQL (the set-based statement)."""

from datetime import date

import pytest
import time_machine

from loyalty.models import OutboxEvent, WebhookSubscription
from loyalty.scheduling import job
from stored_value.models import StoredValueEntry, StoredValueLot, StoredValueMovement
from stored_value.services import expiry
from tests.factories import MemberFactory
from tests.stored_value.helpers import assert_ledger_consistent, balances, pay, rule, top_up

pytestmark = pytest.mark.django_db

MARCH_1 = "2026-03-01 10:00 +08:00"  # a top-up with one day's validity: valid on 1 March only
MARCH_2 = "2026-03-02 01:00 +08:00"  # the night after: the job runs for 1 March
ENTRY_FIELDS = ("kind", "principal_delta", "bonus_delta", "principal_after", "bonus_after", "reason", "reference")


@pytest.fixture
def members(store_a):
    rule([{"amount": 10_000, "bonus": 1_000}, {"amount": 50_000, "bonus": 8_000}], bonus_valid_days=1)
    return [MemberFactory(home_store=store_a) for _ in range(3)]


@pytest.fixture
def subscribed(settings):
    settings.WEBHOOKS_KICK_ON_COMMIT = False
    WebhookSubscription.objects.create(url="https://crm.example.com/hook", events=["stored_value.*"], secret="s")


def entries(member):
    return list(StoredValueEntry.objects.filter(member=member).order_by("id").values_list(*ENTRY_FIELDS, "actor"))


def movements(member):
    rows = StoredValueMovement.objects.filter(entry__member=member, entry__kind="expire_bonus").order_by("lot_id")
    return list(rows.values_list("lot_id", "principal_cents", "bonus_cents"))


def expiry_events():
    rows = OutboxEvent.objects.filter(type="stored_value.bonus_expired").order_by("member_id")
    return [(row.member_id, {k: v for k, v in row.data.items() if k != "entry"}) for row in rows]


def test_the_job_expires_what_is_left_of_due_bonus_one_entry_per_member_and_leaves_the_rest(members):
    first, second, untouched = members
    with time_machine.travel(MARCH_1, tick=False):
        top_up(first, 10_000)  # 100.00 + 10.00
        top_up(first, 50_000)  # 500.00 + 80.00
        top_up(second, 10_000)
        pay(second, 1_100)  # 10.00 principal + 1.00 bonus spent: 9.00 bonus left
    with time_machine.travel("2026-03-01 23:00 +08:00", tick=False):
        top_up(untouched, 10_000)  # also valid on 1 March only, but the job for 28 February leaves it
        assert expiry.expire_bonus(as_of=date(2026, 2, 28)).members == 0

    with time_machine.travel(MARCH_2, tick=False):
        counts = expiry.expire_bonus(as_of=date(2026, 3, 1), chunk_size=1)

    assert (counts.members, counts.bonus_cents) == (3, 9_000 + 900 + 1_000)
    assert counts.chunks == untouched.pk - first.pk + 1
    assert balances(first) == (60_000, 0)
    assert balances(second) == (9_000, 0)
    assert entries(first)[-1] == (
        "expire_bonus",
        0,
        -9_000,
        60_000,
        0,
        "bonus money past its validity",
        "bonus-expiry",
        "system:bonus_expiry",
    )
    assert entries(second)[-1][:5] == ("expire_bonus", 0, -900, 9_000, 0)
    lots = StoredValueLot.objects.filter(member=first).order_by("id")
    assert movements(first) == [(lot.pk, 0, -lot.bonus_cents) for lot in lots]
    assert set(StoredValueLot.objects.values_list("bonus_remaining", flat=True)) == {0}
    assert_ledger_consistent()


def test_running_the_job_again_expires_nothing_more(members):
    with time_machine.travel(MARCH_1, tick=False):
        top_up(members[0], 10_000)
    with time_machine.travel(MARCH_2, tick=False):
        expiry.expire_bonus(as_of=date(2026, 3, 1))
        again = expiry.expire_bonus(as_of=date(2026, 3, 1))
        chunk_again = expiry.expire_bonus_chunk(members[0].pk, members[0].pk + 1, date(2026, 3, 1), None)

    assert (again.members, again.bonus_cents, again.chunks) == (0, 0, 0)
    assert chunk_again == {"members": 0, "bonus_cents": 0}
    assert [e[0] for e in entries(members[0])] == ["top_up", "bonus", "expire_bonus"]
    assert_ledger_consistent()


def _history(member):
    return [entry[:7] for entry in entries(member)]


def test_lazy_expiry_first_then_the_job_and_the_job_first_then_the_next_payment_write_the_same_entries(
    members, subscribed
):
    lazy, nightly, _ = members
    with time_machine.travel(MARCH_1, tick=False):
        top_up(lazy, 10_000, ref="L1")
        top_up(nightly, 10_000, ref="N1")
    with time_machine.travel(MARCH_2, tick=False):
        pay(lazy, 5_000)  # the lazy expiry comes first for her
        expiry.expire_bonus(as_of=date(2026, 3, 1))  # ...and first for him
        pay(nightly, 5_000)

    amounts = [entry[:5] for entry in _history(lazy)]
    assert amounts == [entry[:5] for entry in _history(nightly)]
    assert amounts == [
        ("top_up", 10_000, 0, 10_000, 0),
        ("bonus", 0, 1_000, 10_000, 1_000),
        ("expire_bonus", 0, -1_000, 10_000, 0),
        ("pay", -5_000, 0, 5_000, 0),
    ]
    assert (
        entries(lazy)[2][5:]
        == entries(nightly)[2][5:]
        == (
            "bonus money past its validity",
            "bonus-expiry",
            "system:bonus_expiry",
        )
    )
    assert [e[0] for e in entries(nightly)] == ["top_up", "bonus", "expire_bonus", "pay"]
    assert len(movements(lazy)) == len(movements(nightly)) == 1
    assert expiry_events() == [
        (
            member.pk,
            {
                "member": str(member.pk),
                "amount": "10.00",
                "principal": "0.00",
                "bonus": "10.00",
                "reference": "bonus-expiry",
                "balance_after": "100.00",
            },
        )
        for member in (lazy, nightly)
    ]
    assert_ledger_consistent()


def test_a_change_between_two_runs_of_the_job_expires_nothing_twice(members):
    member = members[0]
    with time_machine.travel(MARCH_1, tick=False):
        top_up(member, 10_000)
    with time_machine.travel(MARCH_2, tick=False):
        pay(member, 1_000)
        counts = expiry.expire_bonus(as_of=date(2026, 3, 1))

    assert counts.members == 0
    assert [e[0] for e in entries(member)] == ["top_up", "bonus", "expire_bonus", "pay"]
    assert balances(member) == (9_000, 0)
    assert_ledger_consistent()


def test_the_job_is_registered_and_its_chunks_cover_the_members_with_due_bonus(members):
    definition = job("expire_stored_value_bonus")
    with time_machine.travel(MARCH_1, tick=False):
        top_up(members[0], 10_000)
        top_up(members[2], 10_000)
    assert definition.bounds(date(2026, 2, 28), {}) == (None, None)
    assert definition.bounds(date(2026, 3, 1), {}) == (members[0].pk, members[2].pk)
    with time_machine.travel(MARCH_2, tick=False):
        assert definition.run_chunk(date(2026, 3, 1), members[0].pk, members[2].pk, {}) == {
            "members": 1,
            "bonus_cents": 1_000,
        }
    assert balances(members[2]) == (10_000, 1_000)
