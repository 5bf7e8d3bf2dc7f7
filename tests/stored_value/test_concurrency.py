"""Real concurrency on PostgreSQL: threads with their own connections hit the stored-value API at the same moment."""

from collections import Counter
from datetime import date

import pytest
import time_machine

from loyalty.credentials import create_api_client
from stored_value.models import Payment, StoredValueAccount, StoredValueEntry, TopUp, Withdrawal
from stored_value.services import expiry
from tests.conftest import ALL_SCOPES, _client, staff_client
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.test_concurrency import outcome, run_together
from tests.stored_value.helpers import assert_ledger_consistent, rule, top_up

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 30


@pytest.fixture
def pos(store_a):
    """A factory of API clients for one client app of store A (one client per thread)."""
    _, key = create_api_client(name="POS", stores=[store_a], scopes=ALL_SCOPES)
    return lambda: _client(HTTP_AUTHORIZATION=f"Api-Key {key}")


def test_thirty_payments_against_a_balance_that_covers_ten(pos, store_a):
    rule([{"amount": 10_000, "bonus": 1_000}])
    member = MemberFactory(home_store=store_a)
    top_up(member, 10_000)  # 100.00 + 10.00 bonus: ten payments of 11.00

    responses = run_together(
        THREADS,
        lambda i: pos().post(
            "/api/v1/stored-value/payments/",
            {"member": str(member.pk), "order_no": f"O{i}", "amount": "11.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"k{i}",
        ),
    )

    assert Counter(map(outcome, responses)) == {201: 10, "insufficient_balance": 20}
    account = StoredValueAccount.objects.get(member=member)
    assert (account.principal_cents, account.bonus_cents) == (0, 0)
    assert Payment.objects.count() == 10
    assert sorted(Payment.objects.values_list("principal_used", "bonus_used")) == [(1_000, 100)] * 10
    assert_ledger_consistent()


def test_twenty_retries_of_one_top_up_make_one_top_up(pos, store_a):
    rule([{"amount": 10_000, "bonus": 1_000}])
    member = MemberFactory(home_store=store_a)
    body = {"member": str(member.pk), "amount": "100.00", "payment_method": "alipay", "payment_ref": "ALI-20"}

    responses = run_together(20, lambda i: pos().post("/api/v1/stored-value/top-ups/", body, format="json"))

    assert Counter(map(outcome, responses)) == {201: 1, 200: 19}
    assert len({response.json()["id"] for response in responses}) == 1
    assert TopUp.objects.count() == 1
    account = StoredValueAccount.objects.get(member=member)
    assert (account.principal_cents, account.bonus_cents) == (10_000, 1_000)
    assert_ledger_consistent()


def test_a_payment_and_a_withdrawal_racing_never_overdraw(pos, store_a):
    """Each of ten members has 100.00 + 10.00; a payment of all 110.00 and a withdrawal of the top-up's unspent
    principal race for each: exactly one of the two wins, and the balance ends at exactly zero."""
    rule([{"amount": 10_000, "bonus": 1_000}])
    members = MemberFactory.create_batch(10, home_store=store_a)
    top_ups = [top_up(member, 10_000)["id"] for member in members]
    manager = StaffUserFactory(username="manager-race", role="manager", stores=[store_a])
    managers = [staff_client(manager) for _ in members]

    def request(i):
        index = i // 2
        if i % 2 == 0:
            return pos().post(
                "/api/v1/stored-value/payments/",
                {"member": str(members[index].pk), "order_no": f"O{index}", "amount": "110.00"},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"p{index}",
            )
        return managers[index].post(
            "/api/v1/stored-value/withdrawals/",
            {"top_up": top_ups[index], "reason": "race"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"w{index}",
        )

    responses = run_together(2 * len(members), request)

    for index in range(len(members)):
        pair = (outcome(responses[2 * index]), outcome(responses[2 * index + 1]))
        assert pair in {(201, "withdrawal_exceeds_unspent"), ("insufficient_balance", 201)}
    assert Payment.objects.count() + Withdrawal.objects.count() == len(members)
    assert set(StoredValueAccount.objects.values_list("principal_cents", "bonus_cents")) == {(0, 0)}
    assert_ledger_consistent()


def test_the_bonus_expiry_job_racing_payments_and_itself_expires_each_bonus_once(pos, store_a):
    """Ten members whose bonus ended with 1 March: ten payments (each first expires her bonus lazily) race two runs
    of the nightly job. Each member ends with exactly one expire_bonus entry, whoever wrote it."""
    rule([{"amount": 10_000, "bonus": 1_000}], bonus_valid_days=1)
    members = MemberFactory.create_batch(10, home_store=store_a)
    with time_machine.travel("2026-03-01 10:00 +08:00", tick=False):
        for member in members:
            top_up(member, 10_000)

    def request(i):
        if i >= len(members):
            return expiry.expire_bonus(as_of=date(2026, 3, 1), chunk_size=3)
        return pos().post(
            "/api/v1/stored-value/payments/",
            {"member": str(members[i].pk), "order_no": f"O{i}", "amount": "50.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"p{i}",
        )

    with time_machine.travel("2026-03-02 01:00 +08:00", tick=True):
        results = run_together(len(members) + 2, request)

    assert [response.status_code for response in results[: len(members)]] == [201] * len(members)
    assert results[-1].members + results[-2].members <= len(members)
    expired = StoredValueEntry.objects.filter(kind="expire_bonus").values_list("member_id", "bonus_delta")
    assert sorted(expired) == sorted((member.pk, -1_000) for member in members)
    assert set(StoredValueAccount.objects.values_list("principal_cents", "bonus_cents")) == {(5_000, 0)}
    assert_ledger_consistent()
