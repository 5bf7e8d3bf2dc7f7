"""Differential: a purchase's statements reach PostgreSQL in one round trip at the start (pipeline mode) and one at
the end (data-modifying CTEs) when loyalty.batch.FAST_PATH is on, one at a time when it is off (as on
SQLite). The same operations, fed to two twin members, one each way, must leave the same ledger entries, lots,
accounts, growth and tier rows, entry by entry, and give the same answers (ids aside).

On SQLite both twins take the portable path (the test then checks only that it is deterministic)."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty import batch
from loyalty.errors import DomainError
from members.models import Purchase
from points import services
from points.models import LedgerEntry, PointsAccount, PointsLot
from tests.factories import MemberFactory, StoreFactory
from tests.points.helpers import adjust, assert_ledger_consistent
from tiers.models import GrowthEntry, MemberTier

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("purchase"), amounts),
        st.tuples(st.just("replay"), st.integers(0, 20)),  # an earlier order sent again (same body)
        st.tuples(st.just("conflict"), st.integers(0, 20)),  # an earlier order_no with another amount
        st.tuples(
            st.just("refund"),
            st.integers(0, 20),
            st.fractions(0, 1).map(lambda f: Decimal(f.numerator) / f.denominator),
        ),
        st.tuples(st.just("deduct_then_buy"), amounts),  # points used at checkout before the order is recorded
    ),
    min_size=1,
    max_size=12,
)


def _purchase(member, source, order_no, amount):
    body = {"member": member.pk, "order_no": order_no, "amount": str(amount)}
    return services.record_purchase(
        actor="test",
        source=source,
        member_id=member.pk,
        order_no=order_no,
        amount=amount,
        fingerprint=services.request_fingerprint(body),
    )


def _run(member, source, ops):
    """Feed the operations to one member; returns what each answered (ids and sources left out)."""
    answers, orders = [], []
    adjust(member, 2000)  # available points, so that a checkout deduction can happen
    for op in ops:
        try:
            if op[0] == "purchase":
                order_no = f"O{len(orders)}"
                outcome = _purchase(member, source, order_no, op[1])
                orders.append((order_no, op[1], outcome.result["id"]))
            elif op[0] == "replay" and orders:
                order_no, amount, _ = orders[op[1] % len(orders)]
                outcome = _purchase(member, source, order_no, amount)
            elif op[0] == "conflict" and orders:
                order_no, amount, _ = orders[op[1] % len(orders)]
                outcome = _purchase(member, source, order_no, amount + 1)
            elif op[0] == "refund" and orders:
                order_no, amount, purchase_id = orders[op[1] % len(orders)]
                share = (amount * op[2]).quantize(Decimal("0.01"))
                if share <= 0:
                    continue
                outcome = services.record_refund(
                    actor="test",
                    purchase_id=int(purchase_id),
                    refund_no=f"R{len(answers)}",
                    amount=share,
                    fingerprint=services.request_fingerprint([order_no, str(share), len(answers)]),
                )
            elif op[0] == "deduct_then_buy":
                order_no = f"O{len(orders)}"
                available = PointsAccount.objects.get(member=member).available
                points = min(available // 100 * 100, int(op[1] * 10) // 100 * 100)
                if points > 0:
                    services.deduct_points(
                        actor="test",
                        scope="test",
                        key=f"{source}:{order_no}",
                        fingerprint="f",
                        member_id=member.pk,
                        source=source,
                        order_no=order_no,
                        points=points,
                        order_amount=op[1],
                    )
                outcome = _purchase(member, source, order_no, op[1])
                orders.append((order_no, op[1], outcome.result["id"]))
            else:
                continue
            result = dict(outcome.result)
            result.pop("id", None), result.pop("member", None), result.pop("purchase", None)
            answers.append((outcome.replayed, outcome.status_code, result))
        except DomainError as error:
            answers.append((error.code, str(error.detail).replace(source, "<source>")))
    return answers


def _state(member):
    entries = [
        (
            e.kind,
            e.points,
            e.available_delta,
            e.pending_delta,
            e.balance_after,
            e.pending_after,
            e.reason,
            e.reference,
            e.breakdown,
            e.expires_at,
            e.store_id,
            e.channel,
        )
        for e in LedgerEntry.objects.filter(member=member).order_by("id")
    ]
    lots = [
        (
            lot.status,
            lot.points,
            lot.remaining,
            lot.available_at,
            lot.expires_at,
            lot.purchase.order_no if lot.purchase else None,
        )
        for lot in PointsLot.objects.filter(member=member).select_related("purchase").order_by("id")
    ]
    account = (
        PointsAccount.objects.filter(member=member)
        .values(
            "available",
            "pending",
            "lifetime_earned",
            "lifetime_spent",
            "lifetime_expired",
            "cap_date",
            "earned_on_cap_date",
            "closed",
        )
        .first()
    )
    purchases = list(
        Purchase.objects.filter(member=member)
        .order_by("id")
        .values_list("order_no", "amount", "points_awarded", "points_used", "refunded_amount", "points_reversed")
    )
    growth = list(GrowthEntry.objects.filter(member=member).order_by("id").values_list("kind", "value"))
    tier = MemberTier.objects.filter(member=member).values_list("tier_id", "window_growth").first()
    return {
        "entries": entries,
        "lots": lots,
        "account": account,
        "purchases": purchases,
        "growth": growth,
        "tier": tier,
    }


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_the_fast_and_the_portable_path_write_the_same_ledger(ops, monkeypatch):
    store = StoreFactory()
    fast_member, portable_member = MemberFactory(home_store=store), MemberFactory(home_store=store)
    with time_machine.travel(NOW, tick=False):
        monkeypatch.setattr(batch, "FAST_PATH", True)
        assert batch.fast() == (connection.vendor == "postgresql")  # the twin really takes the fast path there
        fast_answers = _run(fast_member, f"store:fast{fast_member.pk}", ops)
        monkeypatch.setattr(batch, "FAST_PATH", False)
        portable_answers = _run(portable_member, f"store:slow{portable_member.pk}", ops)
    assert fast_answers == portable_answers
    fast, portable = _state(fast_member), _state(portable_member)
    for part in fast:
        assert fast[part] == portable[part], part
    assert_ledger_consistent()


@pytest.mark.django_db
@pytest.mark.parametrize("fast", [True, False])
def test_a_purchase_whose_earn_is_wanted_as_an_event_names_its_entry(fast, monkeypatch):
    """The fast path keeps the earn's entry and lot for its last statement only when nothing reads them before:
    with a subscription to points.earned the entry is written at once, and its event names it."""
    from loyalty.models import OutboxEvent, WebhookSubscription

    WebhookSubscription.objects.create(url="https://crm.example.com/hook", events=["points.earned"], secret="s")
    monkeypatch.setattr(batch, "FAST_PATH", fast)
    member = MemberFactory(home_store=StoreFactory())
    with time_machine.travel(NOW, tick=False):
        outcome = _purchase(member, "store:x", "E1", Decimal("120.00"))
    entry = LedgerEntry.objects.get(member=member, reason="purchase")
    (event,) = OutboxEvent.objects.filter(type="points.earned", member_id=member.pk)
    assert event.data["entry"] == str(entry.pk)
    assert event.data["points"] == entry.points == outcome.result["points"]["awarded"] > 0
    lot = PointsLot.objects.get(entry=entry)
    assert lot.purchase_id == int(outcome.result["id"]) == Purchase.objects.get(order_no="E1").pk
    assert_ledger_consistent()
