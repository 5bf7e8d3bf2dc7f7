"""The bonus-money expiry job in the nightly schedule: 00:40 in the business time zone, after expire_points (00:30)
and soon after the bonus of the day that ended stopped being valid (its validity ends at the end of a business day);
editable in the admin like the others."""

from django.conf import settings
from django.db import migrations

JOB, MINUTE, HOUR = "expire_stored_value_bonus", "40", "0"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=MINUTE,
        hour=HOUR,
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.get_or_create(
        name=f"nightly: {JOB}",
        defaults={
            "task": "loyalty.tasks.start_scheduled_job",
            "crontab": crontab,
            "args": f'["{JOB}"]',
            "description": f"Runs the {JOB} job for its business date (see run_job).",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=f"nightly: {JOB}").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("stored_value", "0002_append_only_entries"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
