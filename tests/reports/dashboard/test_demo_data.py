"""load_demo_data's history (reports.demo_data): every chart of the dashboard gets something to show, through the
services, once."""

from datetime import date, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import OutputWrapper
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from loyalty.models import JobRun, JobStatus
from loyalty.scheduling import job_names
from members.management.commands import load_demo_data
from members.models import Member, Purchase, PurchaseLine, RfmSnapshot
from points.models import EntryKind, LedgerEntry, LotStatus, PointsLot, Redemption
from reports import demo_data
from reports.demo_data import CATALOGUE, RFM_DAYS_AGO, SNAPSHOT_DAYS, DemoClock

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 23)


def test_the_demo_clock_moves_now_for_the_services_and_the_model_defaults_then_gives_it_back(db):
    real_now = timezone.now
    moment = datetime(2025, 3, 4, 10, 30, tzinfo=SHANGHAI)
    with DemoClock().running() as clock:
        clock.now = moment
        assert timezone.now() == moment
        assert JobRun(job="x", business_date=TODAY).started_at == moment  # default=timezone.now
        assert Member().joined_at == moment
    assert timezone.now is real_now
    assert abs(JobRun(job="x", business_date=TODAY).started_at - real_now()) < timedelta(minutes=1)


@pytest.fixture
def small_demo(monkeypatch):
    """40 members over 400 days (the first points expire in the last 35): the same history in small."""
    monkeypatch.setattr(load_demo_data, "MEMBERS", 40)
    monkeypatch.setattr(demo_data, "HISTORY_DAYS", 400)


def load():
    out = StringIO()
    call_command("load_demo_data", stdout=out)
    return out.getvalue()


@pytest.mark.slow
@pytest.mark.django_db
@time_machine.travel(datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI), tick=False)
def test_the_demo_history_fills_every_chart_once(small_demo):
    output = load()

    yesterday = TODAY - timedelta(days=1)
    start = timezone.make_aware(datetime(2026, 11, 23) - timedelta(days=400), SHANGHAI)
    purchases = Purchase.objects.filter(source="demo")
    assert f"Demo history: {purchases.count()} purchases" in output
    assert purchases.filter(occurred_at__lt=start).count() == 0
    assert purchases.filter(occurred_at__gte=timezone.now()).count() == 0
    # every week of the 90-day period and of the 90 days before it has purchases, points issued and members buying
    for week in range(26):
        first = TODAY - timedelta(days=7 * (week + 1))
        in_week = purchases.filter(occurred_at__date__gte=first, occurred_at__date__lt=first + timedelta(days=7))
        assert in_week.exists(), first
    lines = PurchaseLine.objects.filter(purchase__source="demo")
    assert set(lines.values_list("category", flat=True)) == {category for _, category, _ in CATALOGUE}
    pairs = purchases.annotate(n=Count("lines")).filter(n__gte=2)
    assert pairs.filter(lines__category="coffee").filter(lines__category="bakery").exists()

    recent = LedgerEntry.objects.filter(created_at__gte=timezone.now() - timedelta(days=90))
    kinds = set(recent.values_list("kind", flat=True))
    assert {EntryKind.EARN, EntryKind.REDEEM, EntryKind.EXPIRE, EntryKind.REVERSE, EntryKind.ADJUST} <= kinds
    assert LedgerEntry.objects.filter(created_at__gte=timezone.now()).count() == 0
    assert Redemption.objects.values("reward__code").distinct().count() >= 2
    next_year = PointsLot.objects.filter(
        status=LotStatus.AVAILABLE, remaining__gt=0, expires_at__lt=timezone.now() + timedelta(days=365)
    )
    assert next_year.exists()  # the expiry forecast
    joined = Member.objects.filter(external_id__startswith="DEMO-")
    assert joined.filter(joined_at__gte=timezone.now() - timedelta(days=30)).exists()
    assert joined.filter(joined_at__gte=timezone.now() - timedelta(days=180)).count() >= 4  # retention cohorts

    release_days = JobRun.objects.filter(job="release_pending", status=JobStatus.DONE)
    assert release_days.count() == 400 and release_days.latest("business_date").business_date == yesterday
    assert JobRun.objects.filter(job="expire_points", status=JobStatus.DONE, business_date=yesterday).exists()
    rfm_dates = set(JobRun.objects.filter(job="rfm", status=JobStatus.DONE).values_list("business_date", flat=True))
    if connection.vendor == "postgresql":
        assert rfm_dates == {TODAY - timedelta(days=days) for days in RFM_DAYS_AGO}
        start_of_period = dict(
            RfmSnapshot.objects.filter(as_of=TODAY - timedelta(days=30)).values_list("member_id", "segment")
        )
        end_of_period = RfmSnapshot.objects.filter(as_of=yesterday).values_list("member_id", "segment")
        moved = [member for member, segment in end_of_period if start_of_period.get(member, segment) != segment]
        assert moved  # segment moves between the 30-day period's ends
    else:
        assert rfm_dates == set()
        assert "rfm: not run (The rfm job needs PostgreSQL (set DATABASE_URL).)" in output
    if "snapshot" in job_names():
        snapshots = JobRun.objects.filter(job="snapshot", status=JobStatus.DONE)
        assert snapshots.count() == SNAPSHOT_DAYS
    else:
        assert "snapshot: not run (no such job yet)" in output

    before = (purchases.count(), LedgerEntry.objects.count(), JobRun.objects.count())
    again = load()
    assert "Demo history already loaded (demo purchases exist): nothing added." in again
    assert (purchases.count(), LedgerEntry.objects.count(), JobRun.objects.count()) == before


def test_without_demo_members_there_is_no_history(db):
    out = StringIO()
    demo_data.load_history(stdout=OutputWrapper(out), style=None)

    assert out.getvalue() == "No demo members: no demo history.\n"
    assert not Purchase.objects.exists()
