"""The points summary on PostgreSQL is one statement (points.selectors._summary_in_one_statement); with
loyalty.batch.FAST_PATH off, and on SQLite, it is the two or three separate reads. Both must give the same summary,
member by member, over lots in every state: several on one day (summed), more days than are shown, spent to zero,
already expired, without an expiry date, debts, pending, merged; no account at all; and the same 404s for a member
the caller may not see or that does not exist."""

import random
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.http import Http404
from django.utils import timezone

from loyalty import batch
from points import selectors
from points.models import LedgerEntry, LotStatus, PointsAccount, PointsLot
from tests.factories import MemberFactory, StoreFactory
from tests.points.helpers import adjust

pytestmark = [pytest.mark.django_db, pytest.mark.tampers_ledger]  # lots written directly, to cover every state

EVERYONE = SimpleNamespace(store_ids=None)


def summary_both_ways(monkeypatch, member_id, visible_to):
    """(the separate reads' summary or Http404, the one statement's), the same call each way."""
    answers = []
    for fast in (False, True):
        monkeypatch.setattr(batch, "FAST_PATH", fast)
        try:
            answers.append(selectors.points_summary(member_id, visible_to=visible_to))
        except Http404:
            answers.append(Http404)
    return answers


def add_lots(member, entry, rng, now):
    lots = []
    days = [now + timedelta(days=rng.randint(-30, 400), hours=rng.randint(0, 23)) for _ in range(rng.randint(0, 9))]
    for _ in range(rng.randint(0, 14)):
        status = rng.choice([LotStatus.AVAILABLE] * 4 + [LotStatus.PENDING, LotStatus.EXPIRED, LotStatus.MERGED])
        points = rng.randint(1, 500)
        remaining = rng.choice([0, points, rng.randint(0, points)])
        expires_at = rng.choice([*days, None]) if days else None
        if rng.random() < 0.1:
            status, points, remaining = LotStatus.DEBT, -points, -remaining
        lots.append(
            PointsLot(
                member=member,
                entry=entry,
                status=status,
                points=points,
                remaining=remaining,
                earned_at=now - timedelta(days=400),
                available_at=now - timedelta(days=1),
                expires_at=expires_at,
                pending_until=now - timedelta(days=1) if status == LotStatus.PENDING else None,
            )
        )
    PointsLot.objects.bulk_create(lots)


def test_one_statement_and_the_separate_reads_give_the_same_summaries(monkeypatch):
    rng = random.Random(14)
    now = timezone.now()
    stores = [StoreFactory(), StoreFactory()]
    members = [MemberFactory(home_store=stores[i % 2]) for i in range(24)]
    for member in members[:20]:  # the last four: no account, no lots
        adjust(member, rng.randint(1, 900))  # an account with balances, one lot, the entry the lots below name
        entry = LedgerEntry.objects.filter(member=member).latest("id")
        add_lots(member, entry, rng, now)
        PointsAccount.objects.filter(member=member).update(
            pending=rng.randint(0, 50), lifetime_spent=rng.randint(0, 50), lifetime_expired=rng.randint(0, 50)
        )
    shown = set()
    accesses = [None, EVERYONE, SimpleNamespace(store_ids={stores[0].pk}), SimpleNamespace(store_ids=set())]
    for member in members:
        for access in accesses:
            portable, one = summary_both_ways(monkeypatch, member.pk, access)
            assert portable == one, (member.pk, access)
            if one is not Http404:
                shown.add(len(one["expiring"]))
    assert {0, 5} <= shown  # members with nothing due and with more days due than are shown were compared
    several = PointsLot.objects.filter(status=LotStatus.AVAILABLE, remaining__gt=0, expires_at__gt=now)
    assert several.values("member", "expires_at").distinct().count() < several.count()  # some days sum 2+ lots
    for missing in (members[-1].pk + 1000, 2**63 - 1):
        for access in accesses:
            assert summary_both_ways(monkeypatch, missing, access)[1] == (
                Http404 if access is not None else selectors.points_summary(missing, visible_to=None)
            )
