"""The outbox: every service writes its event in its own transaction (a change rolled back emits nothing), nothing
is written when no subscription wants the type, and a purchase pays one INSERT for it, no SELECT."""

import re
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import Max
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import services as campaign_services
from loyalty import events, webhooks
from loyalty.models import OutboxEvent, WebhookDelivery
from members.models import Member, Purchase
from members.services import freeze_member, merge_members, register_member, update_member
from points import services as points_services
from points.models import LedgerEntry, PointsLot, Reward
from tests.campaigns.helpers import running_campaign
from tests.factories import MemberFactory
from tests.points.helpers import adjust, purchase, redeem
from tiers.jobs import evaluate_downgrades
from tiers.models import TierChange

STORES_THE_ANSWER = re.compile(r'UPDATE "?points_idempotencyrecord"? SET')

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


def emitted(event_type=None):
    rows = OutboxEvent.objects.order_by("id")
    if event_type:
        rows = rows.filter(type=event_type)
    return [(row.type, row.member_id, row.data) for row in rows]


@pytest.mark.django_db
def test_nothing_is_written_when_no_subscription_wants_the_type(member, subscribe, receiver):
    purchase(member, "10.00")  # no subscription at all
    subscribe(receiver.url(), events=["member.*"])
    purchase(member, "20.00")  # subscribed, but not to points
    webhooks.change_subscription(
        actor="test", subscription_id=webhooks.WebhookSubscription.objects.get().pk, changes={"is_active": False}
    )
    update_member(actor="test", member=member, changes={"name": "Li Lei"})  # inactive: nothing
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_points_earned_holds_member_points_and_reference(member, subscribe, receiver):
    subscribe(receiver.url(), events=["points.*"])
    with time_machine.travel(at(2026, 3, 1, 10), tick=False):
        result = purchase(member, "128.50", order_no="A1001")
    entry = LedgerEntry.objects.get(reference="A1001")
    lot = PointsLot.objects.get(entry=entry)
    [(event_type, member_id, data)] = emitted()
    assert (event_type, member_id) == ("points.earned", member.pk)
    assert data == {
        "member": str(member.pk),
        "points": 128,
        "reference": "A1001",
        "reason": "purchase",
        "entry": str(entry.pk),
        "status": "pending",
        "available_at": timezone.localtime(lot.available_at).isoformat(),
        "expires_at": timezone.localtime(lot.expires_at).isoformat(),
        "breakdown": result["points"]["breakdown"],
    }


@pytest.mark.django_db
def test_each_service_emits_its_event(member, subscribe, receiver, store_a):
    subscribe(receiver.url(), events=["*"])
    newcomer = register_member(actor="test", phone="+8613700137000", store=store_a, channel="store")
    update_member(actor="test", member=newcomer, changes={"name": "Han Meimei"}, consents={"sms": True})
    freeze_member(actor="test", member=newcomer, reason="lost card", role="admin")
    adjust(member, 300)
    reward = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=5)
    redemption = redeem(member, reward)
    points_services.cancel_redemption(actor="test", redemption_id=int(redemption["id"]))
    adjust(member, -50)
    assert [(t, m) for t, m, _ in emitted()] == [
        ("member.created", newcomer.pk),
        ("member.updated", newcomer.pk),
        ("member.updated", newcomer.pk),
        ("points.adjusted", member.pk),
        ("redemption.created", member.pk),
        ("redemption.cancelled", member.pk),
        ("points.adjusted", member.pk),
    ]
    created, renamed, frozen, added, redeemed, cancelled, taken = (data for _, _, data in emitted())
    assert created == {
        "member": str(newcomer.pk),
        "member_no": newcomer.member_no,
        "status": "active",
        "channel": "store",
        "store": "A001",
        "referrer": None,
        "joined_at": timezone.localtime(newcomer.joined_at).isoformat(),
    }
    assert "+8613700137000" not in str(emitted())  # no personal data in the events
    assert renamed["changed"] == ["consent_sms", "name"] and "Han" not in str(renamed)
    assert (frozen["changed"], frozen["status"]) == (["status"], "frozen")
    assert (added["points"], added["balance"], added["reference"]) == (300, 300, "adjustment")
    assert (redeemed["redemption"], redeemed["points"], redeemed["balance"]) == (redemption["id"], 100, 200)
    assert redeemed["reward"]["code"] == "mug" and "code" not in redeemed
    assert (cancelled["status"], cancelled["balance"]) == ("cancelled", 300)
    assert (taken["points"], taken["balance"]) == (-50, 250)


@pytest.mark.django_db
def test_a_merge_emits_member_merged_on_the_survivor(subscribe, receiver, store_a):
    survivor, duplicate = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a, name="Dup")
    subscribe(receiver.url(), events=["member.merged"])
    outcome = merge_members(actor="test", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason="same person")
    [(event_type, member_id, data)] = emitted()
    assert (event_type, member_id) == ("member.merged", survivor.pk)
    assert data["duplicate"] == str(duplicate.pk)
    assert data["merge"] == outcome.result["id"]
    assert data["member_no"] == survivor.member_no


@pytest.mark.django_db
def test_campaign_status_changes_emit_campaign_events(subscribe, receiver):
    subscribe(receiver.url(), events=["campaign.*"])
    campaign = running_campaign(name="Double", multiplier=Decimal("2"))
    campaign_services.pause_campaign(actor="test", campaign_id=campaign.pk)
    campaign_services.end_campaign(actor="test", campaign_id=campaign.pk)
    assert [(t, m, d["campaign"], d["status"]) for t, m, d in emitted()] == [
        ("campaign.activated", None, str(campaign.pk), "active"),
        ("campaign.paused", None, str(campaign.pk), "paused"),
        ("campaign.ended", None, str(campaign.pk), "ended"),
    ]


@pytest.mark.django_db
def test_a_tier_upgrade_and_the_nightly_downgrade_emit_tier_changed(member, subscribe, receiver):
    """The downgrade is set-based SQL on PostgreSQL (the event written by the same statement) and member by member
    elsewhere: the same events either way."""
    subscribe(receiver.url(), events=["tier.changed"])
    with time_machine.travel(at(2026, 1, 10, 12), tick=False):
        purchase(member, "4990.00")  # 5000 growth: gold at once
    with time_machine.travel(at(2026, 3, 1, 12), tick=False):
        purchase(member, "100.00")
    assert evaluate_downgrades(as_of=date(2027, 1, 10)) == (1, 1)
    upgrade, downgrade = TierChange.objects.order_by("id")
    assert emitted() == [
        (
            "tier.changed",
            member.pk,
            {
                "member": str(member.pk),
                "from": "regular",
                "to": "gold",
                "reason": "upgrade",
                "growth_value": 5000,
                "business_date": "2026-01-10",
                "change": str(upgrade.pk),
            },
        ),
        (
            "tier.changed",
            member.pk,
            {
                "member": str(member.pk),
                "from": "gold",
                "to": "regular",
                "reason": "downgrade",
                "growth_value": 110,
                "business_date": "2027-01-10",
                "change": str(downgrade.pk),
            },
        ),
    ]


@pytest.mark.django_db
def test_the_nightly_expiry_emits_one_points_expired_per_member(subscribe, receiver, store_a):
    """Set-based on PostgreSQL (one INSERT ... SELECT in the expiry statement), member by member elsewhere: the same
    events either way."""
    members = [MemberFactory(home_store=store_a) for _ in range(3)]
    with time_machine.travel(at(2024, 3, 1, 12), tick=False):
        for index, someone in enumerate(members):
            adjust(someone, 100 * (index + 1))
    as_of = timezone.localdate(PointsLot.objects.aggregate(last=Max("expires_at"))["last"])
    adjust(members[0], 7)  # earned now: does not expire
    subscribe(receiver.url(), events=["points.expired"])

    counts = points_services.expire_points(as_of=as_of)

    assert (counts.members, counts.points) == (3, 600)
    expected = []
    for entry in LedgerEntry.objects.filter(kind="expire").order_by("member_id"):
        expected.append(
            (
                "points.expired",
                entry.member_id,
                {
                    "member": str(entry.member_id),
                    "points": -entry.points,
                    "reference": f"expiry:{as_of.isoformat()}",
                    "entry": str(entry.pk),
                    "date": as_of.isoformat(),
                    "balance": entry.balance_after,
                },
            )
        )
    assert sorted(emitted(), key=lambda row: row[1]) == expected
    assert [(m, d["points"], d["balance"]) for _, m, d in expected] == [
        (members[0].pk, 100, 7),
        (members[1].pk, 200, 0),
        (members[2].pk, 300, 0),
    ]
    points_services.expire_points(as_of=as_of)  # again: nothing expires, nothing is emitted
    assert len(emitted()) == 3


@pytest.mark.django_db(transaction=True)
def test_a_change_rolled_back_emits_nothing(member, subscribe, receiver):
    subscribe(receiver.url(), events=["*"])
    failed = []

    def fail_at_the_end(execute, sql, params, many, context):
        # The purchase's last statement, on every path: its answer stored for retries (the portable path's UPDATE
        # of the idempotency record; on PostgreSQL one statement with the balances, whose CTE updates it).
        if STORES_THE_ANSWER.search(sql):
            assert OutboxEvent.objects.filter(type="points.earned").count() == 1  # written, inside the transaction
            failed.append(sql)
            raise RuntimeError("the till crashed before the end")
        return execute(sql, params, many, context)

    with pytest.raises(RuntimeError), connection.execute_wrapper(fail_at_the_end):
        purchase(member, "50.00", order_no="LOST")
    assert len(failed) == 1
    with pytest.raises(points_services.InsufficientPoints):  # refused by the service: nothing either
        redeem(member, Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=5))

    webhooks.deliver_everything_due()
    assert not Purchase.objects.filter(order_no="LOST").exists()
    assert OutboxEvent.objects.count() == WebhookDelivery.objects.count() == 0
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_an_event_outside_a_transaction_or_of_an_unknown_type_is_refused(subscribe, receiver):
    subscribe(receiver.url(), events=["*"])
    with pytest.raises(RuntimeError, match="inside the transaction"):
        events.emit("points.earned", {"member": "1"}, member_id=1)
    with pytest.raises(ValueError, match="unknown event type"), transaction.atomic():
        events.emit("points.stolen", {})
    assert OutboxEvent.objects.count() == 0


def _purchase_queries(member, order_no):
    with CaptureQueriesContext(connection) as captured:
        purchase(member, "100.00", order_no=order_no)
    return [query["sql"] for query in captured.captured_queries]


@pytest.mark.django_db
def test_the_outbox_costs_a_purchase_one_insert_and_no_select(member, subscribe, receiver):
    subscription = subscribe(receiver.url(), events=["member.created"])
    purchase(member, "100.00", order_no="WARM-1")  # caches warm (rules, policy, subscriptions)
    without = _purchase_queries(member, "P1")

    webhooks.change_subscription(
        actor="test", subscription_id=subscription.pk, changes={"events": ["member.created", "points.earned"]}
    )
    purchase(member, "100.00", order_no="WARM-2")  # the subscriptions' event types are read again, once
    with_event = _purchase_queries(member, "P2")

    extra = [sql for sql in with_event if "loyalty_outboxevent" in sql]
    assert len(extra) == 1 and extra[0].startswith('INSERT INTO "loyalty_outboxevent"')
    selects = [[sql for sql in queries if sql.startswith("SELECT")] for queries in (without, with_event)]
    assert len(selects[0]) == len(selects[1])
    if connection.vendor == "postgresql":
        # The event names the earn's entry, so with it wanted the entry and lot are written at once, one statement
        # of their own, instead of riding in the purchase's last round trip (batch.deferring): one more statement.
        alone = [
            [sql for sql in queries if sql.startswith('WITH parent AS (INSERT INTO "points_ledgerentry"')]
            for queries in (without, with_event)
        ]
        assert [len(found) for found in alone] == [0, 1]
        assert len(with_event) == len(without) + 2
    else:
        assert len(with_event) == len(without) + 1
    assert not [sql for sql in without + with_event if "loyalty_webhooksubscription" in sql]
    assert emitted("points.earned")[-1][2]["reference"] == "P2"


@pytest.mark.django_db
def test_a_new_subscription_is_seen_at_once_in_this_process(member, subscribe, receiver):
    """The wanted types are cached per process; a change in this process clears the cache (other processes: within
    CONFIG_CACHE_SECONDS)."""
    purchase(member, "10.00")
    assert not events.wanted("points.earned")
    subscribe(receiver.url(), events=["points.earned"])
    assert events.wanted("points.earned") and not events.wanted("points.expired")
    purchase(member, "10.00")
    assert len(emitted("points.earned")) == 1
    assert Member.objects.count() == 1
