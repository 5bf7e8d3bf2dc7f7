"""The alert rules of reports.alert_rules, each made to fire and not to fire at its boundary, and evaluated again
without a second alert."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_celery_beat.models import PeriodicTask

from campaigns.services.budgets import BUDGET_RULE
from loyalty.models import Alert, JobRun, JobStatus
from loyalty.scheduling import job_names
from loyalty.webhooks import FAILED_RULE
from points.models import PointsPolicy
from reports.alert_notices import change_alert_rule
from reports.alert_rules import CAP_RULE, JOBS_RULE, RULES, SPIKE_RULE, evaluate_rules, nightly_jobs_due
from reports.models_alerts import AlertRule
from tests.factories import MemberFactory, StoreFactory
from tests.points.helpers import purchase

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 6, 10)
pytestmark = pytest.mark.django_db


def local(day, hour=0, minute=0, second=0):
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SHANGHAI)


def evaluate(at, *codes):
    with time_machine.travel(at, tick=False):
        return evaluate_rules(codes=codes or None)


def alerts(rule):
    return list(Alert.objects.filter(rule=rule).order_by("id"))


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


def test_every_rule_has_its_row_with_the_defaults_and_the_budget_and_webhook_rules_are_listed():
    assert [rule.code for rule in RULES] == [SPIKE_RULE, CAP_RULE, BUDGET_RULE, JOBS_RULE, FAILED_RULE]
    rows = {row.code: (row.is_active, row.threshold, row.floor) for row in AlertRule.objects.all()}
    assert rows == {
        SPIKE_RULE: (True, Decimal(3), Decimal(0)),
        CAP_RULE: (True, None, Decimal(0)),
        BUDGET_RULE: (True, None, Decimal(0)),
        JOBS_RULE: (True, Decimal(6), Decimal(0)),
        FAILED_RULE: (True, None, Decimal(0)),
    }
    assert [rule.code for rule in RULES if rule.evaluated] == [SPIKE_RULE, CAP_RULE, JOBS_RULE]


# --- Points issued today against the 7-day average -----------------------------------------------------------------


def issue(member, points, day, hour=12):
    """A purchase earning `points` (1 a yuan) at `hour` on `day`."""
    with time_machine.travel(local(day, hour), tick=False):
        awarded = purchase(member, points)["points"]["awarded"]
    return awarded


def issue_to_newcomer(points, day, hour=12):
    """A purchase by a member of her own, so her tier's multiplier stays 1 whatever others earned before."""
    assert issue(MemberFactory(home_store=StoreFactory(code="A001")), points, day, hour) == points


@pytest.fixture
def a_week_of_100_a_day(db):
    """700 points in the 7 days before TODAY (average 100), and some on the 8th day before, which does not count."""
    issue_to_newcomer(5000, TODAY - timedelta(days=8))
    for days_back, points in enumerate([40, 160, 100, 100, 100, 100, 100], start=1):
        issue_to_newcomer(points, TODAY - timedelta(days=days_back), hour=23 if days_back == 1 else 0)


def test_points_issued_exactly_three_times_the_average_raise_nothing_and_one_point_more_raises_one_alert(
    a_week_of_100_a_day,
):
    issue_to_newcomer(299, TODAY, hour=0)
    issue_to_newcomer(1, TODAY, hour=9)
    assert evaluate(local(TODAY, 9, 10), SPIKE_RULE) == {SPIKE_RULE: 0}
    issue_to_newcomer(1, TODAY, hour=9)
    assert evaluate(local(TODAY, 9, 20), SPIKE_RULE) == {SPIKE_RULE: 1}
    [alert] = alerts(SPIKE_RULE)
    assert (alert.metric, alert.value, alert.threshold) == ("points_issued_today", Decimal(301), Decimal(300))
    assert alert.key == "points_issued_spike:2026-06-10"
    assert alert.created_at == local(TODAY, 9, 20)
    assert alert.detail == {
        "date": "2026-06-10",
        "issued": 301,
        "average": "100.0000",
        "days": 7,
        "multiplier": "3.0000",
        "floor": "0.0000",
    }


def test_the_spike_is_raised_once_a_day_however_often_it_is_evaluated(a_week_of_100_a_day):
    issue_to_newcomer(400, TODAY, hour=8)
    assert evaluate(local(TODAY, 9), SPIKE_RULE) == {SPIKE_RULE: 1}
    issue_to_newcomer(400, TODAY, hour=10)
    assert evaluate(local(TODAY, 10, 10), SPIKE_RULE) == {SPIKE_RULE: 0}
    assert [alert.value for alert in alerts(SPIKE_RULE)] == [Decimal(400)]


def test_the_multiplier_is_the_rules_threshold_as_staff_set_it(a_week_of_100_a_day):
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"threshold": Decimal("1.5")})
    issue_to_newcomer(150, TODAY, hour=8)
    assert evaluate(local(TODAY, 9), SPIKE_RULE) == {SPIKE_RULE: 0}
    issue_to_newcomer(1, TODAY, hour=9)
    assert evaluate(local(TODAY, 9, 30), SPIKE_RULE) == {SPIKE_RULE: 1}
    assert alerts(SPIKE_RULE)[0].threshold == Decimal(150)


def test_with_nothing_issued_in_the_7_days_before_only_a_floor_makes_today_an_alert(db):
    issue_to_newcomer(4000, TODAY, hour=8)
    assert evaluate(local(TODAY, 9), SPIKE_RULE) == {SPIKE_RULE: 0}
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"floor": Decimal(4000)})
    assert evaluate(local(TODAY, 9, 10), SPIKE_RULE) == {SPIKE_RULE: 0}
    issue_to_newcomer(1, TODAY, hour=9)
    assert evaluate(local(TODAY, 9, 20), SPIKE_RULE) == {SPIKE_RULE: 1}
    [alert] = alerts(SPIKE_RULE)
    assert (alert.value, alert.threshold, alert.detail["average"]) == (Decimal(4001), Decimal(4000), "0.0000")


def test_a_floor_above_three_times_the_average_holds_small_days_back(a_week_of_100_a_day):
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"floor": Decimal(500)})
    issue_to_newcomer(500, TODAY, hour=8)  # 5× the average, not above the floor
    assert evaluate(local(TODAY, 9), SPIKE_RULE) == {SPIKE_RULE: 0}
    issue_to_newcomer(1, TODAY, hour=9)
    assert evaluate(local(TODAY, 9, 10), SPIKE_RULE) == {SPIKE_RULE: 1}
    assert alerts(SPIKE_RULE)[0].threshold == Decimal(500)


def test_a_rule_switched_off_is_not_evaluated(a_week_of_100_a_day):
    change_alert_rule(actor="staff:boss", code=SPIKE_RULE, changes={"is_active": False})
    issue_to_newcomer(1000, TODAY, hour=8)
    assert evaluate(local(TODAY, 9), SPIKE_RULE) == {}
    assert alerts(SPIKE_RULE) == []


# --- A member reaching the daily cap ------------------------------------------------------------------------------


@pytest.fixture
def cap_of_100(db):
    return PointsPolicy.objects.create(valid_from=local(TODAY - timedelta(days=30)), daily_cap=100)


def test_a_member_one_point_under_the_cap_raises_nothing_and_at_the_cap_one_alert_per_member_and_day(
    cap_of_100, member, store_a
):
    other = MemberFactory(home_store=store_a)
    issue(member, 99, TODAY, hour=8)
    issue(other, 150, TODAY - timedelta(days=1), hour=20)  # capped yesterday: not today's
    assert evaluate(local(TODAY, 9), CAP_RULE) == {CAP_RULE: 0}
    issue(member, 1, TODAY, hour=9)
    assert evaluate(local(TODAY, 9, 10), CAP_RULE) == {CAP_RULE: 1}
    issue(member, 50, TODAY, hour=10)  # cut to 0 by the cap: still the one alert of the day
    issue(other, 100, TODAY, hour=10)
    assert evaluate(local(TODAY, 10, 10), CAP_RULE) == {CAP_RULE: 1}
    assert evaluate(local(TODAY, 10, 20), CAP_RULE) == {CAP_RULE: 0}
    assert [(a.key, a.metric, a.value, a.threshold, a.subject) for a in alerts(CAP_RULE)] == [
        (f"daily_cap_reached:2026-06-10:{member.pk}", "points_earned_today", 100, 100, f"member {member.member_no}"),
        (f"daily_cap_reached:2026-06-10:{other.pk}", "points_earned_today", 100, 100, f"member {other.member_no}"),
    ]
    assert alerts(CAP_RULE)[0].detail == {
        "date": "2026-06-10",
        "member": str(member.pk),
        "member_no": member.member_no,
        "cap": 100,
    }
    issue(member, 100, TODAY + timedelta(days=1), hour=8)
    assert evaluate(local(TODAY + timedelta(days=1), 9), CAP_RULE) == {CAP_RULE: 1}
    assert alerts(CAP_RULE)[-1].key == f"daily_cap_reached:2026-06-11:{member.pk}"


# --- Nightly jobs not finished by 06:00 ---------------------------------------------------------------------------

YESTERDAY = TODAY - timedelta(days=1)


@pytest.fixture
def two_nightly_jobs(db):
    """Only expire_points (00:30) and rfm (02:00) scheduled: the schedule others may grow stays out of the way."""
    starts = PeriodicTask.objects.filter(task="loyalty.tasks.start_scheduled_job")
    starts.exclude(name__in=["nightly: expire_points", "nightly: rfm"]).update(enabled=False)


def run(job, status, started, finished=None):
    return JobRun.objects.create(
        job=job, business_date=YESTERDAY, status=status, started_at=started, finished_at=finished
    )


def test_the_jobs_due_by_06_00_are_the_scheduled_nightly_jobs_not_the_hourly_one_nor_the_09_00_reminders():
    due = nightly_jobs_due(TODAY, local(TODAY, 6))
    assert due == set(job_names()) - {"release_pending", "reminders"}
    PeriodicTask.objects.filter(name="nightly: rfm").update(enabled=False)
    assert "rfm" not in nightly_jobs_due(TODAY, local(TODAY, 6))
    # rfm starts at 02:00, not before; the two expiry jobs run at 00:30 and 00:40
    assert nightly_jobs_due(TODAY, local(TODAY, 2)) == {"expire_points", "expire_stored_value_bonus", "expire_coupons"}


def test_at_05_59_nothing_is_late_and_at_06_00_every_job_without_a_finished_run_is_even_one_never_started(
    two_nightly_jobs,
):
    run("rfm", JobStatus.RUNNING, local(TODAY, 2))
    assert evaluate(local(TODAY, 5, 59, 59), JOBS_RULE) == {JOBS_RULE: 0}
    assert evaluate(local(TODAY, 6), JOBS_RULE) == {JOBS_RULE: 2}
    assert [(a.key, a.subject, a.metric, a.value, a.threshold) for a in alerts(JOBS_RULE)] == [
        ("nightly_job_late:expire_points:2026-06-09", "expire_points 2026-06-09: not started", "hours_after_midnight",
         Decimal(6), Decimal(6)),
        ("nightly_job_late:rfm:2026-06-09", "rfm 2026-06-09: running", "hours_after_midnight", Decimal(6), Decimal(6)),
    ]  # fmt: skip
    assert alerts(JOBS_RULE)[0].detail == {
        "job": "expire_points",
        "business_date": "2026-06-09",
        "state": "not started",
        "run": None,
        "chunks_done": 0,
        "chunks_total": 0,
        "error": "",
        "deadline": "2026-06-10T06:00:00+08:00",
    }
    assert evaluate(local(TODAY, 6, 5), JOBS_RULE) == {JOBS_RULE: 0}
    assert evaluate(local(TODAY, 6, 10)) == {SPIKE_RULE: 0, CAP_RULE: 0, JOBS_RULE: 0}


def test_a_job_finished_by_06_00_is_on_time_one_finished_at_06_00_01_is_late(two_nightly_jobs):
    run("expire_points", JobStatus.DONE, local(TODAY, 0, 30), local(TODAY, 6))
    run("rfm", JobStatus.DONE, local(TODAY, 2), local(TODAY, 6, 0, 1))
    assert evaluate(local(TODAY, 6, 5), JOBS_RULE) == {JOBS_RULE: 1}
    [alert] = alerts(JOBS_RULE)
    assert (alert.subject, alert.value) == ("rfm 2026-06-09: finished late", Decimal("6.0003"))


def test_a_failed_run_is_late_and_a_run_redone_by_hand_after_the_deadline_is_not(two_nightly_jobs):
    run("expire_points", JobStatus.FAILED, local(TODAY, 0, 30))
    run("rfm", JobStatus.DONE, local(TODAY, 10), local(TODAY, 10, 30))
    assert evaluate(local(TODAY, 11), JOBS_RULE) == {JOBS_RULE: 1}
    assert [alert.subject for alert in alerts(JOBS_RULE)] == ["expire_points 2026-06-09: failed"]


def test_the_deadline_is_the_rules_threshold(two_nightly_jobs):
    change_alert_rule(actor="staff:boss", code=JOBS_RULE, changes={"threshold": Decimal("6.5")})
    assert evaluate(local(TODAY, 6, 29, 59), JOBS_RULE) == {JOBS_RULE: 0}
    assert evaluate(local(TODAY, 6, 30), JOBS_RULE) == {JOBS_RULE: 2}
    assert {alert.threshold for alert in alerts(JOBS_RULE)} == {Decimal("6.5")}


# --- Evaluated again, or in a task ------------------------------------------------------------------------------


def test_the_periodic_task_evaluates_and_tells_and_a_second_run_raises_nothing_new(
    two_nightly_jobs, django_capture_on_commit_callbacks
):
    from reports.tasks import evaluate_alerts

    with time_machine.travel(local(TODAY, 6, 5), tick=False), django_capture_on_commit_callbacks(execute=True):
        first = evaluate_alerts.delay(["nightly_job_late"]).get()
        second = evaluate_alerts.delay().get()
    assert first == {"raised": {JOBS_RULE: 2}, "alerts": 2, "messages": 0}
    assert second == {"raised": {SPIKE_RULE: 0, CAP_RULE: 0, JOBS_RULE: 0}, "alerts": 0, "messages": 0}
    assert Alert.objects.count() == 2
