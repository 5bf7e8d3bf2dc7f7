"""check_ledger covers stored value: balances equal the sums over the entries and over the lots, both parts."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.factories import MemberFactory
from tests.stored_value.helpers import pay, rule, top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(store_a):
    rule([{"amount": 10_000, "bonus": 1_000}])
    member = MemberFactory(home_store=store_a)
    top_up(member, 10_000)
    pay(member, 1_100)
    return member


def check():
    out = StringIO()
    call_command("check_ledger", stdout=out)
    return out.getvalue()


def test_check_ledger_passes_on_a_consistent_stored_value_ledger(member):
    assert "points and stored value" in check()


@pytest.mark.tampers_ledger
@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("UPDATE stored_value_storedvalueaccount SET bonus_cents = bonus_cents + 1", "stored value account"),
        ("UPDATE stored_value_storedvalueaccount SET principal_cents = principal_cents - 1", "stored value account"),
        ("UPDATE stored_value_storedvaluelot SET principal_remaining = principal_remaining - 1", "stored value"),
    ],
)
def test_check_ledger_fails_when_a_balance_or_a_lot_disagrees_with_the_entries(member, statement, says):
    with connection.cursor() as cursor:
        cursor.execute(statement)

    with pytest.raises(CommandError, match="ledger mismatch"):
        check()
    from points.audit import all_ledger_mismatches

    assert any(says in line and f"member {member.pk}" in line for line in all_ledger_mismatches())
