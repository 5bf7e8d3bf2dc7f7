"""Differential, as test_fast_path.py for purchases: engagement events and redemptions send their first statements in
one round trip (pipeline mode) and their last in one statement (a data-modifying CTE) when loyalty.batch.FAST_PATH
is on, one at a time when it is off (as on SQLite). The same operations, fed to two twin members (each with her
same rewards, their stock put back between the two), one each way, must leave the same ledger entries, lots, lot
movements, accounts, events, redemptions and stock, and give the same answers (ids aside).

On SQLite both twins take the portable path (the test then checks only that it is deterministic)."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import batch
from loyalty.errors import DomainError
from points import services
from points.models import Event, LotMovement, PointsLot, Redemption, Reward
from points.services import ledger
from tests.factories import MemberFactory, StoreFactory
from tests.points.helpers import adjust, assert_ledger_consistent
from tests.points.test_fast_path import NOW, _state

operations = st.lists(
    st.one_of(
        st.tuples(st.just("sign_in"), st.integers(0, 2)),  # days after the last operation's (0: the same day)
        st.tuples(st.just("share"), st.integers(0, 1)),
        st.tuples(st.just("event_replay"), st.integers(0, 20)),  # an earlier event's key and body again
        st.tuples(st.just("event_conflict"), st.integers(0, 20)),  # an earlier event's key, another body
        st.tuples(st.just("redeem"), st.integers(0, 1), st.integers(1, 3)),  # which reward, how many
        st.tuples(st.just("redeem_replay"), st.integers(0, 20)),
        st.tuples(st.just("adjust"), st.integers(-300, 600).filter(bool)),
    ),
    min_size=1,
    max_size=14,
)


def _event(member, key, event_type):
    return services.record_event(
        actor="test",
        scope=f"test:{member.pk}",  # the twin's own keys, the same text (an event's entry refers to its key)
        key=key,
        fingerprint=services.request_fingerprint([member.pk, event_type]),
        member_id=member.pk,
        event_type=event_type,
    )


def _redeem(member, key, reward, quantity):
    return services.redeem_reward(
        actor="test",
        scope=f"test:{member.pk}",  # the twin's own keys, the same text (an event's entry refers to its key)
        key=key,
        fingerprint=services.request_fingerprint([reward.code, quantity]),
        member_id=member.pk,
        reward_id=reward.pk,
        quantity=quantity,
    )


def _run(member, rewards, ops):
    """Feed the operations to one member; returns what each answered (ids left out)."""
    answers, events, redemptions, day = [], [], [], 0
    with time_machine.travel(NOW, tick=False):
        adjust(member, 500)  # points to redeem from the start
    for number, op in enumerate(ops):
        day += op[1] if op[0] == "sign_in" else 0
        key = f"k{number}"
        try:
            with time_machine.travel(NOW + timedelta(days=day), tick=False):
                if op[0] in ("sign_in", "share"):
                    event_type = "sign_in" if op[0] == "sign_in" else "share"
                    outcome = _event(member, key, event_type)
                    events.append((key, event_type))
                elif op[0] == "event_replay" and events:
                    outcome = _event(member, *events[op[1] % len(events)])
                elif op[0] == "event_conflict" and events:
                    earlier, event_type = events[op[1] % len(events)]
                    outcome = _event(member, earlier, "share" if event_type == "sign_in" else "sign_in")
                elif op[0] == "redeem":
                    reward, quantity = rewards[op[1]], op[2]
                    outcome = _redeem(member, key, reward, quantity)
                    redemptions.append((key, reward, quantity))
                elif op[0] == "redeem_replay" and redemptions:
                    outcome = _redeem(member, *redemptions[op[1] % len(redemptions)])
                elif op[0] == "adjust":
                    answers.append(adjust(member, op[1])["balance_after"])
                    continue
                else:
                    continue
            result = dict(outcome.result)
            result.pop("id", None)
            answers.append((outcome.replayed, outcome.status_code, result))
        except DomainError as error:
            answers.append((error.code, str(error.detail)))
    return answers


def _events_state(member):
    return {
        "events": list(
            Event.objects.filter(member=member)
            .order_by("id")
            .values_list("type", "business_date", "occurred_at", "points", "capped", "payload")
        ),
        "redemptions": list(
            Redemption.objects.filter(member=member)
            .order_by("id")
            .values_list("reward__name", "quantity", "points_spent", "status", "code", "created_at")
        ),
        "movements": list(
            LotMovement.objects.filter(entry__member=member)
            .order_by("id")
            .values_list("entry__kind", "entry__points", "lot__points", "points")
        ),
    }


STOCK = 4


def _rewards(tag):
    """The twins' rewards (codes unique to the example: hypothesis runs its examples in one test transaction)."""
    return [
        Reward.objects.create(
            code=f"mug-{tag}", name="Mug", kind="gift", cost_points=120, stock=STOCK, per_member_limit=3
        ),
        Reward.objects.create(code=f"tea-{tag}", name="Tea", kind="gift", cost_points=45),
    ]


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_events_and_redemptions_write_the_same_ledger_either_way(ops, monkeypatch):
    store = StoreFactory()
    fast_member, portable_member = MemberFactory(home_store=store), MemberFactory(home_store=store)
    rewards = _rewards(fast_member.pk)
    monkeypatch.setattr(batch, "FAST_PATH", True)
    assert batch.fast() == (connection.vendor == "postgresql")  # the twin really takes the fast path there
    fast_answers = _run(fast_member, rewards, ops)
    fast_stock = [reward.stock for reward in Reward.objects.filter(pk__in=[r.pk for r in rewards]).order_by("pk")]
    Reward.objects.filter(pk=rewards[0].pk).update(stock=STOCK)
    monkeypatch.setattr(batch, "FAST_PATH", False)
    portable_answers = _run(portable_member, rewards, ops)
    portable_stock = [reward.stock for reward in Reward.objects.filter(pk__in=[r.pk for r in rewards]).order_by("pk")]
    assert fast_stock == portable_stock
    assert fast_answers == portable_answers
    fast, portable = _state(fast_member), _state(portable_member)
    for part in fast:
        assert fast[part] == portable[part], part
    fast, portable = _events_state(fast_member), _events_state(portable_member)
    for part in fast:
        assert fast[part] == portable[part], part
    assert_ledger_consistent()


@pytest.mark.django_db
@pytest.mark.parametrize("fast", [True, False])
def test_a_redemption_beyond_the_lots_read_ahead_reads_the_rest_in_expiry_order(fast, monkeypatch):
    """A redemption reads its member's first spendable lots in its opening round trip (ledger.SPENDABLE_FIRST of
    them); one that needs more takes the rest from the next ones, soonest expiry first, as plan_spend alone does."""
    monkeypatch.setattr(batch, "FAST_PATH", fast)
    monkeypatch.setattr(ledger, "SPENDABLE_FIRST", 2)
    member = MemberFactory()
    for day, points in enumerate([100, 100, 100, 100, 100]):
        with time_machine.travel(NOW + timedelta(days=day), tick=False):
            adjust(member, points)
    reward = Reward.objects.create(code="lamp", name="Lamp", kind="gift", cost_points=350)
    with time_machine.travel(NOW + timedelta(days=6), tick=False):
        result = _redeem(member, "k", reward, 1).result
    assert result["balance"] == 150
    lots = PointsLot.objects.filter(member=member).order_by("expires_at", "id")
    assert [lot.remaining for lot in lots] == [0, 0, 0, 50, 100]
    taken = LotMovement.objects.filter(entry__kind="redeem", entry__member=member).order_by("id")
    assert [(movement.lot_id, movement.points) for movement in taken] == [
        (lot.pk, -points) for lot, points in zip(lots, [100, 100, 100, 50], strict=False)
    ]
    assert_ledger_consistent()
