"""ledger.earn_many (the reminders job's birthday bonuses, in bulk) writes exactly what earn() one by one writes:
the same entries, lots, lot movements (a member in debt pays it first), account balances and points.earned events,
in the same id order, for any mix of members (fresh, with a balance, in debt, the same member twice) and earnings
(available now or pending, with or without a store, channel, breakdown)."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.models import OutboxEvent, WebhookSubscription
from points.models import EntryKind, LedgerEntry, LotMovement, PointsAccount, PointsLot
from points.services.ledger import (
    Earning,
    earn,
    earn_many,
    lock_accounts,
    save_account,
    save_accounts,
    spend,
)
from tests.factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 6, 10, 12, 0, tzinfo=SHANGHAI)
STATES = ["fresh", "balance", "debt"]
EARNING = st.fixed_dictionaries(
    {
        "member": st.integers(min_value=0, max_value=4),
        "points": st.integers(min_value=1, max_value=500),
        "pending_days": st.sampled_from([0, 0, 7]),
        "with_store": st.booleans(),
        "channel": st.sampled_from([None, "birthday", "purchase"]),
        "reason": st.sampled_from(["", "birthday", "x" * 250]),
        "breakdown": st.sampled_from([None, [{"source": "base", "points": 1}]]),
    }
)


def prepare(state):
    """A member in `state`: fresh (no account yet), a balance of 100, or in debt by 30 (earned 50, spent 80)."""
    member = MemberFactory()
    if state != "fresh":
        account = lock_accounts([member.pk])[member.pk]
        earn(account, points=50 if state == "debt" else 100, actor="t", available_at=NOW, expires_at=None, now=NOW)
        if state == "debt":
            spend(account, points=80, kind=EntryKind.REDEEM, actor="t", allow_negative=True, now=NOW)
        save_account(account)
    return member


def snapshot(members):
    """What the ledger holds for these members, with ids replaced by positions (member, entry, lot)."""
    index = {member.pk: position for position, member in enumerate(members)}
    entries = list(LedgerEntry.objects.filter(member_id__in=index).order_by("id"))
    entry_no = {entry.pk: number for number, entry in enumerate(entries)}
    lots = list(PointsLot.objects.filter(member_id__in=index).order_by("id"))
    lot_no = {lot.pk: number for number, lot in enumerate(lots)}
    skip = {"id", "member", "created_at"}
    fields = [f.attname for f in LedgerEntry._meta.concrete_fields if f.name not in skip]
    lot_fields = [f.attname for f in PointsLot._meta.concrete_fields if f.name not in {"id", "member", "entry"}]
    account_fields = [f.attname for f in PointsAccount._meta.concrete_fields if f.name not in {"member", "updated_at"}]
    events = OutboxEvent.objects.filter(member_id__in=index, type="points.earned").order_by("id")
    return {
        "entries": [(index[e.member_id], e.created_at == NOW, *[getattr(e, f) for f in fields]) for e in entries],
        "lots": [
            (index[lot.member_id], entry_no[lot.entry_id], *[getattr(lot, f) for f in lot_fields]) for lot in lots
        ],
        "movements": sorted(
            (entry_no[m.entry_id], lot_no[m.lot_id], m.points)
            for m in LotMovement.objects.filter(entry_id__in=entry_no)
        ),
        "accounts": [
            [getattr(account, f) for f in account_fields]
            for account in sorted(PointsAccount.objects.filter(member_id__in=index), key=lambda a: index[a.member_id])
        ],
        "events": [
            (
                index[event.member_id],
                {**event.data, "member": index[int(event.data["member"])], "entry": entry_no[int(event.data["entry"])]},
            )
            for event in events
        ],
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(states=st.lists(st.sampled_from(STATES), min_size=5, max_size=5), earnings=st.lists(EARNING, max_size=8))
def test_earn_many_writes_what_earn_writes_one_by_one(states, earnings):
    WebhookSubscription.objects.get_or_create(url="http://127.0.0.1:9/", events=["points.earned"], secret="s" * 20)
    store = StoreFactory()
    one_by_one = [prepare(state) for state in states]
    in_bulk = [prepare(state) for state in states]

    def earning_for(accounts, members, spec):
        return Earning(
            accounts[members[spec["member"]].pk],
            spec["points"],
            available_at=NOW + timedelta(days=spec["pending_days"]),
            expires_at=NOW + timedelta(days=365),
            reason=spec["reason"],
            reference=f"ref-{spec['member']}",
            breakdown=spec["breakdown"],
            store_id=store.pk if spec["with_store"] else None,
            channel=spec["channel"],
        )

    with transaction.atomic():
        accounts = lock_accounts([member.pk for member in one_by_one])
        for spec in earnings:
            item = earning_for(accounts, one_by_one, spec)
            earn(
                item.account,
                points=item.points,
                actor="job:test",
                available_at=item.available_at,
                expires_at=item.expires_at,
                reason=item.reason,
                reference=item.reference,
                breakdown=item.breakdown,
                now=NOW,
                store_id=item.store_id,
                channel=item.channel,
            )
        for account in accounts.values():
            save_account(account)
    with transaction.atomic():
        accounts = lock_accounts([member.pk for member in in_bulk])
        written = earn_many([earning_for(accounts, in_bulk, spec) for spec in earnings], actor="job:test", now=NOW)
        save_accounts(accounts.values())
    assert len(written) == len(earnings)
    assert all(entry.pk and lot.pk and lot.entry_id == entry.pk for entry, lot in written)
    assert snapshot(in_bulk) == snapshot(one_by_one)
