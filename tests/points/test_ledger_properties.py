"""Property-based: any sequence of earn / spend / refund / redeem / cancel / release / expire keeps the invariants
of SPEC §2 and agrees with a small reference model of lots kept here, independently of the services."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from dateutil.relativedelta import relativedelta
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty.clock import business_date, end_of_business_day
from points import services
from points.models import ExpiryWatermark, PointsAccount, PointsLot, PointsPolicy, Reward
from points.services.ledger import InsufficientPoints
from tests.factories import MemberFactory, StoreFactory
from tests.points.helpers import adjust, assert_ledger_consistent, purchase, redeem, refund
from tiers.models import Tier

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 1, 1, 9, tzinfo=SHANGHAI)


@dataclass
class Lot:
    points: int
    remaining: int
    status: str  # pending, available, expired, debt
    available_at: datetime
    expires_at: datetime | None
    seq: int
    purchase: str | None = None


@dataclass
class Model:
    """The reference: lots and the rules of SPEC §2, written independently of points.services."""

    lots: list = field(default_factory=list)
    purchases: dict = field(default_factory=dict)
    redemptions: dict = field(default_factory=dict)
    seq: int = 0

    @property
    def available(self):
        return sum(lot.remaining for lot in self.lots if lot.status in ("available", "debt"))

    @property
    def pending(self):
        return sum(lot.remaining for lot in self.lots if lot.status == "pending")

    def fifo(self, exclude=()):
        live = [lot for lot in self.lots if lot.status == "available" and lot.remaining > 0 and lot not in exclude]
        return sorted(live, key=lambda lot: (lot.expires_at, lot.seq))

    def take(self, points, exclude=()):
        takes = []
        for lot in self.fifo(exclude):
            if points == 0:
                break
            amount = min(lot.remaining, points)
            lot.remaining -= amount
            points -= amount
            takes.append((lot, amount))
        return takes, points

    def settle(self):
        debts = [lot for lot in self.lots if lot.status == "debt" and lot.remaining < 0]
        owed = -sum(lot.remaining for lot in debts)
        takes, _ = self.take(owed)
        paid = sum(amount for _, amount in takes)
        for debt in debts:
            share = min(paid, -debt.remaining)
            debt.remaining += share
            paid -= share

    def add_lot(self, points, now, available_at, purchase=None):
        in_debt = self.available < 0
        self.seq += 1
        expires = end_of_business_day(business_date(now) + relativedelta(months=12))
        status = "pending" if available_at > now else "available"
        self.lots.append(Lot(points, points, status, available_at, expires, self.seq, purchase))
        if in_debt and status == "available":
            self.settle()

    def claw_back(self, purchase_id, points, now):
        own = sorted(
            (
                lot
                for lot in self.lots
                if lot.purchase == purchase_id and lot.remaining > 0 and lot.status in ("pending", "available")
            ),
            key=lambda lot: (lot.status != "pending", lot.seq),
        )
        for lot in own:
            amount = min(lot.remaining, points)
            lot.remaining -= amount
            points -= amount
        if points:
            _, short = self.take(points, exclude=own)
            if short:
                self.seq += 1
                self.lots.append(Lot(-short, -short, "debt", now, None, self.seq))

    def release(self, now):
        in_debt = self.available < 0
        for lot in self.lots:
            if lot.status == "pending" and lot.available_at <= now:
                lot.status = "available"
        if in_debt:
            self.settle()

    def expire(self, as_of):
        cutoff = end_of_business_day(as_of)
        for lot in self.lots:
            if lot.status == "available" and lot.expires_at <= cutoff:
                lot.status, lot.remaining = "expired", 0


class LedgerMachine(RuleBasedStateMachine):
    """One member's life: the machine drives the services and the model side by side."""

    @initialize()
    def start(self):
        self.member = MemberFactory(home_store=StoreFactory(code="A001"))
        self.reward = Reward.objects.get_or_create(
            code="prop-reward", defaults={"name": "Prop", "kind": "coupon", "cost_points": 50}
        )[0]
        self.now = START
        # Each example starts at START again, in the same database: the expiry's watermark, written by the
        # previous example's later runs, would be ahead of this one's lots (time never goes back outside tests).
        ExpiryWatermark.objects.all().delete()
        self.model = Model()
        # The model knows points, not tiers or the daily fraud cap: take both out of play.
        Tier.objects.update(points_multiplier=Decimal("1.00"))
        PointsPolicy.objects.create(valid_from=START - timedelta(days=1), daily_cap=10**9)

    def at_now(self):
        return time_machine.travel(self.now, tick=False)

    @rule(amount=st.decimals(min_value=Decimal("1.00"), max_value=Decimal("900.00"), places=2))
    def buy(self, amount):
        with self.at_now():
            result = purchase(self.member, amount)
        points = int(amount.to_integral_value(ROUND_FLOOR))
        assert result["points"]["awarded"] == points
        self.model.purchases[result["id"]] = {
            "amount": amount,
            "awarded": points,
            "refunded": Decimal(0),
            "reversed": 0,
        }
        self.model.add_lot(points, self.now, self.now + timedelta(days=7), purchase=result["id"])

    @rule(points=st.integers(min_value=1, max_value=400))
    def bonus(self, points):
        with self.at_now():
            adjust(self.member, points)
        self.model.add_lot(points, self.now, self.now)

    @rule(points=st.integers(min_value=1, max_value=400))
    def take_back(self, points):
        with self.at_now():
            if self.model.available >= points:
                adjust(self.member, -points)
                self.model.take(points)
            else:
                with pytest.raises(InsufficientPoints):
                    adjust(self.member, -points)

    @rule()
    def redeem_one(self):
        with self.at_now():
            if self.model.available >= 50:
                result = redeem(self.member, self.reward)
                takes, _ = self.model.take(50)
                self.model.redemptions[result["id"]] = takes
            else:
                with pytest.raises(InsufficientPoints):
                    redeem(self.member, self.reward)

    @precondition(lambda self: self.model.redemptions)
    @rule(data=st.data())
    def cancel(self, data):
        redemption_id = data.draw(st.sampled_from(sorted(self.model.redemptions)))
        takes = self.model.redemptions.pop(redemption_id)
        with self.at_now():
            services.cancel_redemption(actor="test", redemption_id=int(redemption_id))
        in_debt = self.model.available < 0
        for lot, amount in takes:
            if lot.status == "available":
                lot.remaining += amount
        if in_debt:
            self.model.settle()

    @precondition(lambda self: any(p["refunded"] < p["amount"] for p in self.model.purchases.values()))
    @rule(data=st.data(), share=st.sampled_from([Decimal("0.25"), Decimal("0.5"), Decimal("1")]))
    def give_refund(self, data, share):
        open_ids = sorted(pid for pid, p in self.model.purchases.items() if p["refunded"] < p["amount"])
        purchase_id = data.draw(st.sampled_from(open_ids))
        bought = self.model.purchases[purchase_id]
        amount = max(
            ((bought["amount"] - bought["refunded"]) * share).quantize(Decimal("0.01"), ROUND_FLOOR), Decimal("0.01")
        )
        with self.at_now():
            result = refund(purchase_id, amount)
        bought["refunded"] += amount
        target = int((bought["awarded"] * bought["refunded"] / bought["amount"]).to_integral_value(ROUND_FLOOR))
        expected = target - bought["reversed"]
        bought["reversed"] = target
        assert result["points_reversed"] == expected
        if expected:
            self.model.claw_back(purchase_id, expected, self.now)

    @rule(days=st.integers(min_value=1, max_value=200))
    def time_passes(self, days):
        self.now += timedelta(days=days)
        with self.at_now():
            services.release_pending()
            self.model.release(self.now)
            yesterday = business_date(self.now) - timedelta(days=1)
            services.expire_points(as_of=yesterday)
            self.model.expire(yesterday)

    @invariant()
    def balances_agree_with_the_model(self):
        if not hasattr(self, "model"):
            return
        account = PointsAccount.objects.filter(member=self.member).first()
        available, pending = (account.available, account.pending) if account else (0, 0)
        assert (available, pending) == (self.model.available, self.model.pending)
        assert available >= 0 or any(lot.status == "debt" for lot in self.model.lots)

    @invariant()
    def every_lot_agrees_with_the_model(self):
        if not hasattr(self, "model"):
            return
        stored = list(
            PointsLot.objects.filter(member=self.member).order_by("id").values_list("points", "remaining", "status")
        )
        assert stored == [(lot.points, lot.remaining, lot.status) for lot in self.model.lots]

    @invariant()
    def ledger_is_consistent(self):
        assert_ledger_consistent()


def test_any_sequence_of_operations_keeps_the_invariants_and_matches_the_model(db):
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
