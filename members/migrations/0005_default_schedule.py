"""The nightly schedule of SPEC §7 in django-celery-beat, in the business time zone; editable in the admin.

release_pending hourly, expire_points 00:30, rfm 02:00, tiers 03:00, rule_tags 03:30. (snapshot 04:00 and
reminders 09:00 join when their jobs exist.)"""

from django.conf import settings
from django.db import migrations

SCHEDULE = [
    # job, minute, hour
    ("release_pending", "5", "*"),
    ("expire_points", "30", "0"),
    ("rfm", "0", "2"),
    ("tiers", "0", "3"),
    ("rule_tags", "30", "3"),
]


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for job, minute, hour in SCHEDULE:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*",
            timezone=settings.TIME_ZONE,
        )
        PeriodicTask.objects.get_or_create(
            name=f"nightly: {job}",
            defaults={"task": "members.tasks.start_scheduled_job", "crontab": crontab, "args": f'["{job}"]',
                      "description": f"Runs the {job} job for its business date (see run_job)."},
        )


def remove_schedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[f"nightly: {job}" for job, _, _ in SCHEDULE]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0004_rfm_snapshots"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
