"""The expire_coupons job in the nightly schedule: 00:40 in the business time zone, after expire_points (00:30);
editable in the admin like the others."""

from django.conf import settings
from django.db import migrations

JOB, MINUTE, HOUR = "expire_coupons", "40", "0"


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
        ("campaigns", "0004_coupons"),
        ("members", "0005_default_schedule"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
