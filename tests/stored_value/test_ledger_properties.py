"""Property-based: any sequence of top-ups, payments, refunds, withdrawals and adjustments keeps the stored-value
ledger's invariants (balances == the sums over the entries == the lots' remainders, both parts, never below zero)
and agrees with a small reference model of lots kept here, written from the rules of SPEC §9 and the documented
rounding, independently of the services."""

from dataclasses import dataclass, field

import pytest
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

from stored_value.models import StoredValueAccount, StoredValueLot
from stored_value.services import InsufficientBalance, RefundExceedsPayment, WithdrawalExceedsUnspent
from tests.factories import MemberFactory, StoreFactory
from tests.stored_value import helpers

TIERS = [{"amount": 10_000, "bonus": 1_000}, {"amount": 50_000, "bonus": 8_000}]


@dataclass
class Lot:
    principal: int
    bonus: int
    top_up: str | None = None


@dataclass
class Paid:
    id: str
    amount: int
    principal: int
    bonus: int
    takes: dict  # lot index → [principal, bonus], in the order taken
    principal_refunded: int = 0
    bonus_refunded: int = 0


@dataclass
class Model:
    lots: list = field(default_factory=list)
    payments: list = field(default_factory=list)

    @property
    def principal(self):
        return sum(lot.principal for lot in self.lots)

    @property
    def bonus(self):
        return sum(lot.bonus for lot in self.lots)

    def take(self, principal, bonus):
        """Principal from the oldest lot first, then bonus from the oldest lot first (no bonus expires here)."""
        takes = {}
        for part, needed in (("principal", principal), ("bonus", bonus)):
            for index, lot in enumerate(self.lots):
                if needed == 0:
                    break
                amount = min(getattr(lot, part), needed)
                if amount:
                    setattr(lot, part, getattr(lot, part) - amount)
                    takes.setdefault(index, [0, 0])[0 if part == "principal" else 1] += amount
                    needed -= amount
        return takes

    def give_back(self, paid, principal, bonus):
        for position, (part, amount, skip) in enumerate(
            (("principal", principal, paid.principal_refunded), ("bonus", bonus, paid.bonus_refunded))
        ):
            for index, taken in paid.takes.items():
                if amount == 0:
                    break
                if skip >= taken[position]:
                    skip -= taken[position]
                    continue
                give = min(taken[position] - skip, amount)
                skip = 0
                setattr(self.lots[index], part, getattr(self.lots[index], part) + give)
                amount -= give


class StoredValueMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.member = MemberFactory(home_store=StoreFactory(code="A001"))
        if not helpers.TopUpRule.objects.exists():
            helpers.rule(TIERS)
        self.model = Model()

    @rule(amount=st.integers(1, 60_000))
    def top_up(self, amount):
        result = helpers.top_up(self.member, amount)
        bonus = 8_000 if amount >= 50_000 else 1_000 if amount >= 10_000 else 0
        assert result["bonus_cents"] == bonus
        self.model.lots.append(Lot(amount, bonus, top_up=result["id"]))

    @rule(amount=st.integers(1, 30_000))
    def pay(self, amount):
        principal, bonus = self.model.principal, self.model.bonus
        if amount > principal + bonus:
            with pytest.raises(InsufficientBalance):
                helpers.pay(self.member, amount)
            return
        result = helpers.pay(self.member, amount)
        bonus_used = amount * bonus // (principal + bonus)
        assert (result["principal_used_cents"], result["bonus_used_cents"]) == (amount - bonus_used, bonus_used)
        takes = self.model.take(amount - bonus_used, bonus_used)
        self.model.payments.append(Paid(result["id"], amount, amount - bonus_used, bonus_used, takes))

    @precondition(lambda self: self.model.payments)
    @rule(data=st.data())
    def refund(self, data):
        paid = data.draw(st.sampled_from(self.model.payments))
        left = paid.amount - paid.principal_refunded - paid.bonus_refunded
        amount = data.draw(st.integers(1, max(left, 1) + 5))
        if amount > left:
            with pytest.raises(RefundExceedsPayment):
                helpers.refund(paid.id, amount)
            return
        result = helpers.refund(paid.id, amount)
        refunded = paid.amount - left + amount
        bonus_total = refunded * paid.bonus // paid.amount
        principal, bonus = refunded - bonus_total - paid.principal_refunded, bonus_total - paid.bonus_refunded
        assert (result["principal"], result["bonus"]) == (
            helpers.services.money(principal),
            helpers.services.money(bonus),
        )
        self.model.give_back(paid, principal, bonus)
        paid.principal_refunded += principal
        paid.bonus_refunded += bonus

    @precondition(lambda self: any(lot.top_up for lot in self.model.lots))
    @rule(data=st.data())
    def withdraw(self, data):
        lot = data.draw(st.sampled_from([lot for lot in self.model.lots if lot.top_up]))
        amount = data.draw(st.one_of(st.none(), st.integers(1, 60_000)))
        wanted = lot.principal if amount is None else amount
        if wanted == 0 or wanted > lot.principal:
            with pytest.raises(WithdrawalExceedsUnspent):
                helpers.withdraw(lot.top_up, amount)
            return
        result = helpers.withdraw(lot.top_up, amount)
        forfeited = -(-lot.bonus * wanted // lot.principal)
        assert result["bonus_forfeited"] == helpers.services.money(forfeited)
        lot.principal -= wanted
        lot.bonus -= forfeited

    @rule(principal=st.integers(-5_000, 5_000), bonus=st.integers(-2_000, 2_000))
    def adjust(self, principal, bonus):
        if not principal and not bonus:
            return
        if -principal > self.model.principal or -bonus > self.model.bonus:
            with pytest.raises(InsufficientBalance):
                helpers.adjust(self.member, principal=principal, bonus=bonus)
            return
        helpers.adjust(self.member, principal=principal, bonus=bonus)
        self.model.take(max(-principal, 0), max(-bonus, 0))
        if principal > 0 or bonus > 0:
            self.model.lots.append(Lot(max(principal, 0), max(bonus, 0)))

    @invariant()
    def balances_match_the_model_and_the_ledger(self):
        if not hasattr(self, "member"):
            return
        account = StoredValueAccount.objects.filter(member=self.member).first()
        actual = (account.principal_cents, account.bonus_cents) if account else (0, 0)
        assert actual == (self.model.principal, self.model.bonus)
        assert actual[0] >= 0 and actual[1] >= 0
        lots = [
            (lot.principal_remaining, lot.bonus_remaining)
            for lot in StoredValueLot.objects.filter(member=self.member).order_by("id")
        ]
        assert lots == [(lot.principal, lot.bonus) for lot in self.model.lots]
        helpers.assert_ledger_consistent()


def test_any_sequence_keeps_the_ledger_sums_equal_to_the_balances(db):
    run_state_machine_as_test(
        StoredValueMachine,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
