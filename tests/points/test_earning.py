"""Earning channels and rules: purchase rules, sign-in streaks, share caps, reviews, referrals, birthdays, the
daily cap, and versioned rules per store and date."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.errors import InvalidInput
from members.services import MemberFrozen, freeze_member
from points import services
from points.hooks import _earn_modifiers, register_earn_modifier
from points.models import EarningRule, Event, PointsPolicy, RuleChannel
from tests.factories import MemberFactory
from tests.points.helpers import balances, event, purchase

SHANGHAI = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def test_purchase_earns_one_point_per_yuan_rounded_down(member):
    assert purchase(member, "99.99")["points"]["awarded"] == 99
    small = purchase(member, "0.99")["points"]
    assert (small["awarded"], small["status"], small["breakdown"]) == (0, "none", [{"source": "base", "points": 0}])
    assert balances(member) == (0, 99)


def test_excluded_categories_and_minimum_amount(member, store_a):
    EarningRule.objects.filter(channel="purchase").update(is_active=False)
    EarningRule.objects.create(
        channel="purchase",
        name="2 per yuan, no tobacco",
        points_per_unit=Decimal("2"),
        min_amount=Decimal("50"),
        excluded_categories=["tobacco"],
        valid_from=at(2020, 1, 1),
    )
    lines = [
        {"sku": "A", "category": "food", "quantity": Decimal("1"), "unit_price": Decimal("60")},
        {"sku": "B", "category": "tobacco", "quantity": Decimal("2"), "unit_price": Decimal("20")},
    ]
    assert purchase(member, "100", lines=lines)["points"]["awarded"] == 120  # 60 eligible × 2
    assert purchase(member, "49.99")["points"]["awarded"] == 0


def test_a_stores_own_rule_beats_the_general_one(member, store_a, store_b):
    EarningRule.objects.create(
        channel="purchase", name="double at A", store=store_a, points_per_unit=Decimal("2"), valid_from=at(2020, 1, 1)
    )
    assert purchase(member, "10", store=store_a)["points"]["awarded"] == 20
    assert purchase(member, "10", store=store_b, source="store:B001")["points"]["awarded"] == 10


def test_rule_versions_apply_from_their_date(member):
    EarningRule.objects.create(
        channel="purchase", name="v2", points_per_unit=Decimal("3"), valid_from=at(2026, 6, 1), pending_days=0
    )
    with time_machine.travel(at(2026, 5, 31, 23, 59), tick=False):
        assert purchase(member, "10")["points"]["awarded"] == 10
    with time_machine.travel(at(2026, 6, 1, 0, 0), tick=False):
        result = purchase(member, "10")
    assert result["points"]["awarded"] == 30
    assert result["points"]["status"] == "available"


def test_sign_in_once_a_day_with_a_bonus_on_the_seventh_day_in_a_row(member):
    awarded = []
    for day in range(1, 9):
        with time_machine.travel(at(2026, 3, day, 8), tick=False):
            awarded.append(event(member, "sign_in")["points"]["awarded"])
    assert awarded == [5, 5, 5, 5, 5, 5, 25, 5]
    with time_machine.travel(at(2026, 3, 8, 23, 59), tick=False), pytest.raises(services.AlreadySignedIn):
        event(member, "sign_in")
    with time_machine.travel(at(2026, 3, 10, 8), tick=False):  # a day missed: the streak starts again
        assert event(member, "sign_in")["points"]["breakdown"] == [{"source": "base", "points": 5}]
    assert balances(member) == (65, 0)  # 6×5 + (5+20) + 5 + 5


def test_sign_in_days_are_business_days(member):
    with time_machine.travel(datetime(2026, 3, 1, 15, 59, tzinfo=ZoneInfo("UTC")), tick=False):
        event(member, "sign_in")  # 23:59 in Shanghai on 1 March
    with time_machine.travel(datetime(2026, 3, 1, 16, 0, tzinfo=ZoneInfo("UTC")), tick=False):
        assert event(member, "sign_in")["points"]["awarded"] == 5  # already 2 March in Shanghai


def test_share_is_capped_at_three_a_day(member):
    with time_machine.travel(at(2026, 3, 1, 9), tick=False):
        results = [event(member, "share") for _ in range(4)]
    assert [r["points"]["awarded"] for r in results] == [2, 2, 2, 0]
    assert [r["capped"] for r in results] == [False, False, False, True]
    with time_machine.travel(at(2026, 3, 2, 9), tick=False):
        assert event(member, "share")["points"]["awarded"] == 2


def test_review_earns_once_per_own_order(member, store_a):
    other = MemberFactory(home_store=store_a)
    purchase(member, "10", order_no="MINE")
    purchase(other, "10", order_no="THEIRS")
    assert event(member, "review", order_no="MINE")["points"]["awarded"] == 10
    with pytest.raises(services.AlreadyReviewed):
        event(member, "review", order_no="MINE")
    with pytest.raises(services.OrderNotEligible):
        event(member, "review", order_no="THEIRS")
    with pytest.raises(services.OrderNotEligible):
        event(member, "review", order_no="NOPE")


@pytest.mark.parametrize("referrer_joined", ["before", "after"])  # the lower id's account is locked first
def test_referrer_earns_on_the_referees_first_purchase_only(store_a, referrer_joined):
    if referrer_joined == "before":
        referrer = MemberFactory(home_store=store_a)
        referee = MemberFactory(home_store=store_a, referrer=referrer)
    else:  # the referee has the lower id (an imported member, say): her account comes first in the lock order
        referee = MemberFactory(home_store=store_a)
        referrer = MemberFactory(home_store=store_a)
        referee.referrer = referrer
        referee.save(update_fields=["referrer"])
    assert purchase(referee, "10")["points"]["awarded"] == 10
    purchase(referee, "10")
    assert balances(referrer) == (100, 0)
    assert balances(referee) == (0, 20)
    assert Event.objects.filter(type="referral", member=referrer, referee=referee).count() == 1


def test_birthday_bonus_once_a_year_in_the_birthday_month(store_a):
    from datetime import date

    member = MemberFactory(home_store=store_a, birthday=date(1990, 5, 17))
    with time_machine.travel(at(2026, 4, 30, 12), tick=False):
        assert services.award_birthday_points(member_id=member.pk, year=2026) == 0
    with time_machine.travel(at(2026, 5, 2, 12), tick=False):
        assert services.award_birthday_points(member_id=member.pk, year=2026) == 50
        assert services.award_birthday_points(member_id=member.pk, year=2026) == 0
    assert balances(member) == (50, 0)


def test_daily_cap_over_all_channels_cuts_and_reports_capped(member):
    PointsPolicy.objects.create(valid_from=at(2020, 1, 2), daily_cap=100)
    with time_machine.travel(at(2026, 3, 1, 9), tick=False):
        first = purchase(member, "90")
        second = purchase(member, "30")
        share = event(member, "share")
    assert first["points"]["awarded"] == 90
    assert second["points"]["awarded"] == 10
    assert second["points"]["breakdown"] == [{"source": "base", "points": 30}, {"source": "daily_cap", "points": -20}]
    assert (share["points"]["awarded"], share["capped"]) == (0, True)
    with time_machine.travel(at(2026, 3, 2, 9), tick=False):
        assert purchase(member, "30")["points"]["awarded"] == 30


def test_frozen_member_earns_nothing(member):
    freeze_member(actor="test", member=member, reason="fraud", role="admin")
    with pytest.raises(MemberFrozen):
        purchase(member, "10")
    assert balances(member) == (0, 0)


def test_earn_modifiers_plug_into_the_breakdown(member):
    def double_days(context):
        return [{"source": "campaign:double", "points": context.base_points}] if context.channel == "purchase" else []

    register_earn_modifier(double_days)
    try:
        result = purchase(member, "129.90")
    finally:
        _earn_modifiers.unregister(double_days)
    assert result["points"]["awarded"] == 258
    assert result["points"]["breakdown"] == [
        {"source": "base", "points": 129},
        {"source": "campaign:double", "points": 129},
    ]


def test_custom_event_types_earn_by_their_rule(member):
    with pytest.raises(InvalidInput):
        event(member, "checkin-at-expo")
    EarningRule.objects.create(
        channel=RuleChannel.CUSTOM,
        event_type="checkin-at-expo",
        name="Expo",
        points=30,
        daily_limit=1,
        valid_from=at(2020, 1, 1),
    )
    assert event(member, "checkin-at-expo")["points"]["awarded"] == 30
    assert event(member, "checkin-at-expo")["capped"] is True


def test_preview_writes_nothing(member):
    result = services.preview_purchase(member=member, amount=Decimal("129.90"))
    assert result == {
        "points": {
            "awarded": 129,
            "status": "pending",
            "available_at": result["points"]["available_at"],
            "breakdown": [{"source": "base", "points": 129}],
        },
        "growth_awarded": 139,
    }
    assert balances(member) == (0, 0)
    assert (
        timedelta(days=6, hours=23)
        < (datetime.fromisoformat(result["points"]["available_at"]) - datetime.now(SHANGHAI))
        <= timedelta(days=7)
    )


def test_earning_rule_versions_keep_their_terms_through_the_api(marketer_api):
    from loyalty.models import AuditEntry

    created = marketer_api.post(
        "/api/v1/earning-rules/",
        {
            "channel": "purchase",
            "name": "Double",
            "points_per_unit": "2.00",
            "valid_from": "2026-07-01T00:00:00+08:00",
        },
        format="json",
    )
    assert created.status_code == 201
    rule_url = f"/api/v1/earning-rules/{created.json()['id']}/"
    refused = marketer_api.patch(rule_url, {"points_per_unit": "5.00"}, format="json")
    assert (refused.status_code, list(refused.json()["errors"])) == (400, ["points_per_unit"])
    closed = marketer_api.patch(rule_url, {"valid_until": "2026-08-01T00:00:00+08:00"}, format="json")
    assert closed.status_code == 200
    assert EarningRule.objects.get(pk=created.json()["id"]).points_per_unit == Decimal("2.00")
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["points.earning_rule.added", "points.earning_rule.changed"]
