"""A job acts only for a business date that has ended: an operator's `--as-of` typo (next year) must not expire
valid points or downgrade a held tier today. The runner refuses such a date on every path (the command, start_run,
the Celery task, the API's recompute), writing nothing; release_pending alone may run for today."""

import contextlib
from datetime import date, datetime
from io import StringIO
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import execute_from_command_line

from loyalty import scheduling
from loyalty.errors import DomainError
from loyalty.models import JobRun
from loyalty.tasks import dispatch_job, start_scheduled_job
from members.models import Tag
from points.models import EntryKind, LedgerEntry, PointsLot
from tests.factories import MemberFactory
from tests.points.helpers import adjust, balances, purchase
from tiers.models import MemberTier, TierChange

SHANGHAI = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def run_job_command(*args):
    """`manage.py run_job ...` as the shell runs it: returns (exit status, stdout, stderr). The command line closes
    every database connection when the command ends; here that would close the test's own transaction."""
    out, err = StringIO(), StringIO()
    status = 0
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        mock.patch("django.core.management.base.connections.close_all"),
    ):
        try:
            execute_from_command_line(["manage.py", "run_job", *args])
        except SystemExit as exit_:
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


def lots_of(member):
    return sorted(PointsLot.objects.filter(member=member).values_list("points", "remaining", "status"))


@pytest.fixture
def valid_points(store_a):
    """A member holding 100 points valid until 2027-05-01 and 40 valid until 2026-06-01."""
    member = MemberFactory(home_store=store_a)
    with time_machine.travel(local(2025, 6, 1, 12), tick=False):
        adjust(member, 40)
    with time_machine.travel(local(2026, 5, 1, 12), tick=False):
        adjust(member, 100)
    return member


def test_expire_points_for_a_date_next_year_is_refused_and_valid_points_survive(valid_points):
    with time_machine.travel(local(2026, 5, 20, 12), tick=False):
        status, out, err = run_job_command("expire_points", "--as-of", "2027-05-20")

    assert status == 1
    assert err.strip() == (
        "CommandError: expire_points cannot run for 2027-05-20: that business date has not ended "
        "yet. The latest date allowed is 2026-05-19."
    )
    assert out == ""
    assert balances(valid_points) == (140, 0)
    assert lots_of(valid_points) == [(40, 40, "available"), (100, 100, "available")]
    assert LedgerEntry.objects.filter(kind=EntryKind.EXPIRE).count() == 0
    assert JobRun.objects.count() == 0


def test_expire_points_refuses_today_and_runs_for_yesterday(valid_points):
    with time_machine.travel(local(2026, 5, 20, 12), tick=False):
        refused = run_job_command("expire_points", "--as-of", "2026-05-20")
        done = run_job_command("expire_points", "--as-of", "2026-05-19")

    assert refused[0] == 1
    assert "latest date allowed is 2026-05-19" in refused[2]
    assert done == (0, "expire_points 2026-05-19: done in 0 chunk(s); nothing to do\n", "")
    assert list(JobRun.objects.values_list("job", "business_date", "status")) == [
        ("expire_points", date(2026, 5, 19), "done")
    ]
    assert balances(valid_points) == (140, 0)


def test_tiers_for_a_date_next_year_is_refused_and_a_held_member_keeps_her_tier(store_a):
    member = MemberFactory(home_store=store_a)
    with time_machine.travel(local(2026, 1, 10, 12), tick=False):
        purchase(member, "4990.00")  # 5000 growth: gold, held until 2027-01-10
    # By 2027-01-10 the window would hold nothing: a run for that date would downgrade her to regular.

    with time_machine.travel(local(2026, 6, 1, 12), tick=False):
        status, out, err = run_job_command("tiers", "--as-of", "2027-01-10")

    assert status == 1
    assert err.strip() == (
        "CommandError: tiers cannot run for 2027-01-10: that business date has not ended yet. "
        "The latest date allowed is 2026-05-31."
    )
    row = MemberTier.objects.select_related("tier").get(member=member)
    assert (row.tier.code, row.hold_until) == ("gold", date(2027, 1, 10))
    assert TierChange.objects.filter(reason="downgrade").count() == 0
    assert JobRun.objects.count() == 0


@pytest.mark.parametrize("job", ["expire_points", "tiers", "rfm", "rule_tags"])
@pytest.mark.parametrize("as_of", [date(2026, 5, 20), date(2026, 5, 21), date(2027, 5, 20)])
def test_the_runner_refuses_a_date_that_has_not_ended_on_every_path(job, as_of):
    expected = (
        f"{job} cannot run for {as_of}: that business date has not ended yet. The latest date allowed is 2026-05-19."
    )
    with time_machine.travel(local(2026, 5, 20, 12), tick=False):
        with pytest.raises(DomainError) as by_runner:
            scheduling.start_run(job, as_of, triggered_by="test")
        with pytest.raises(DomainError) as by_dispatch:
            dispatch_job(job, as_of, triggered_by="test")
        with pytest.raises(DomainError) as by_beat:
            start_scheduled_job(job, as_of=as_of.isoformat())
        with pytest.raises(DomainError) as inline:
            scheduling.run_inline(job, as_of, triggered_by="test")

    for refused in (by_runner, by_dispatch, by_beat, inline):
        assert (refused.value.code, refused.value.status, str(refused.value)) == (
            "business_date_not_ended",
            400,
            expected,
        )
    assert JobRun.objects.count() == 0


def test_release_pending_runs_for_today_but_not_tomorrow(store_a):
    member = MemberFactory(home_store=store_a)
    with time_machine.travel(local(2026, 5, 10, 12), tick=False):
        purchase(member, "100.00")  # pending until 2026-05-17 12:00
    with time_machine.travel(local(2026, 5, 20, 12), tick=False):
        with pytest.raises(DomainError, match="The latest date allowed is 2026-05-20."):
            scheduling.run_inline("release_pending", date(2026, 5, 21))
        assert JobRun.objects.count() == 0
        run = scheduling.run_inline("release_pending", date(2026, 5, 20))
    assert (run.status, run.counts) == ("done", {"members": 1, "points": 100})
    assert balances(member) == (100, 0)


def test_the_nightly_task_still_runs_for_yesterday(valid_points, django_capture_on_commit_callbacks):
    with time_machine.travel(local(2026, 5, 20, 0, 30), tick=False), django_capture_on_commit_callbacks(execute=True):
        result = start_scheduled_job("expire_points")
    run = JobRun.objects.get(pk=result["run"])
    assert (run.job, run.business_date, run.status, run.triggered_by) == (
        "expire_points",
        date(2026, 5, 19),
        "done",
        "beat",
    )


def test_recomputing_a_rule_tag_through_the_api_acts_for_yesterday(
    marketer_api, store_a, django_capture_on_commit_callbacks
):
    MemberFactory(home_store=store_a, gender="female")
    Tag.objects.create(code="women", name="Women", kind="rule", rule={"gender": "female"})
    with time_machine.travel(local(2026, 5, 20, 12), tick=False), django_capture_on_commit_callbacks(execute=True):
        response = marketer_api.post("/api/v1/tags/women/recompute/")
    assert response.status_code == 202, response.content
    run = JobRun.objects.get(pk=response.json()["id"])
    assert (run.job, run.business_date, run.params) == ("rule_tags", date(2026, 5, 19), {"tags": ["women"]})
