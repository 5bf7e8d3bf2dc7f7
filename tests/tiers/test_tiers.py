"""Tiers and growth value: thresholds, upgrades at once, weights by date and tag, protected downgrades."""

import threading
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction

from points import services as points_services
from points.models import Reward
from tests.conftest import member_client
from tests.factories import MemberFactory, TagFactory
from tests.points.helpers import adjust, balances, event, purchase, redeem, refund
from tiers.jobs import evaluate_downgrades
from tiers.models import GrowthEntry, GrowthPolicy, MemberTier, Tier, TierChange
from tiers.services import NotEligible, window_growth

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def tier_of(member):
    row = MemberTier.objects.filter(member=member).select_related("tier").first()
    return row.tier.code if row else "regular"


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


@pytest.mark.django_db
def test_default_ladder_and_the_api(admin_api):
    response = admin_api.get("/api/v1/tiers/")
    assert response.status_code == 200
    assert [(t["code"], t["name"], t["entry_threshold"], t["points_multiplier"]) for t in response.json()] == [
        ("regular", "普通会员", 0, "1.00"),
        ("silver", "银卡", 1000, "1.20"),
        ("gold", "金卡", 5000, "1.50"),
        ("diamond", "钻石", 20000, "2.00"),
    ]


@pytest.mark.django_db
def test_growth_from_each_indicator_with_the_default_weights(member):
    purchase(member, "129.90")
    with time_machine.travel(at(2026, 3, 1, 9), tick=False):
        assert event(member, "sign_in")["growth_awarded"] == 2
        assert event(member, "share")["growth_awarded"] == 1
    order = purchase(member, "5.00", order_no="REVIEWED")
    assert order["growth_awarded"] == 15
    assert event(member, "review", order_no="REVIEWED")["growth_awarded"] == 1
    values = sorted(GrowthEntry.objects.values_list("kind", "value"))
    assert values == [("purchase", 15), ("purchase", 139), ("review", 1), ("share", 1), ("sign_in", 2)]


@pytest.mark.django_db
def test_threshold_is_crossed_exactly_at_the_boundary(member):
    first = purchase(member, "4989.00")  # growth 4989 + 10 = 4999
    assert first["growth_awarded"] == 4999
    assert first["tier_change"] == {"from": "regular", "to": "silver", "reason": "upgrade"}
    assert tier_of(member) == "silver"
    second = event(member, "share")  # +1 → 5000
    assert second["tier_change"] == {"from": "silver", "to": "gold", "reason": "upgrade"}
    assert tier_of(member) == "gold"
    assert list(TierChange.objects.order_by("id").values_list("reason", "to_tier__code", "growth_value")) == [
        ("upgrade", "silver", 4999),
        ("upgrade", "gold", 5000),
    ]


@pytest.mark.django_db
def test_one_purchase_can_jump_several_tiers(member, admin_api):
    result = purchase(member, "19990.00")
    assert result["growth_awarded"] == 20000
    assert result["tier_change"] == {"from": "regular", "to": "diamond", "reason": "upgrade"}
    assert TierChange.objects.count() == 1
    standing = admin_api.get(f"/api/v1/members/{member.pk}/tier/").json()
    assert standing["tier"]["code"] == "diamond"
    assert standing["growth_value"] == 20000
    assert standing["next_tier"] is None and standing["to_next"] is None
    assert standing["history"][0]["from"] == "regular" and standing["history"][0]["to"] == "diamond"


@pytest.mark.django_db
def test_tier_view_shows_progress_to_the_next_tier(member, admin_api):
    purchase(member, "1190.00")  # 1200 growth: silver
    body = admin_api.get(f"/api/v1/members/{member.pk}/tier/").json()
    assert (body["tier"]["code"], body["growth_value"], body["next_tier"]["code"], body["to_next"]) == (
        "silver",
        1200,
        "gold",
        3800,
    )
    assert body["hold_until"] is not None
    assert member_client(member).get("/api/v1/me/tier/").json() == body
    assert admin_api.get(f"/api/v1/members/{member.pk}/").json()["tier"] == {"code": "silver", "name": "银卡"}
    assert admin_api.get(f"/api/v1/members/{member.pk}/").json()["growth_value"] == 1200
    assert [m["id"] for m in admin_api.get("/api/v1/members/", {"tier": "silver"}).json()["results"]] == [
        str(member.pk)
    ]


@pytest.mark.django_db
def test_weights_changed_from_a_date_apply_only_to_later_events(member):
    GrowthPolicy.objects.create(name="v2: orders count double", per_order=Decimal("20"), valid_from=at(2026, 6, 1))
    with time_machine.travel(at(2026, 5, 31, 23, 59), tick=False):
        assert purchase(member, "100")["growth_awarded"] == 110
    with time_machine.travel(at(2026, 6, 1, 0, 0), tick=False):
        assert purchase(member, "100")["growth_awarded"] == 120


@pytest.mark.django_db
def test_a_tag_can_have_its_own_weights(member, store_a):
    students = TagFactory(code="student")
    GrowthPolicy.objects.create(
        name="students", tag=students, per_currency_unit=Decimal("2"), valid_from=at(2020, 1, 1)
    )
    student = MemberFactory(home_store=store_a)
    student.member_tags.create(tag=students)
    assert purchase(student, "100")["growth_awarded"] == 210
    assert purchase(member, "100")["growth_awarded"] == 110


@pytest.mark.django_db
def test_refund_pulls_growth_back_but_does_not_downgrade_at_once(member):
    order = purchase(member, "1000.00")  # 1010: silver
    assert tier_of(member) == "silver"
    result = refund(order["id"], "500.00")
    assert result["growth_reversed"] == 505
    assert tier_of(member) == "silver"
    assert refund(order["id"], "500.00")["growth_reversed"] == 505
    assert sum(GrowthEntry.objects.values_list("value", flat=True)) == 0
    assert tier_of(member) == "silver"


@pytest.mark.django_db
def test_downgrade_waits_for_the_hold_period_and_goes_to_the_retained_tier(member):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        purchase(member, "4990.00")  # 5000: gold, held until 2027-01-10
    with time_machine.travel(at(2026, 3, 1, 12), tick=False):
        purchase(member, "100.00")  # +110 inside the window that ends on 2027-01-10
    assert MemberTier.objects.get(member=member).hold_until == date(2027, 1, 10)
    assert evaluate_downgrades(as_of=date(2027, 1, 9)) == (0, 0)  # still held
    # On 2027-01-10 the window (2026-01-11 .. 2027-01-10) holds only the 110 of March: below silver's 800.
    assert evaluate_downgrades(as_of=date(2027, 1, 10)) == (1, 1)
    assert tier_of(member) == "regular"
    change = TierChange.objects.get(reason="downgrade")
    assert (change.from_tier.code, change.to_tier.code, change.growth_value, change.business_date) == (
        "gold",
        "regular",
        110,
        date(2027, 1, 10),
    )
    assert evaluate_downgrades(as_of=date(2027, 1, 10)) == (0, 0)  # the same date again: nothing
    assert TierChange.objects.filter(reason="downgrade").count() == 1


@pytest.mark.django_db
def test_downgrade_to_the_highest_tier_whose_retention_is_met(member):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        purchase(member, "19990.00")  # 20000: diamond
    with time_machine.travel(at(2026, 6, 1, 12), tick=False):
        purchase(member, "4500.00")  # 4510 in the window at the end of the hold: gold keeps 4000
    assert evaluate_downgrades(as_of=date(2027, 1, 10)) == (1, 1)
    assert tier_of(member) == "gold"
    assert MemberTier.objects.get(member=member).hold_until == date(2028, 1, 10)


@pytest.mark.django_db
def test_members_who_keep_their_tier_get_a_new_hold_period(member):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        purchase(member, "990.00")  # 1000: silver
    with time_machine.travel(at(2026, 12, 1, 12), tick=False):
        purchase(member, "790.00")  # 800 in the window: silver retained
    assert evaluate_downgrades(as_of=date(2027, 1, 10)) == (1, 0)
    assert tier_of(member) == "silver"
    assert MemberTier.objects.get(member=member).hold_until == date(2028, 1, 10)
    assert MemberTier.objects.get(member=member).window_growth == 800


@pytest.mark.django_db
def test_growth_older_than_the_window_stops_counting(member):
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        purchase(member, "990.00")
    assert window_growth(member.pk, at=at(2027, 1, 10, 23, 59), window_days=365) == 0
    assert window_growth(member.pk, at=at(2027, 1, 9, 23, 59), window_days=365) == 1000


@pytest.mark.django_db
def test_tier_multiplier_is_in_the_breakdown_and_the_points(member):
    with time_machine.travel(at(2026, 3, 1, 12), tick=False):
        purchase(member, "4990.00")  # gold: 1.5×
    with time_machine.travel(at(2026, 3, 2, 12), tick=False):  # a new day: the daily cap starts again
        result = purchase(member, "129.90")
    assert result["points"]["breakdown"] == [{"source": "base", "points": 129}, {"source": "tier:gold", "points": 64}]
    assert result["points"]["awarded"] == 193


@pytest.mark.django_db
def test_birthday_bonus_includes_the_tier_bonus(store_a):
    member = MemberFactory(home_store=store_a, birthday=date(1990, 5, 17))
    purchase(member, "990.00")  # silver: +20 birthday bonus, 1.2× on base
    with time_machine.travel(at(2026, 5, 2, 12), tick=False):
        assert points_services.award_birthday_points(member_id=member.pk, year=2026) == 50 + 10 + 20


@pytest.mark.django_db
def test_birthday_bonuses_in_bulk_include_each_members_own_tier_bonus(store_a, django_assert_max_num_queries):
    silver = MemberFactory(home_store=store_a, birthday=date(1990, 5, 17))
    purchase(silver, "990.00")  # silver: +20 birthday bonus, 1.2× on base
    regular = MemberFactory(home_store=store_a, birthday=date(1991, 5, 3))
    purchase(regular, "10.00")  # regular: no birthday bonus of its tier
    newcomer = MemberFactory(home_store=store_a, birthday=date(1992, 5, 9))  # no tier row: the entry tier
    ids = [silver.pk, regular.pk, newcomer.pk]
    with (
        time_machine.travel(at(2026, 5, 2, 12), tick=False),
        transaction.atomic(),
        django_assert_max_num_queries(14),  # the tiers read once, not per member
    ):
        awarded = points_services.award_birthdays(ids, year=2026, on=date(2026, 5, 2))
    assert awarded == {silver.pk: 50 + 10 + 20, regular.pk: 50, newcomer.pk: 50}


@pytest.mark.django_db
def test_a_silver_member_cannot_redeem_a_gold_only_reward(member, pos_a):
    purchase(member, "990.00")
    adjust(member, 500)
    reward = Reward.objects.create(
        code="lounge", name="Lounge", kind="coupon", cost_points=100, eligible_tiers=["gold", "diamond"]
    )
    with pytest.raises(NotEligible):
        redeem(member, reward)
    response = pos_a.post(
        "/api/v1/redemptions/",
        {"member": str(member.pk), "reward": str(reward.pk)},
        format="json",
        HTTP_IDEMPOTENCY_KEY="x",
    )
    assert (response.status_code, response.json()["code"]) == (409, "not_eligible")
    assert balances(member) == (500, 990)
    assert Tier.objects.get(code="gold").points_multiplier == Decimal("1.50")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_purchases_crossing_a_threshold_upgrade_once(default_ladder, store_a):
    member = MemberFactory(home_store=store_a)
    barrier, results = threading.Barrier(4), []

    def buy(index):
        try:
            barrier.wait()
            results.append(purchase(member, "300.00", order_no=f"C{index}"))  # 310 each, 1240 together
        finally:
            connection.close()

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert [r["tier_change"] for r in results if r["tier_change"]] == [
        {"from": "regular", "to": "silver", "reason": "upgrade"}
    ]
    assert TierChange.objects.filter(member=member).count() == 1
    assert tier_of(member) == "silver"


@pytest.mark.django_db
def test_a_refund_in_the_window_of_an_older_order_cannot_break_the_evaluation(member):
    with time_machine.travel(at(2025, 12, 1, 12), tick=False):
        order = purchase(member, "990.00")  # 1000: silver, held until 2026-12-01
    with time_machine.travel(at(2026, 12, 10, 12), tick=False):
        refund(order["id"], "990.00")  # -1000 inside the window, the order itself is outside it
    assert evaluate_downgrades(as_of=date(2026, 12, 10)) == (1, 1)
    change = TierChange.objects.get(reason="downgrade")
    assert (change.to_tier.code, change.growth_value) == ("regular", -1000)


@pytest.mark.django_db
def test_each_downgraded_member_gets_her_own_notice_from_her_chunk(store_a):
    from loyalty.models import Message

    down_first, kept, down_later = (MemberFactory(home_store=store_a) for _ in range(3))
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        purchase(down_first, "4990.00")  # 5000: gold
        purchase(kept, "990.00")  # 1000: silver
        purchase(down_later, "990.00")  # 1000: silver
    with time_machine.travel(at(2026, 12, 1, 12), tick=False):
        purchase(kept, "790.00")  # 800 in the window: silver retained
    # Chunks of two member ids: the first holds down_first and kept, the second down_later.
    assert evaluate_downgrades(as_of=date(2027, 1, 10), chunk_size=2) == (3, 2)
    changes = {c.member_id: c for c in TierChange.objects.filter(reason="downgrade")}
    assert sorted(changes) == [down_first.pk, down_later.pk]
    notices = Message.objects.filter(kind="tier_down")
    assert set(notices.values_list("member_id", "dedupe_key")) == {
        (down_first.pk, f"tier_change:{changes[down_first.pk].pk}"),
        (down_later.pk, f"tier_change:{changes[down_later.pk].pk}"),
    }
    # One per active channel each, none twice, none for the member who kept her tier.
    channels = set(notices.values_list("channel", flat=True))
    assert channels
    assert notices.count() == 2 * len(channels)
    assert not notices.filter(member=kept).exists()
