import json

import pytest
from django_celery_beat.models import PeriodicTask

from loyalty.scheduling import job_names


@pytest.mark.django_db
def test_the_default_schedule_runs_every_registered_nightly_job_in_the_business_time_zone(settings):
    tasks = {task.name: task for task in PeriodicTask.objects.select_related("crontab")}
    expected = {
        "release_pending": ("5", "*"),
        "expire_points": ("30", "0"),
        "expire_stored_value_bonus": ("40", "0"),
        "expire_coupons": ("40", "0"),
        "rfm": ("0", "2"),
        "tiers": ("0", "3"),
        "rule_tags": ("30", "3"),
        "purge_idempotency": ("30", "4"),
        "segment_moves": ("45", "2"),
        "purge_member_logins": ("45", "4"),
        "snapshot": ("0", "4"),
        "report_results": ("30", "4"),
        "reminders": ("0", "9"),
    }
    assert set(expected) == set(job_names())
    for job, (minute, hour) in expected.items():
        task = tasks[f"nightly: {job}"]
        assert task.task == "loyalty.tasks.start_scheduled_job"
        assert json.loads(task.args) == [job]
        assert (task.crontab.minute, task.crontab.hour) == (minute, hour)
        assert str(task.crontab.timezone) == settings.TIME_ZONE


@pytest.mark.django_db
def test_the_alert_rules_are_evaluated_every_10_minutes_and_the_nightly_jobs_rule_at_06_05(settings):
    tasks = {
        task.name: task
        for task in PeriodicTask.objects.select_related("crontab").filter(task="reports.tasks.evaluate_alerts")
    }
    assert set(tasks) == {"alerts: evaluate", "alerts: nightly jobs"}
    assert json.loads(tasks["alerts: evaluate"].args) == []
    assert json.loads(tasks["alerts: nightly jobs"].args) == [["nightly_job_late"]]
    for name, (minute, hour) in {"alerts: evaluate": ("*/10", "*"), "alerts: nightly jobs": ("5", "6")}.items():
        crontab = tasks[name].crontab
        assert (crontab.minute, crontab.hour, crontab.day_of_week, crontab.day_of_month) == (minute, hour, "*", "*")
        assert str(crontab.timezone) == settings.TIME_ZONE
        assert tasks[name].enabled
