"""The campaign engine as a purchase, an event or a registration meets it: kinds, targeting, conditions, stacking,
caps, budgets, A/B groups and refunds. Exact points in every case (base: 1 point per yuan, no tiers)."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import HOLDOUT, CampaignAssignment, CampaignAward
from campaigns.services.assignment import bucket, group_for
from loyalty.clock import business_date, business_tz
from loyalty.models import Alert
from members.models import RfmSnapshot
from members.services import register_member
from points.models import PointsAccount
from points.services import preview_purchase
from tests.campaigns.helpers import campaign_lines, running_campaign
from tests.factories import MemberFactory, StoreFactory, TagFactory
from tests.points.helpers import event, purchase, refund
from tiers.models import GrowthEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


def test_a_double_points_campaign_adds_a_named_line_and_preview_shows_the_same(member, store_a):
    double = running_campaign(name="Double points", multiplier=Decimal("2"))
    expected = [
        {"source": "base", "points": 129},
        {"source": f"campaign:{double.pk}", "points": 129, "campaign_name": "Double points"},
    ]
    preview = preview_purchase(member=member, amount=Decimal("129.90"), store=store_a)
    assert preview["points"]["breakdown"] == expected
    result = purchase(member, "129.90", store=store_a)
    assert result["points"]["breakdown"] == expected
    assert result["points"]["awarded"] == 258
    award = CampaignAward.objects.get()
    assert (award.campaign_id, award.member_id, award.points, award.group) == (double.pk, member.pk, 129, "default")
    assert award.purchase_id == int(result["id"])


def test_nothing_applies_outside_the_campaign_window_or_when_paused(member, store_a):
    from campaigns import services

    now = timezone.now()
    later = running_campaign(multiplier=Decimal("2"), starts_at=now + timedelta(days=1))
    over = running_campaign(multiplier=Decimal("3"), starts_at=now - timedelta(days=3), ends_at=now + timedelta(days=1))
    type(over).objects.filter(pk=over.pk).update(ends_at=now - timedelta(days=1))  # it ran, and its end passed
    over.refresh_from_db()
    paused = running_campaign(multiplier=Decimal("4"))
    services.pause_campaign(actor="test", campaign_id=paused.pk)
    assert campaign_lines(purchase(member, 100, store=store_a)) == {}
    assert later.status_at(now) == "scheduled" and over.status_at(now) == "ended"


def test_conditions_weekday_hour_category_and_minimum_amount(member, store_a):
    local = timezone.now().astimezone(business_tz())
    today, hour = local.isoweekday(), local.hour
    other_day = today % 7 + 1
    on_day = running_campaign(name="today", multiplier=Decimal("2"), conditions={"weekdays": [today]})
    running_campaign(name="another day", multiplier=Decimal("5"), conditions={"weekdays": [other_day]})
    running_campaign(name="another hour", multiplier=Decimal("5"), conditions={"hours": [(hour + 12) % 24]})
    big = running_campaign(
        name="big baskets",
        kind="bonus",
        bonus_points=30,
        trigger={"action": "first_purchase_in_days", "days": 30},
        conditions={"min_amount": "200"},
    )
    drinks = running_campaign(name="drinks", multiplier=Decimal("3"), conditions={"categories": ["drinks"]})
    lines = [
        {"sku": "tea", "category": "drinks", "quantity": Decimal(1), "unit_price": Decimal("40")},
        {"sku": "cake", "category": "food", "quantity": Decimal(1), "unit_price": Decimal("60")},
    ]
    result = purchase(member, 100, store=store_a, lines=lines)
    # today: +100 (2x); drinks: 40% of the base at 3x on top of 2x = 100 * 0.4 * 2 * 2 = 160; not 200 yuan: no bonus
    assert campaign_lines(result) == {on_day.pk: 100, drinks.pk: 160}
    assert big.pk not in campaign_lines(result)


def test_stacked_multipliers_multiply_and_bonuses_add(member, store_a):
    two = running_campaign(name="2x", multiplier=Decimal("2"), priority=10)
    three = running_campaign(name="3x", multiplier=Decimal("3"), priority=5)
    bonus = running_campaign(
        name="welcome back", kind="bonus", bonus_points=50, trigger={"action": "first_purchase_in_days", "days": 30}
    )
    result = purchase(member, 100, store=store_a)
    # 100 base x 2 x 3 = 600: the 2x line adds 100, the 3x line adds 200 x 2 = 400; the bonus adds 50.
    assert campaign_lines(result) == {two.pk: 100, three.pk: 400, bonus.pk: 50}
    assert result["points"]["awarded"] == 650


def test_of_the_best_campaigns_only_the_one_giving_most_applies(member, store_a):
    running_campaign(name="2x", multiplier=Decimal("2"), stacking="best", priority=10)
    top = running_campaign(name="3x", multiplier=Decimal("3"), stacking="best", priority=1)
    stacked = running_campaign(
        name="bonus", kind="bonus", bonus_points=7, trigger={"action": "first_purchase_in_days", "days": 1}
    )
    assert campaign_lines(purchase(member, 100, store=store_a)) == {top.pk: 200, stacked.pk: 7}


def test_an_exclusive_campaign_stops_every_lower_priority_one(member, store_a):
    higher = running_campaign(name="high", multiplier=Decimal("2"), priority=30)
    exclusive = running_campaign(name="exclusive", multiplier=Decimal("3"), stacking="exclusive", priority=20)
    running_campaign(name="lower", multiplier=Decimal("5"), priority=10)
    # higher: +100; exclusive on top of 2x: 100 x 2 x 2 = +400; the lower one is stopped.
    assert campaign_lines(purchase(member, 100, store=store_a)) == {higher.pk: 100, exclusive.pk: 400}


def test_targeting_by_store_channel_tier_tag_segment_and_lifecycle(store_a, store_b):
    from members.models import MemberTag

    vip = TagFactory(code="vip")
    tagged = MemberFactory(home_store=store_a)
    MemberTag.objects.create(member=tagged, tag=vip)
    plain = MemberFactory(home_store=store_a)
    RfmSnapshot.objects.create(
        member=plain, as_of=date(2026, 1, 1), segment="important_value", lifecycle="active", frequency=3
    )
    at_b = running_campaign(name="store B", multiplier=Decimal("2"), target={"stores": ["B001"]})
    online = running_campaign(name="online", multiplier=Decimal("2"), target={"channels": ["online"]})
    for_vip = running_campaign(name="vip", multiplier=Decimal("2"), target={"tags": ["vip"]})
    for_segment = running_campaign(
        name="seg",
        kind="bonus",
        bonus_points=9,
        trigger={"action": "first_purchase_in_days", "days": 10},
        target={"segments": ["important_value"], "lifecycle": ["active"]},
    )
    assert campaign_lines(purchase(tagged, 100, store=store_a)) == {for_vip.pk: 100}
    assert campaign_lines(purchase(plain, 100, store=store_b, channel="online")) == {
        at_b.pk: 100,
        online.pk: 200,
        for_segment.pk: 9,
    }


def test_first_purchase_in_n_days_bonus(member, store_a):
    comeback = running_campaign(kind="bonus", bonus_points=20, trigger={"action": "first_purchase_in_days", "days": 30})
    assert campaign_lines(purchase(member, 10, store=store_a)) == {comeback.pk: 20}
    assert campaign_lines(purchase(member, 10, store=store_a)) == {}
    old = purchase(member, 10, store=store_a)  # a purchase 31 days ago does not count against the next one
    from members.models import Purchase

    Purchase.objects.filter(member=member).update(occurred_at=timezone.now() - timedelta(days=31))
    assert old and campaign_lines(purchase(member, 10, store=store_a)) == {comeback.pk: 20}


def test_event_bonuses_sign_in_streak_review_share_and_custom(member, store_a):
    from points.models import EarningRule

    streak = running_campaign(kind="bonus", bonus_points=15, trigger={"action": "sign_in_streak", "days": 2})
    review = running_campaign(kind="bonus", bonus_points=8, trigger={"action": "review"})
    share = running_campaign(kind="bonus", bonus_points=3, trigger={"action": "share"})
    EarningRule.objects.create(channel="custom", event_type="quiz", name="quiz", points=1)
    quiz = running_campaign(kind="bonus", bonus_points=4, trigger={"action": "event", "event_type": "quiz"})
    account = PointsAccount.objects.create(member=member)
    account.last_sign_in, account.sign_in_streak = business_date() - timedelta(days=1), 1
    account.save()
    assert campaign_lines(event(member, "sign_in")) == {streak.pk: 15}
    order = purchase(member, 10, store=store_a)
    assert campaign_lines(event(member, "review", order_no=order["order_no"])) == {review.pk: 8}
    assert campaign_lines(event(member, "share")) == {share.pk: 3}
    assert campaign_lines(event(member, "quiz")) == {quiz.pk: 4}


def test_birthday_month_bonus_once_a_year_and_win_back_once(store_a):
    today = business_date()
    member = MemberFactory(home_store=store_a, birthday=date(1990, today.month, 1))
    RfmSnapshot.objects.create(member=member, as_of=today - timedelta(days=1), segment="inactive", lifecycle="dormant")
    birthday = running_campaign(kind="birthday", bonus_points=88)
    win_back = running_campaign(kind="win_back", bonus_points=66)
    assert campaign_lines(purchase(member, 10, store=store_a)) == {birthday.pk: 88, win_back.pk: 66}
    assert campaign_lines(purchase(member, 10, store=store_a)) == {}
    other = MemberFactory(home_store=store_a, birthday=date(1990, today.month % 12 + 1, 1))
    assert campaign_lines(purchase(other, 10, store=store_a)) == {}


def test_referral_rewards_both_sides_on_the_first_purchase_only(store_a):
    referral = running_campaign(kind="referral", bonus_points=30, trigger={"referrer_points": 50})
    referrer = MemberFactory(home_store=store_a)
    referee = MemberFactory(home_store=store_a, referrer=referrer)
    assert campaign_lines(purchase(referee, 10, store=store_a)) == {referral.pk: 30}
    referrer_award = CampaignAward.objects.get(member=referrer)
    assert (referrer_award.points, referrer_award.reference) == (50, f"referral:{referee.member_no}")
    assert campaign_lines(purchase(referee, 10, store=store_a)) == {}
    assert CampaignAward.objects.filter(member=referrer).count() == 1


def test_registration_bonus_is_given_once_at_registration(store_a):
    welcome = running_campaign(kind="bonus", bonus_points=25, trigger={"action": "registration"})
    member = register_member(actor="test", phone="+8613700137000", store=store_a)
    award = CampaignAward.objects.get(member=member)
    assert (award.campaign_id, award.points, award.reference) == (welcome.pk, 25, "registration")
    assert PointsAccount.objects.get(member=member).available == 25


def test_per_member_cap_and_period_cap_cut_the_line_to_what_is_left(member, store_a):
    capped = running_campaign(multiplier=Decimal("2"), per_member_cap=250)
    daily = running_campaign(
        name="daily",
        kind="bonus",
        bonus_points=40,
        trigger={"action": "share"},
        per_member_period_cap=100,
        cap_period="day",
    )
    assert campaign_lines(purchase(member, 100, store=store_a)) == {capped.pk: 100}
    assert campaign_lines(purchase(member, 100, store=store_a)) == {capped.pk: 100}
    assert campaign_lines(purchase(member, 100, store=store_a)) == {capped.pk: 50}
    assert campaign_lines(purchase(member, 100, store=store_a)) == {}
    assert [campaign_lines(event(member, "share")).get(daily.pk) for _ in range(3)] == [40, 40, 20]


def test_a_budget_is_never_exceeded_and_its_exhaustion_raises_one_alert(member, store_a):
    budgeted = running_campaign(multiplier=Decimal("2"), budget_points=250)
    got = [campaign_lines(purchase(member, 100, store=store_a)).get(budgeted.pk, 0) for _ in range(4)]
    assert got == [100, 100, 50, 0]
    budgeted.refresh_from_db()
    assert budgeted.budget_used == 250 and budgeted.budget_exhausted_at is not None
    alert = Alert.objects.get()
    assert (alert.rule, alert.subject, alert.value) == ("campaign_budget_exhausted", f"campaign:{budgeted.pk}", 250)


def test_a_refund_returns_campaign_points_to_the_budget_in_proportion(member, store_a):
    budgeted = running_campaign(multiplier=Decimal("2"), budget_points=1000)
    order = purchase(member, 100, store=store_a)
    refund(order["id"], "30")
    budgeted.refresh_from_db()
    assert budgeted.budget_used == 70
    assert CampaignAward.objects.get().points_returned == 30
    refund(order["id"], "70")
    budgeted.refresh_from_db()
    assert budgeted.budget_used == 0
    assert CampaignAward.objects.get().points_returned == 100


def test_a_part_refund_returns_an_exact_share_of_campaign_points_whole(member, store_a):
    """376 campaign points, 50.00 of 188.00 refunded: exactly 100 go back (dividing first gave 99.99… and 99)."""
    budgeted = running_campaign(multiplier=Decimal("3"), budget_points=1000)
    order = purchase(member, 188, store=store_a)
    assert campaign_lines(order) == {budgeted.pk: 376}
    refund(order["id"], "50")
    budgeted.refresh_from_db()
    assert CampaignAward.objects.get().points_returned == 100
    assert budgeted.budget_used == 276


def test_groups_are_a_stable_hash_and_the_holdout_gets_nothing(store_a):
    members = MemberFactory.create_batch(40, home_store=store_a)
    split = running_campaign(
        multiplier=Decimal("2"),
        holdout_percent=Decimal("25"),
        variants=[{"code": "a", "weight": 50}, {"code": "b", "weight": 50, "multiplier": Decimal("3")}],
    )
    variants = [("a", 50), ("b", 50)]
    expected = {m.pk: group_for(split.pk, m.pk, holdout=2500, variants=variants) for m in members}
    for m in members:
        lines = campaign_lines(purchase(m, 100, store=store_a))
        assert lines == {HOLDOUT: {}, "a": {split.pk: 100}, "b": {split.pk: 200}}[expected[m.pk]]
    assert dict(CampaignAssignment.objects.values_list("member_id", "group")) == expected
    assert set(expected.values()) == {HOLDOUT, "a", "b"}
    # The bucket is the documented hash: the first 32 bits of md5("<campaign>:<member>") scaled to 10,000.
    import hashlib

    digest = hashlib.md5(f"{split.pk}:{members[0].pk}".encode(), usedforsecurity=False).hexdigest()
    assert bucket(split.pk, members[0].pk) == int(digest[:8], 16) * 10_000 // 2**32


def test_taking_part_feeds_the_campaign_growth_indicator_once_per_campaign(member, store_a):
    from tiers.models import GrowthPolicy

    GrowthPolicy.objects.create(valid_from=timezone.now() - timedelta(days=1), per_campaign=Decimal("5"))
    running_campaign(multiplier=Decimal("2"))
    purchase(member, 100, store=store_a)
    purchase(member, 100, store=store_a)
    assert list(GrowthEntry.objects.filter(kind="campaign").values_list("member_id", "value")) == [(member.pk, 5)]


def test_a_store_of_no_campaign_costs_nothing(member):
    store = StoreFactory(code="C001")
    running_campaign(multiplier=Decimal("2"), target={"stores": ["A001"]})
    assert campaign_lines(purchase(member, 100, store=store)) == {}
    assert CampaignAssignment.objects.count() == 0


def test_the_daily_cap_cuts_campaign_lines_before_the_budget_is_charged(member, store_a):
    from points.models import PointsPolicy

    PointsPolicy.objects.create(valid_from=timezone.now() - timedelta(days=1), daily_cap=150)
    budgeted = running_campaign(multiplier=Decimal("2"), budget_points=1000)
    result = purchase(member, 100, store=store_a)
    assert result["points"]["breakdown"] == [
        {"source": "base", "points": 100},
        {"source": f"campaign:{budgeted.pk}", "points": 50, "campaign_name": budgeted.name},
    ]
    budgeted.refresh_from_db()
    assert budgeted.budget_used == 50
    assert campaign_lines(purchase(member, 100, store=store_a)) == {}
    budgeted.refresh_from_db()
    assert budgeted.budget_used == 50


def test_a_merge_moves_the_duplicates_awards_so_the_survivors_cap_counts_them(store_a):
    from members.services.merge import merge_members

    survivor, duplicate = MemberFactory.create_batch(2, home_store=store_a)
    capped = running_campaign(multiplier=Decimal("2"), per_member_cap=150)
    purchase(duplicate, 100, store=store_a)
    outcome = merge_members(actor="staff:boss", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason="same")
    assert (outcome.result["moved"]["campaign_awards"], outcome.result["moved"]["campaign_assignments"]) == (1, 1)
    assert list(CampaignAward.objects.values_list("member_id", flat=True)) == [survivor.pk]
    assert campaign_lines(purchase(survivor, 100, store=store_a)) == {capped.pk: 50}


def test_an_event_with_a_long_idempotency_key_keeps_its_award_reference_short(member):
    share = running_campaign(kind="bonus", bonus_points=3, trigger={"action": "share"})
    assert campaign_lines(event(member, "share", key="k" * 200)) == {share.pk: 3}
    reference = CampaignAward.objects.get().reference
    assert reference.startswith("event:sha256:") and len(reference) == len("event:sha256:") + 64
