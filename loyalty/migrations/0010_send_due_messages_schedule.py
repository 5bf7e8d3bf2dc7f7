"""The sweep of queued messages in the schedule: every minute, it sends the messages whose time has come (the end
of the quiet hours, a retry, a worker that died with them). Editable in the admin like the nightly jobs."""

from django.conf import settings
from django.db import migrations

NAME = "messages: send due"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="*", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone=settings.TIME_ZONE
    )
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "loyalty.tasks.send_due_messages",
            "crontab": crontab,
            "description": "Sends the queued messages whose time has come (quiet hours over, retries).",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0009_default_message_templates"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
