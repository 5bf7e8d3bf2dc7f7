"""Webhooks: the outbox of domain events, subscriptions and deliveries; and the periodic task that dispatches and
delivers them (every minute, editable in the admin like the nightly jobs)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


TASK_NAME = "webhooks: deliver"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "loyalty.tasks.deliver_webhooks",
            "interval": every_minute,
            "args": "[]",
            "description": "Dispatches new events to the webhook subscriptions and delivers (and retries) what is due.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('loyalty', '0006_audit_actor_without_phone'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.CreateModel(
            name='WebhookSubscription',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('url', models.URLField(max_length=500, verbose_name='URL')),
                ('events', models.JSONField(default=list, verbose_name='events')),
                ('secret', models.CharField(max_length=100, verbose_name='secret')),
                ('is_active', models.BooleanField(default=True, verbose_name='active')),
                ('description', models.CharField(blank=True, max_length=200, verbose_name='description')),
                ('created_by', models.CharField(blank=True, max_length=120, verbose_name='created by')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
            ],
            options={
                'verbose_name': 'webhook subscription',
                'verbose_name_plural': 'webhook subscriptions',
            },
        ),
        migrations.CreateModel(
            name='OutboxEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('type', models.CharField(max_length=60, verbose_name='type')),
                ('member_id', models.BigIntegerField(blank=True, null=True, verbose_name='member')),
                ('data', models.JSONField(default=dict, verbose_name='data')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('dispatched_at', models.DateTimeField(blank=True, null=True, verbose_name='dispatched at')),
            ],
            options={
                'verbose_name': 'event',
                'verbose_name_plural': 'events',
                'indexes': [models.Index(condition=models.Q(('dispatched_at__isnull', True)), fields=['id'], name='outbox_undispatched_idx'), models.Index(fields=['dispatched_at'], name='outbox_dispatched_idx')],
            },
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('member_id', models.BigIntegerField(blank=True, null=True)),
                ('status', models.CharField(choices=[('pending', 'pending'), ('delivered', 'delivered'), ('failed', 'failed')], default='pending', max_length=10, verbose_name='status')),
                ('attempts', models.PositiveIntegerField(default=0, verbose_name='attempts')),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True, verbose_name='next attempt at')),
                ('leased_until', models.DateTimeField(blank=True, editable=False, null=True)),
                ('retry_from', models.DateTimeField(default=django.utils.timezone.now, verbose_name='retried since')),
                ('last_attempt_at', models.DateTimeField(blank=True, null=True, verbose_name='last attempt at')),
                ('last_status_code', models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='last response status')),
                ('last_latency_ms', models.PositiveIntegerField(blank=True, null=True, verbose_name='last latency (ms)')),
                ('last_error', models.CharField(blank=True, max_length=300, verbose_name='last error')),
                ('delivered_at', models.DateTimeField(blank=True, null=True, verbose_name='delivered at')),
                ('resends', models.PositiveIntegerField(default=0, verbose_name='resends')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('event', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='loyalty.outboxevent')),
                ('subscription', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='loyalty.webhooksubscription')),
            ],
            options={
                'verbose_name': 'webhook delivery',
                'verbose_name_plural': 'webhook deliveries',
                'indexes': [models.Index(condition=models.Q(('status', 'pending')), fields=['subscription', 'next_attempt_at'], name='webhook_delivery_due_idx'), models.Index(condition=models.Q(('status', 'pending')), fields=['subscription', 'member_id', 'event'], name='webhook_delivery_order_idx')],
                'constraints': [models.UniqueConstraint(fields=('subscription', 'event'), name='webhook_delivery_once_per_event')],
            },
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
