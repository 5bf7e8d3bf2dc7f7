"""The report_results job in the nightly schedule: 04:30 in the business time zone, after the 04:00 snapshot (SPEC
§7), so the stored retention, basket, repurchase and behaviour results are ready before the working day; editable
in the admin like the others."""

from django.conf import settings
from django.db import migrations

JOB, MINUTE, HOUR = "report_results", "30", "4"


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
        ("reports", "0005_stored_report_results"),
        ("loyalty", "0002_platform_tables_renamed"),  # the job task's name since the platform moved
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
