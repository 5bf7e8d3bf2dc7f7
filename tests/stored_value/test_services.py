"""Stored value through its services, with exact figures: top-up bonuses from the rule, the proportional split of
a payment, refunds part by part, withdrawals with the bonus forfeited, adjustments, the PIN, the daily limit."""

from datetime import UTC, datetime

import pytest
import time_machine

from loyalty.models import AuditEntry
from members.services import MemberFrozen
from points.models import PointsAccount
from points.services import AlreadyRecorded, IdempotencyConflict, request_fingerprint
from points.services.idempotency import IdempotencyRecord
from stored_value import services
from stored_value.models import EntryKind, StoredValueAccount, StoredValueEntry, StoredValuePolicy, TopUp
from stored_value.services import (
    AlreadyPaid,
    DailyLimit,
    InsufficientBalance,
    ManagerRequired,
    PinInvalid,
    PinRequired,
    RefundExceedsPayment,
    WithdrawalExceedsUnspent,
)
from tests.factories import MemberFactory
from tests.stored_value.helpers import (
    adjust,
    assert_ledger_consistent,
    balances,
    pay,
    refund,
    rule,
    top_up,
    withdraw,
)
from tiers.models import GrowthEntry

pytestmark = pytest.mark.django_db
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)

TIERS = [
    {"amount": 10_000, "bonus": 1_000},  # 充100送10
    {"amount": 50_000, "bonus": 8_000, "points": 200, "growth": 50},  # 充500送80, 200 points, 50 growth
]


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


@pytest.fixture
def bonus_rule(db):
    return rule(TIERS)


# --- Top-ups -----------------------------------------------------------------------------------------------------


def test_a_top_up_gets_the_bonus_of_the_highest_tier_it_reaches(member, bonus_rule):
    below = top_up(member, 9_999)
    first_tier = top_up(member, 30_000)
    second_tier = top_up(member, 50_000)

    assert (below["bonus_cents"], first_tier["bonus_cents"], second_tier["bonus_cents"]) == (0, 1_000, 8_000)
    assert second_tier["bonus_points"] == 200 and second_tier["bonus_growth"] == 50
    assert balances(member) == (89_999, 9_000)
    assert second_tier["balance"] == {
        "member": str(member.pk),
        "principal": "899.99",
        "bonus": "90.00",
        "total": "989.99",
        "principal_cents": 89_999,
        "bonus_cents": 9_000,
        "total_cents": 98_999,
    }
    kinds = list(
        StoredValueEntry.objects.filter(member=member)
        .order_by("id")
        .values_list("kind", "principal_delta", "bonus_delta")
    )
    assert kinds == [
        ("top_up", 9_999, 0),
        ("top_up", 30_000, 0),
        ("bonus", 0, 1_000),
        ("top_up", 50_000, 0),
        ("bonus", 0, 8_000),
    ]
    assert_ledger_consistent()


def test_the_bonus_points_and_growth_of_a_top_up_are_awarded_in_the_same_transaction(member, bonus_rule):
    result = top_up(member, 50_000)

    account = PointsAccount.objects.get(member=member)
    assert (account.available, account.lifetime_earned) == (200, 200)
    assert list(GrowthEntry.objects.filter(member=member).values_list("kind", "value", "reference")) == [
        ("top_up", 50, f"top-up:{result['id']}")
    ]


def test_a_store_rule_beats_the_general_one(member, bonus_rule, store_a, store_b):
    rule([{"amount": 10_000, "bonus": 2_500}], store=store_a)

    at_a = top_up(member, 10_000, store=store_a)
    at_b = top_up(member, 10_000, store=store_b)

    assert (at_a["bonus_cents"], at_b["bonus_cents"]) == (2_500, 1_000)


def test_the_payment_reference_makes_a_top_up_happen_once(member, bonus_rule):
    first = top_up(member, 10_000, ref="WX-1")
    again = services.top_up(
        actor="test",
        member_id=member.pk,
        amount_cents=10_000,
        payment_method="wechat_pay",
        payment_ref="WX-1",
        fingerprint=request_fingerprint([member.pk, 10_000, "wechat_pay", "WX-1", None]),
    )

    assert again.replayed and again.result == first
    assert TopUp.objects.count() == 1 and balances(member) == (10_000, 1_000)
    with pytest.raises(IdempotencyConflict):
        top_up(member, 20_000, ref="WX-1")
    # The same reference under another method is another payment.
    top_up(member, 10_000, ref="WX-1", method="alipay")
    assert balances(member) == (20_000, 2_000)


def test_a_top_up_retried_after_its_record_was_purged_is_refused_not_repeated(member, bonus_rule):
    top_up(member, 10_000, ref="CASH-7", method="cash")
    IdempotencyRecord.objects.all().delete()

    with pytest.raises(AlreadyRecorded):
        top_up(member, 10_000, ref="CASH-7", method="cash")
    assert balances(member) == (10_000, 1_000)


def test_a_frozen_member_cannot_top_up_or_pay(member, bonus_rule):
    top_up(member, 10_000)
    member.status = "frozen"
    member.save()

    with pytest.raises(MemberFrozen):
        top_up(member, 10_000)
    with pytest.raises(MemberFrozen):
        pay(member, 100)
    assert balances(member) == (10_000, 1_000)


def test_bonus_validity_days_set_when_the_bonus_expires(member):
    rule([{"amount": 10_000, "bonus": 1_000}], bonus_valid_days=30)
    with time_machine.travel("2026-03-01 10:00 +08:00", tick=False):
        result = top_up(member, 10_000)

    assert result["bonus_expires_at"] == "2026-03-31T00:00:00+08:00"  # valid on 1 March and the 29 days after


# --- Payments ----------------------------------------------------------------------------------------------------


def test_a_payment_spends_principal_and_bonus_in_proportion_rounding_the_bonus_down(member, bonus_rule):
    top_up(member, 10_000)  # 100.00 + 10.00

    result = pay(member, 3_333)  # 3,333 × 1,000 / 11,000 = 303.0 → bonus 303, principal 3,030

    assert (result["principal_used"], result["bonus_used"], result["balance_after"]) == ("30.30", "3.03", "76.67")
    assert balances(member) == (6_970, 697)
    small = pay(member, 100)  # 100 × 697 / 7,667 = 9.09 → bonus 9, principal 91
    assert (small["principal_used_cents"], small["bonus_used_cents"]) == (91, 9)
    assert balances(member) == (6_879, 688)
    assert_ledger_consistent()


def test_the_split_never_loses_or_makes_a_cent():
    for principal, bonus in [(1, 0), (0, 1), (1, 1), (6_879, 688), (3, 7), (99_999, 1), (1, 99_999)]:
        for amount in range(1, min(principal + bonus, 500) + 1):
            used_principal, used_bonus = services.split_payment(amount, principal=principal, bonus=bonus)
            assert used_principal + used_bonus == amount
            assert 0 <= used_principal <= principal and 0 <= used_bonus <= bonus


def test_paying_more_than_the_balance_is_refused_and_changes_nothing(member, bonus_rule):
    top_up(member, 10_000)

    with pytest.raises(InsufficientBalance) as refused:
        pay(member, 11_001)

    assert refused.value.extra == {"available": "110.00", "required": "110.01"}
    assert balances(member) == (10_000, 1_000)
    assert pay(member, 11_000)["balance_after"] == "0.00"
    assert balances(member) == (0, 0)


def test_an_order_is_paid_from_the_balance_once(member, bonus_rule):
    top_up(member, 10_000)
    first = pay(member, 1_000, order_no="A1", key="k1")

    with pytest.raises(AlreadyPaid) as refused:
        pay(member, 1_000, order_no="A1", key="k2")
    assert refused.value.extra == {"payment": first["id"]}
    replay = services.pay(
        actor="test",
        scope="test",
        key="k1",
        fingerprint=request_fingerprint([member.pk, "A1", 1_000]),
        member_id=member.pk,
        source="store:A001",
        order_no="A1",
        amount_cents=1_000,
    )
    assert replay.replayed and replay.result == first
    assert balances(member) == (9_090, 910)  # 1,000 × 1,000 / 11,000 = 90.9 → bonus 90


def test_the_daily_limit_counts_the_business_days_payments(member, bonus_rule):
    StoredValuePolicy.objects.create(daily_limit_cents=5_000, valid_from=LONG_AGO)
    top_up(member, 50_000)

    with time_machine.travel("2026-05-01 23:00 +08:00", tick=False):
        pay(member, 3_000)
        with pytest.raises(DailyLimit) as refused:
            pay(member, 2_001)
        assert refused.value.extra == {"daily_limit": "50.00", "spent_today": "30.00", "left": "20.00"}
        pay(member, 2_000)
    with time_machine.travel("2026-05-02 00:30 +08:00", tick=False):  # a new business day
        pay(member, 5_000)
    assert balances(member)[0] + balances(member)[1] == 58_000 - 10_000


# --- The PIN -----------------------------------------------------------------------------------------------------


def test_a_member_with_a_pin_gives_it_and_five_wrong_ones_lock_it_until_staff_reset_it(member, bonus_rule):
    top_up(member, 10_000)
    services.set_pin(actor="staff:clerk", member_id=member.pk, pin="123456")

    with pytest.raises(PinRequired):
        pay(member, 100)
    for left in (4, 3, 2, 1):
        with pytest.raises(PinInvalid) as wrong:
            pay(member, 100, pin="000000", key="same-key")
        assert wrong.value.extra == {"attempts_left": left, "locked": False}
    assert StoredValueAccount.objects.get(member=member).pin_failed_attempts == 4  # committed though refused
    with pytest.raises(PinInvalid) as fifth:
        pay(member, 100, pin="000000", key="same-key")
    assert fifth.value.extra == {"attempts_left": 0, "locked": True}
    with pytest.raises(PinInvalid) as locked:
        pay(member, 100, pin="123456")  # even the right one, while locked
    assert locked.value.extra == {"locked": True}
    assert balances(member) == (10_000, 1_000)

    services.set_pin(actor="staff:clerk", member_id=member.pk, pin="654321")
    paid = pay(member, 100, pin="654321", key="same-key")  # the refused attempts did not take the key
    assert paid["amount"] == "1.00"
    account = StoredValueAccount.objects.get(member=member)
    assert (account.pin_failed_attempts, account.pin_locked_at) == (0, None)
    assert account.pin_hash.startswith("pbkdf2_sha256$") and "654321" not in account.pin_hash
    assert AuditEntry.objects.filter(action="stored_value.pin_set", target_id=str(member.pk)).count() == 2


def test_a_right_pin_clears_the_count_of_wrong_ones(member, bonus_rule):
    top_up(member, 10_000)
    services.set_pin(actor="staff:clerk", member_id=member.pk, pin="123456")
    for _ in range(4):
        with pytest.raises(PinInvalid):
            pay(member, 100, pin="999999")
    pay(member, 100, pin="123456")
    with pytest.raises(PinInvalid) as wrong:
        pay(member, 100, pin="999999")
    assert wrong.value.extra == {"attempts_left": 4, "locked": False}


def test_a_policy_can_require_a_pin_for_every_payment(member, bonus_rule):
    StoredValuePolicy.objects.create(pin_required=True, valid_from=LONG_AGO)
    top_up(member, 10_000)

    with pytest.raises(PinRequired) as refused:
        pay(member, 100)
    assert refused.value.extra == {"has_pin": False}
    services.change_own_pin(member_id=member.pk, pin="246810")
    assert pay(member, 100, pin="246810")["amount"] == "1.00"
    with pytest.raises(PinRequired):
        services.change_own_pin(member_id=member.pk, pin="111111")  # the current one is needed
    services.change_own_pin(member_id=member.pk, pin="111111", current_pin="246810")
    assert StoredValueAccount.objects.get(member=member).pin_matches("111111")


# --- Refunds -----------------------------------------------------------------------------------------------------


def test_refunds_return_each_part_in_the_payments_proportion_and_never_more(member, bonus_rule):
    top_up(member, 10_000)
    payment = pay(member, 3_333)  # principal 3,030, bonus 303

    first = refund(payment["id"], 1_000)  # 1,000 × 303 / 3,333 = 90.9 → bonus 90, principal 910
    assert (first["principal"], first["bonus"]) == ("9.10", "0.90")
    assert balances(member) == (6_970 + 910, 697 + 90)
    with pytest.raises(RefundExceedsPayment) as refused:
        refund(payment["id"], 2_334)
    assert refused.value.extra == {"refundable": "23.33"}
    rest = refund(payment["id"], 2_333)
    assert (rest["principal"], rest["bonus"]) == ("21.20", "2.13")
    assert balances(member) == (10_000, 1_000)  # exactly what was paid came back
    with pytest.raises(RefundExceedsPayment):
        refund(payment["id"], 1)
    assert_ledger_consistent()


def test_a_refund_goes_back_to_the_top_ups_it_came_from(member, bonus_rule):
    first = top_up(member, 10_000)
    second = top_up(member, 10_000)
    payment = pay(member, 15_000)  # from 20,000 + 2,000: bonus 1,363, principal 13,637
    assert (payment["principal_used_cents"], payment["bonus_used_cents"]) == (13_637, 1_363)

    refund(payment["id"], 15_000)

    from stored_value.models import StoredValueLot

    lots = {lot.top_up_id: (lot.principal_remaining, lot.bonus_remaining) for lot in StoredValueLot.objects.all()}
    assert lots == {int(first["id"]): (10_000, 1_000), int(second["id"]): (10_000, 1_000)}


def test_bonus_returned_after_its_validity_ended_expires_at_once(member):
    rule([{"amount": 10_000, "bonus": 1_000}], bonus_valid_days=1)
    with time_machine.travel("2026-03-01 10:00 +08:00", tick=False):
        top_up(member, 10_000)
        payment = pay(member, 11_000)
    with time_machine.travel("2026-03-05 10:00 +08:00", tick=False):
        result = refund(payment["id"], 11_000)

    assert (result["principal"], result["bonus"], result["bonus_expired"]) == ("100.00", "10.00", "10.00")
    assert balances(member) == (10_000, 0)
    assert list(StoredValueEntry.objects.filter(member=member).values_list("kind", flat=True).order_by("-id")[:2]) == [
        EntryKind.EXPIRE_BONUS,
        EntryKind.REFUND_TO_BALANCE,
    ]
    assert_ledger_consistent()


# --- Withdrawals and adjustments ---------------------------------------------------------------------------------


def test_a_withdrawal_pays_back_unspent_principal_and_forfeits_the_bonus_in_proportion(member, bonus_rule):
    record = top_up(member, 10_000)
    pay(member, 3_333)  # the top-up keeps principal 6,970 and bonus 697

    part = withdraw(record["id"], 5_000)  # 697 × 5,000 / 6,970 = 500 exactly
    assert (part["amount"], part["bonus_forfeited"], part["unspent_left"]) == ("50.00", "5.00", "19.70")
    assert balances(member) == (1_970, 197)
    with pytest.raises(WithdrawalExceedsUnspent) as refused:
        withdraw(record["id"], 1_971)
    assert refused.value.extra == {"unspent": "19.70"}
    rest = withdraw(record["id"])  # all that is left
    assert (rest["amount"], rest["bonus_forfeited"], rest["balance_after"]) == ("19.70", "1.97", "0.00")
    assert TopUp.objects.get(pk=record["id"]).withdrawn_cents == 6_970
    assert AuditEntry.objects.filter(action="stored_value.withdrawn").count() == 2
    assert_ledger_consistent()


def test_a_withdrawal_rounds_the_forfeited_bonus_up(member, bonus_rule):
    record = top_up(member, 10_000)  # 10,000 + 1,000

    result = withdraw(record["id"], 1)  # 1,000 × 1 / 10,000 = 0.1 → 1 cent forfeited

    assert (result["amount"], result["bonus_forfeited"]) == ("0.01", "0.01")


def test_only_a_manager_or_an_admin_withdraws_or_adjusts(member, bonus_rule):
    record = top_up(member, 10_000)

    for role in ("clerk", "marketer", None):
        with pytest.raises(ManagerRequired):
            withdraw(record["id"], role=role)
        with pytest.raises(ManagerRequired):
            adjust(member, principal=100, role=role)
    withdraw(record["id"], 100, role="admin")
    assert balances(member) == (9_900, 990)


def test_a_withdrawal_takes_only_the_principal_left_of_that_top_up(member, bonus_rule):
    first = top_up(member, 10_000)
    top_up(member, 10_000)
    pay(member, 12_000)  # principal 10,910 from the oldest top-up first: the first has none left

    with pytest.raises(WithdrawalExceedsUnspent) as refused:
        withdraw(first["id"])
    assert refused.value.extra == {"unspent": "0.00"}


def test_adjustments_move_either_part_never_below_zero(member, bonus_rule):
    top_up(member, 10_000)

    result = adjust(member, principal=-500, bonus=250)
    assert (result["principal"], result["bonus"], result["balance_after"]) == ("-5.00", "2.50", "107.50")
    assert balances(member) == (9_500, 1_250)
    with pytest.raises(InsufficientBalance):
        adjust(member, bonus=-1_251)
    assert balances(member) == (9_500, 1_250)
    audit = AuditEntry.objects.get(action="stored_value.adjusted")
    assert audit.new_values["principal"] == -500 and audit.new_values["reason"] == "correction"
    assert_ledger_consistent()


def test_entries_are_append_only(member, bonus_rule):
    top_up(member, 10_000)
    entry = StoredValueEntry.objects.first()
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        StoredValueEntry.objects.all().delete()


def test_bonus_past_its_validity_expires_before_the_next_change_sees_it(member):
    rule([{"amount": 10_000, "bonus": 1_000}], bonus_valid_days=1)
    with time_machine.travel("2026-03-01 10:00 +08:00", tick=False):
        top_up(member, 10_000)
        assert pay(member, 1_100)["bonus_used"] == "1.00"  # valid today: spent in proportion
    with time_machine.travel("2026-03-02 00:00 +08:00", tick=False):  # the first instant after its last day
        result = pay(member, 5_000)

    assert (result["principal_used"], result["bonus_used"], result["balance_after"]) == ("50.00", "0.00", "40.00")
    assert balances(member) == (4_000, 0)
    kinds = StoredValueEntry.objects.filter(member=member).order_by("id").values_list("kind", "bonus_delta")
    assert list(kinds) == [("top_up", 0), ("bonus", 1_000), ("pay", -100), ("expire_bonus", -900), ("pay", 0)]
    assert_ledger_consistent()
