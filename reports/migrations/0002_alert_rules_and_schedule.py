"""The alert rules' rows with their defaults (staff edit them in the admin), and the periodic evaluation in the
schedule, editable in the admin like the nightly jobs: every 10 minutes, and at 06:05 for the nightly jobs' rule
(its deadline is 06:00 by default)."""

from django.conf import settings
from django.db import migrations

RULES = [
    # code, threshold (None: the rule has none of its own)
    ("points_issued_spike", 3),
    ("daily_cap_reached", None),
    ("campaign_budget_exhausted", None),
    ("nightly_job_late", 6),
    ("webhook_delivery_failed", None),
]
SCHEDULE = [
    # name, minute, hour, args, description
    ("alerts: evaluate", "*/10", "*", "[]", "Evaluates the alert rules and tells the subscribers of new alerts."),
    (
        "alerts: nightly jobs",
        "5",
        "6",
        '[["nightly_job_late"]]',
        "Checks that the nightly jobs finished by 06:00 (and tells the subscribers of new alerts).",
    ),
]


def create_rules_and_schedule(apps, schema_editor):
    AlertRule = apps.get_model("reports", "AlertRule")
    for code, threshold in RULES:
        AlertRule.objects.get_or_create(code=code, defaults={"threshold": threshold, "floor": 0})
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, minute, hour, args, description in SCHEDULE:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": "reports.tasks.evaluate_alerts", "crontab": crontab, "args": args,
                      "description": description},
        )


def remove_rules_and_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULE]).delete()
    apps.get_model("reports", "AlertRule").objects.filter(code__in=[code for code, _ in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_alert_rules_and_subscriptions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_rules_and_schedule, remove_rules_and_schedule)]
