"""A member merge moves the duplicate's stored value to the survivor: balances add as two merge entries, her lots,
top-ups and payments follow, so a later refund or withdrawal acts on the survivor."""

import pytest

from members.services import MemberMerged
from members.services.merge import merge_members
from stored_value.models import StoredValueAccount, StoredValueEntry
from tests.factories import MemberFactory
from tests.stored_value.helpers import assert_ledger_consistent, balances, pay, refund, rule, top_up, withdraw

pytestmark = pytest.mark.django_db


def test_a_merge_moves_the_balance_and_what_was_paid_with_it(store_a):
    rule([{"amount": 10_000, "bonus": 1_000}])
    survivor, duplicate = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    top_up(survivor, 5_000)
    record = top_up(duplicate, 10_000)
    payment = pay(duplicate, 1_100)  # principal 1,000, bonus 100

    result = merge_members(actor="staff:boss", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason="same phone")

    assert result.result["moved"]["stored_value"] == {
        "principal": "90.00",
        "bonus": "9.00",
        "lots": 1,
        "top_ups": 1,
        "payments": 1,
        "withdrawals": 0,
    }
    assert balances(survivor) == (5_000 + 9_000, 900)
    assert balances(duplicate) == (0, 0)
    assert StoredValueAccount.objects.get(member=duplicate).closed
    merges = StoredValueEntry.objects.filter(kind="merge").order_by("member_id")
    assert sorted(merges.values_list("member_id", "principal_delta", "bonus_delta")) == sorted(
        [(duplicate.pk, -9_000, -900), (survivor.pk, 9_000, 900)]
    )
    refund(payment["id"], 1_100)  # back to the survivor, into the moved lot
    assert balances(survivor) == (15_000, 1_000)
    assert withdraw(record["id"])["amount"] == "100.00"  # the duplicate's top-up, withdrawn from the survivor
    assert balances(survivor) == (5_000, 0)
    with pytest.raises(MemberMerged):
        top_up(duplicate, 100)
    assert_ledger_consistent()
