"""The segment_moves job: members who moved between RFM segments or lifecycle stages in the night's run get the
segment_move campaigns' bonus, once per run date, chunked by member id range."""

from datetime import date, timedelta

import pytest

from campaigns.models import CampaignAward
from loyalty.clock import business_date
from loyalty.scheduling import run_inline
from members.models import RfmSnapshot
from points.models import LedgerEntry
from tests.campaigns.helpers import running_campaign
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


def _snapshot(member, as_of, segment, lifecycle="active"):
    RfmSnapshot.objects.create(member=member, as_of=as_of, segment=segment, lifecycle=lifecycle)


def test_a_move_named_by_a_campaign_earns_its_bonus_once(store_a):
    as_of = business_date() - timedelta(days=1)
    before = as_of - timedelta(days=1)
    moved, stayed, other_move, lapsed = MemberFactory.create_batch(4, home_store=store_a)
    for member, old, new in (
        (moved, "important_value", "important_retain"),
        (stayed, "important_value", "important_value"),
        (other_move, "general_value", "important_retain"),
    ):
        _snapshot(member, before, old)
        _snapshot(member, as_of, new)
    _snapshot(lapsed, before, "inactive", "active")
    _snapshot(lapsed, as_of, "inactive", "dormant")
    retain = running_campaign(
        kind="segment_move",
        bonus_points=120,
        trigger={"from_segment": "important_value", "to_segment": "important_retain"},
    )
    dormant = running_campaign(kind="segment_move", bonus_points=40, trigger={"to_lifecycle": "dormant"})
    run = run_inline("segment_moves", as_of)
    assert run.status == "done"
    assert sorted(CampaignAward.objects.values_list("campaign_id", "member_id", "points", "reference")) == sorted(
        [
            (retain.pk, moved.pk, 120, f"segment_move:{as_of}"),
            (dormant.pk, lapsed.pk, 40, f"segment_move:{as_of}"),
        ]
    )
    entries = LedgerEntry.objects.filter(reason="segment_move").order_by("member_id")
    assert list(entries.values_list("member_id", "points")) == [(moved.pk, 120), (lapsed.pk, 40)]
    run_inline("segment_moves", as_of, force=True)
    assert CampaignAward.objects.count() == 2


def test_no_running_campaign_no_chunks(store_a):
    member = MemberFactory(home_store=store_a)
    _snapshot(member, date(2026, 1, 1), "important_value")
    _snapshot(member, date(2026, 1, 2), "important_retain")
    run = run_inline("segment_moves", date(2026, 1, 2))
    assert (run.status, run.chunks_total) == ("done", 0)


def test_a_segment_move_campaign_may_tell_the_members_who_moved(store_a):
    from loyalty.models import Message

    as_of = business_date() - timedelta(days=1)
    moved, stayed = MemberFactory.create_batch(2, home_store=store_a)
    for member, new in ((moved, "important_retain"), (stayed, "important_value")):
        _snapshot(member, as_of - timedelta(days=1), "important_value")
        _snapshot(member, as_of, new)
    told = running_campaign(
        name="We miss you",
        kind="segment_move",
        trigger={"from_segment": "important_value", "to_segment": "important_retain", "message": True},
    )
    run = run_inline("segment_moves", as_of)
    assert run.counts["messaged"] == 1
    assert CampaignAward.objects.count() == 0  # a message, no points
    messages = Message.objects.filter(kind="campaign_launch")
    assert {message.member_id for message in messages} == {moved.pk}
    assert all(told.name in message.body for message in messages if message.channel == "inbox")
    assert messages.filter(channel="inbox").count() == 1
    run_inline("segment_moves", as_of, force=True)
    assert Message.objects.filter(kind="campaign_launch", channel="inbox").count() == 1
