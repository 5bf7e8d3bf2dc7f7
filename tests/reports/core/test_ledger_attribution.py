"""Ledger entries say where they happened: a purchase's earn and points used as cash carry the order's store and
channel, its refund's reverse and returned points the same, a redemption and its cancellation the redemption's
store, an engagement event, a referral, a birthday or a campaign trigger its channel; adjustments, releases and
expiry carry neither (NULL: unattributed in reports)."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty.scheduling import run_inline
from points import services
from points.hooks import _earn_modifiers, register_earn_modifier
from points.models import EntryKind, LedgerEntry, Reward
from tests.factories import MemberFactory
from tests.points.helpers import adjust, event, purchase, refund

SHANGHAI = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


def attribution(member, kind):
    return list(
        LedgerEntry.objects.filter(member=member, kind=kind).order_by("id").values_list("store__code", "channel")
    )


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


def test_a_purchase_its_refund_and_points_used_as_cash_carry_the_orders_store_and_channel(member, store_b):
    adjust(member, 1000)
    order = purchase(member, "100.00", store=store_b, channel="online", points_used=1000)
    refund(order["id"], "50.00")

    assert attribution(member, EntryKind.DEDUCT) == [("B001", "online")]
    assert attribution(member, EntryKind.EARN) == [("B001", "online")]
    assert attribution(member, EntryKind.REVERSE) == [("B001", "online")]
    assert attribution(member, EntryKind.CANCEL) == [("B001", "online")]  # half the points used, returned
    assert attribution(member, EntryKind.ADJUST) == [(None, None)]


def test_a_purchase_without_a_store_carries_its_channel_only(member):
    purchase(member, "10.00")
    assert attribution(member, EntryKind.EARN) == [(None, "offline")]


def test_points_deducted_for_a_recorded_order_carry_its_store_and_channel(member, store_b):
    order = purchase(member, "100.00", store=store_b, channel="online", order_no="D1")
    adjust(member, 600)
    services.deduct_points(
        actor="test",
        scope="test",
        key="d1",
        fingerprint="d1",
        member_id=member.pk,
        source="store:A001",
        order_no=order["order_no"],
        points=500,
    )
    services.deduct_points(
        actor="test",
        scope="test",
        key="d2",
        fingerprint="d2",
        member_id=member.pk,
        source="store:A001",
        order_no="NOT-YET-RECORDED",
        points=100,
        order_amount=Decimal("10.00"),
    )
    assert attribution(member, EntryKind.DEDUCT) == [("B001", "online"), (None, None)]


def test_a_redemption_and_its_cancellation_carry_the_redemptions_store(member, store_b):
    adjust(member, 300)
    reward = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100)
    redeemed = services.redeem_reward(
        actor="test",
        scope="test",
        key="r1",
        fingerprint="r1",
        member_id=member.pk,
        reward_id=reward.pk,
        store=store_b,
    ).result
    services.redeem_reward(
        actor="test", scope="test", key="r2", fingerprint="r2", member_id=member.pk, reward_id=reward.pk
    )
    services.cancel_redemption(actor="test", redemption_id=int(redeemed["id"]))

    assert attribution(member, EntryKind.REDEEM) == [("B001", None), (None, None)]
    assert attribution(member, EntryKind.CANCEL) == [("B001", None)]


def test_events_referrals_birthdays_and_triggers_carry_their_channel(store_a):
    referrer = MemberFactory(home_store=store_a)
    member = MemberFactory(home_store=store_a, referrer=referrer, birthday=date(1990, 5, 3))
    with time_machine.travel(datetime(2026, 5, 10, 12, tzinfo=SHANGHAI), tick=False):
        event(member, "sign_in")
        event(member, "share")
        purchase(member, "20.00", store=store_a)
        services.award_birthday_points(member_id=member.pk, year=2026)

        def welcome(context):
            return [{"source": "campaign:1", "points": 7}] if context.channel == "registration" else []

        register_earn_modifier(welcome)
        try:
            services.award_trigger(member_id=member.pk, trigger="registration", reference="registration", actor="t")
        finally:
            _earn_modifiers.unregister(welcome)

    channels = list(LedgerEntry.objects.filter(member=member).order_by("id").values_list("kind", "store_id", "channel"))
    assert channels == [
        ("earn", None, "sign_in"),
        ("earn", None, "share"),
        ("earn", store_a.pk, "offline"),
        ("earn", None, "birthday"),
        ("earn", None, "registration"),
    ]
    assert attribution(referrer, EntryKind.EARN) == [(None, "referral")]


def test_releases_and_expiry_are_unattributed(member, store_b):
    with time_machine.travel(datetime(2025, 1, 10, 12, tzinfo=SHANGHAI), tick=False):
        purchase(member, "30.00", store=store_b)
    with time_machine.travel(datetime(2026, 3, 1, 12, tzinfo=SHANGHAI), tick=False):
        run_inline("release_pending", date(2026, 3, 1))
        run_inline("expire_points", date(2026, 2, 28))
    assert attribution(member, EntryKind.RELEASE) == [(None, None)]
    assert attribution(member, EntryKind.EXPIRE) == [(None, None)]


def test_attribution_costs_a_purchase_no_query(member, store_b):
    """The store and channel come from the purchase already in hand: no store is read, one entry is written."""
    purchase(member, "5.00", store=store_b)  # warm the rule and policy caches
    with CaptureQueriesContext(connection) as captured:
        purchase(member, "10.00", store=store_b, channel="online")
    statements = [query["sql"] for query in captured.captured_queries]
    assert not [sql for sql in statements if "members_store" in sql]
    # One statement writes the entry: an INSERT, or on PostgreSQL the data-modifying CTE that writes its lot too.
    assert len([sql for sql in statements if 'INSERT INTO "points_ledgerentry"' in sql]) == 1
    assert attribution(member, EntryKind.EARN) == [("B001", "offline"), ("B001", "online")]
