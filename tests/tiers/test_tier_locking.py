"""The nightly downgrade and a member's own activity on PostgreSQL, in a fixed interleaving: whichever comes
second waits for the first and works from what it committed, so the result is the one a serial order gives."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from points import hooks
from points.models import Redemption, Reward
from tests.factories import MemberFactory
from tests.interleaving import Checkpoint, Session, held_open, start_settled
from tests.points.helpers import adjust, balances, purchase, redeem
from tiers.jobs import downgrade_chunk
from tiers.models import MemberTier, TierChange
from tiers.services import NotEligible

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SHANGHAI = ZoneInfo("Asia/Shanghai")
AS_OF = date(2027, 1, 10)
JOB_TIME = datetime(2027, 1, 10, 3, tzinfo=SHANGHAI)  # the nightly run; purchases "during" it happen then too
GOLD_SINCE = datetime(2026, 1, 10, 12, tzinfo=SHANGHAI)


@pytest.fixture
def gold_member_due(default_ladder, store_a):
    """Gold since 2026-01-10 (held until 2027-01-10); on that date her window holds only 110 growth, so the
    downgrade takes her to regular unless she earns more first."""
    member = MemberFactory(home_store=store_a)
    with time_machine.travel(GOLD_SINCE, tick=False):
        purchase(member, "4990.00")  # 5000: gold
    with time_machine.travel(datetime(2026, 3, 1, 12, tzinfo=SHANGHAI), tick=False):
        purchase(member, "100.00")  # 110
    return member


def evaluate(member, now):
    """The job's chunk for this member, in the caller's transaction (as the job runner calls it)."""
    return downgrade_chunk(member.pk, member.pk + 1, AS_OF, now)


def evaluate_in_own_transaction(member, now):
    with transaction.atomic(durable=True):
        return evaluate(member, now)


def standing(member):
    row = MemberTier.objects.select_related("tier").get(member=member)
    return row.tier.code, row.since, row.hold_until, row.window_growth


def history(member):
    return list(
        TierChange.objects.filter(member=member)
        .order_by("id")
        .values_list("reason", "from_tier__code", "to_tier__code", "growth_value")
    )


def test_a_purchase_during_the_downgrade_waits_for_it_and_cannot_undo_it(gold_member_due):
    member = gold_member_due
    with time_machine.travel(JOB_TIME, tick=False):
        now = timezone.now()
        with held_open(lambda: evaluate(member, now), "downgrade") as downgrade:
            buying = Session(lambda: purchase(member, "100.00", order_no="DURING-THE-JOB"), "purchase")
            start_settled(buying)  # it waits for the downgrade's locks
            counts = downgrade.commit()
        result = buying.join()

    # Serial order: the downgrade, then the purchase (at regular: no multiplier; its growth keeps the new tier).
    assert counts == {"evaluated": 1, "downgraded": 1}
    assert (result["points"]["awarded"], result["points"]["breakdown"]) == (100, [{"source": "base", "points": 100}])
    assert (result["growth_awarded"], result["tier_change"]) == (110, None)
    assert standing(member) == ("regular", now, date(2028, 1, 10), 220)
    assert history(member) == [("upgrade", "regular", "gold", 5000), ("downgrade", "gold", "regular", 110)]


def test_the_downgrade_waits_for_a_purchase_in_progress_and_counts_its_growth(gold_member_due, monkeypatch):
    member = gold_member_due
    checkpoint = Checkpoint()  # holds the purchase open after tiers has booked its growth and written her tier row
    monkeypatch.setattr(hooks, "_activity_listeners", [*hooks._activity_listeners, checkpoint])
    with time_machine.travel(JOB_TIME, tick=False):
        now = timezone.now()
        buying = Session(lambda: purchase(member, "3900.00", order_no="BEFORE-THE-JOB"), "purchase").start()
        checkpoint.wait()
        downgrading = Session(lambda: evaluate_in_own_transaction(member, now), "downgrade")
        start_settled(downgrading)  # it waits for the purchase's locks
        checkpoint.release()
        result = buying.join()
        counts = downgrading.join()

    # Serial order: the purchase (3910 growth: 4020 in the window), then the evaluation, which keeps her gold.
    assert (result["growth_awarded"], result["tier_change"]) == (3910, None)
    assert counts == {"evaluated": 1, "downgraded": 0}
    assert standing(member) == ("gold", GOLD_SINCE, date(2028, 1, 10), 4020)
    assert history(member) == [("upgrade", "regular", "gold", 5000)]


def test_a_redemption_during_the_downgrade_is_judged_on_the_downgraded_tier(gold_member_due):
    member = gold_member_due
    adjust(member, 500)
    lounge = Reward.objects.create(
        code="lounge", name="Lounge", kind="coupon", cost_points=100, eligible_tiers=["gold", "diamond"]
    )
    with time_machine.travel(JOB_TIME, tick=False):
        now = timezone.now()
        with held_open(lambda: evaluate(member, now), "downgrade") as downgrade:
            redeeming = Session(lambda: redeem(member, lounge), "redemption")
            start_settled(redeeming)  # it waits for the downgrade's locks
            downgrade.commit()
        outcome = redeeming.join()

    assert isinstance(outcome, NotEligible), outcome
    assert outcome.code == "not_eligible"
    assert balances(member)[0] == 500
    assert not Redemption.objects.exists()
    assert standing(member)[0] == "regular"
