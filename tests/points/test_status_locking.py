"""A freeze racing redemptions and other points changes on PostgreSQL, in a fixed interleaving: the member's
account lock orders them, and the status each one checks is the one in force when it holds that lock. The
order in which they committed is read from `commit_order`, so the assertions are exact."""

from collections import Counter
from decimal import Decimal

import pytest

from members.models import MemberStatus
from members.services import MemberFrozen, freeze_member
from points import hooks, services
from points.models import Event, PointsAccount, Redemption, Reward
from points.services.ledger import lock_accounts
from tests.factories import MemberFactory
from tests.interleaving import Checkpoint, Session, commit_order, held_open, start_settled
from tests.points.helpers import adjust, event, purchase, redeem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
ACCOUNTS = "points_pointsaccount"  # the parties queue for a row of this table (the member's account)


def outcome(response):
    return response.status_code if response.status_code < 400 else (response.status_code, response.json()["code"])


def freeze(member):
    return Session(
        lambda: freeze_member(actor="staff:test", member=member, reason="card reported stolen", role="admin"), "freeze"
    )


def test_no_redemption_commits_after_the_freeze(api, store_a):
    member = MemberFactory(home_store=store_a)
    adjust(member, 2000)  # enough for all 20: only the freeze can stop one
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100)

    def redemption(index):
        return Session(
            lambda: api().post(
                "/api/v1/redemptions/",
                {"member": str(member.pk), "reward": str(mug.pk)},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"r{index}",
            ),
            f"redemption {index}",
        )

    freezing = freeze(member)
    with commit_order("points_redemption", "loyalty_auditentry") as committed:
        # A purchase holds her account; 10 redemptions queue for it, then the freeze, then 10 more.
        with held_open(lambda: lock_accounts([member.pk]), "purchase in progress"):
            sessions = start_settled(*[redemption(index) for index in range(10)], rows_of=ACCOUNTS)
            start_settled(freezing, rows_of=ACCOUNTS)
            sessions += start_settled(*[redemption(index) for index in range(10, 20)], rows_of=ACCOUNTS)
        outcomes = [outcome(session.join()) for session in sessions]
        freezing.join()
        order = [table for table, _ in committed()]

    # Each waiter takes the account in turn, but not strictly in arrival order (each redemption updates the row,
    # and the next waiters race for its new version), so how many commit before the freeze is not fixed; the
    # first one in the queue always does. Exact: every redemption that committed did so before the freeze,
    # and every other one answered member_frozen.
    redeemed = outcomes.count(201)
    assert outcomes[0] == 201, outcomes
    assert order == ["points_redemption"] * redeemed + ["loyalty_auditentry"], (order, outcomes)
    # Counters compare with missing items as zero: all 20 may commit before the freeze when it queues last.
    assert Counter(outcomes) == Counter({201: redeemed, (409, "member_frozen"): 20 - redeemed}), outcomes
    assert Redemption.objects.count() == redeemed
    assert PointsAccount.objects.get(member=member).available == 2000 - 100 * redeemed
    member.refresh_from_db()
    assert member.status == MemberStatus.FROZEN


def earn_by_purchase(member, index):
    return purchase(member, "10.00", order_no=f"P{index}")


def earn_by_event(member, index):
    return event(member, "share", key=f"share-{index}")


def use_points_as_cash(member, index):
    return services.deduct_points(
        actor="test",
        scope="test",
        key=f"cash-{index}",
        fingerprint=str(index),
        member_id=member.pk,
        source="store:A001",
        order_no=f"D{index}",
        points=100,
        order_amount=Decimal("100.00"),
    ).result


def redeem_a_mug(member, index):
    mug, _ = Reward.objects.get_or_create(code="mug", defaults={"name": "Mug", "kind": "gift", "cost_points": 100})
    return redeem(member, mug, key=f"mug-{index}")


POINTS_CHANGES = pytest.mark.parametrize(
    ("service", "table"),
    [
        (earn_by_purchase, "members_purchase"),
        (earn_by_event, "points_event"),
        (use_points_as_cash, "points_deduction"),
        (redeem_a_mug, "points_redemption"),
    ],
)


@POINTS_CHANGES
def test_a_points_change_queued_before_the_freeze_commits_before_it(store_a, service, table):
    member = MemberFactory(home_store=store_a)
    adjust(member, 1000)
    freezing = freeze(member)
    with commit_order(table, "loyalty_auditentry") as committed:
        with held_open(lambda: lock_accounts([member.pk]), "purchase in progress"):
            (change,) = start_settled(Session(lambda: service(member, 1), "points change"), rows_of=ACCOUNTS)
            start_settled(freezing, rows_of=ACCOUNTS)
        result = change.join()
        freezing.join()
        order = [table for table, _ in committed()]

    assert isinstance(result, dict), result
    assert order == [table, "loyalty_auditentry"]  # the freeze waited for her account


@POINTS_CHANGES
def test_a_points_change_queued_after_the_freeze_sees_it(store_a, service, table):
    member = MemberFactory(home_store=store_a)
    adjust(member, 1000)
    freezing = freeze(member)
    with commit_order(table, "loyalty_auditentry") as committed:
        # The freeze changes no account row, so the change queued behind it gets the account right after it.
        with held_open(lambda: lock_accounts([member.pk]), "purchase in progress"):
            start_settled(freezing, rows_of=ACCOUNTS)
            (change,) = start_settled(Session(lambda: service(member, 1), "points change"), rows_of=ACCOUNTS)
        freezing.join()
        result = change.join()
        order = [table for table, _ in committed()]

    assert isinstance(result, MemberFrozen), result  # read under the lock, after the freeze committed
    assert order == ["loyalty_auditentry"]


def test_no_referral_bonus_commits_after_the_referrers_freeze(store_a, monkeypatch):
    referrer = MemberFactory(home_store=store_a)
    referee = MemberFactory(home_store=store_a, referrer=referrer)
    adjust(referrer, 100)  # her account exists (a freeze would otherwise wait on its creation, not its lock)
    checkpoint = Checkpoint()  # holds the first purchase open after the bonus is booked
    monkeypatch.setattr(hooks, "_activity_listeners", [*hooks._activity_listeners, checkpoint])
    freezing = freeze(referrer)
    with commit_order("points_event", "loyalty_auditentry") as committed:
        buying = Session(lambda: purchase(referee, "10.00", order_no="FIRST"), "first purchase").start()
        checkpoint.wait()
        start_settled(freezing, rows_of=ACCOUNTS)
        checkpoint.release()
        result = buying.join()
        freezing.join()
        order = [table for table, _ in committed()]

    assert result["points"]["awarded"] == 10
    assert order == ["points_event", "loyalty_auditentry"]
    assert list(Event.objects.values_list("member", "type", "points")) == [(referrer.pk, "referral", 100)]
