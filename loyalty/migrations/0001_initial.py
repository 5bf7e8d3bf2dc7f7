"""The platform's tables, taken over from members (state only: the tables and their rows stay; 0002 renames
them). Content types move with them, so permissions, role groups and admin log entries keep pointing at them."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


MOVED = ["apiclient", "stafftoken", "message", "auditentry", "jobrun", "jobchunk"]


def _relabel(apps, old, new):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MOVED:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def move_content_types(apps, schema_editor):
    _relabel(apps, "members", "loyalty")


def move_content_types_back(apps, schema_editor):
    _relabel(apps, "loyalty", "members")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('members', '0006_platform_models_move_to_loyalty'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ApiClient',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True, verbose_name='name')),
                        ('prefix', models.CharField(editable=False, max_length=16, unique=True, verbose_name='key prefix')),
                        ('key_hash', models.CharField(editable=False, max_length=64, verbose_name='key hash')),
                        ('scopes', models.JSONField(blank=True, default=list, verbose_name='scopes')),
                        ('is_active', models.BooleanField(default=True, verbose_name='active')),
                        ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                        ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True, verbose_name='last used at')),
                        ('stores', models.ManyToManyField(blank=True, help_text='Empty: the client may act for every store.', related_name='api_clients', to='members.store', verbose_name='stores')),
                    ],
                    options={
                        'verbose_name': 'API client',
                        'verbose_name_plural': 'API clients',
                        'db_table': 'members_apiclient',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='AuditEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('actor', models.CharField(max_length=120, verbose_name='actor')),
                        ('action', models.CharField(max_length=60, verbose_name='action')),
                        ('target_type', models.CharField(max_length=60, verbose_name='target type')),
                        ('target_id', models.CharField(max_length=40, verbose_name='target id')),
                        ('old_values', models.JSONField(blank=True, null=True, verbose_name='old values')),
                        ('new_values', models.JSONField(blank=True, null=True, verbose_name='new values')),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='at')),
                    ],
                    options={
                        'verbose_name': 'audit entry',
                        'verbose_name_plural': 'audit log',
                        'db_table': 'members_auditentry',
                        'indexes': [models.Index(fields=['target_type', 'target_id', '-id'], name='audit_target_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='JobRun',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('job', models.CharField(max_length=40, verbose_name='job')),
                        ('business_date', models.DateField(verbose_name='business date')),
                        ('status', models.CharField(choices=[('running', 'running'), ('done', 'done'), ('failed', 'failed')], default='running', max_length=8, verbose_name='status')),
                        ('params', models.JSONField(blank=True, default=dict, verbose_name='parameters')),
                        ('counts', models.JSONField(blank=True, default=dict, verbose_name='counts')),
                        ('chunks_total', models.PositiveIntegerField(default=0)),
                        ('chunks_done', models.PositiveIntegerField(default=0)),
                        ('error', models.TextField(blank=True, verbose_name='error')),
                        ('started_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='started at')),
                        ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished at')),
                        ('triggered_by', models.CharField(blank=True, max_length=120, verbose_name='triggered by')),
                    ],
                    options={
                        'verbose_name': 'job run',
                        'verbose_name_plural': 'job runs',
                        'db_table': 'members_jobrun',
                        'indexes': [models.Index(fields=['-started_at'], name='job_run_recent_idx')],
                        'constraints': [models.UniqueConstraint(fields=('job', 'business_date'), name='job_run_once_per_date')],
                    },
                ),
                migrations.CreateModel(
                    name='StaffToken',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('token_hash', models.CharField(max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('expires_at', models.DateTimeField()),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'staff token',
                        'verbose_name_plural': 'staff tokens',
                        'db_table': 'members_stafftoken',
                    },
                ),
                migrations.CreateModel(
                    name='JobChunk',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('start_id', models.BigIntegerField()),
                        ('stop_id', models.BigIntegerField()),
                        ('status', models.CharField(choices=[('running', 'running'), ('done', 'done'), ('failed', 'failed')], default='running', max_length=8)),
                        ('counts', models.JSONField(blank=True, default=dict)),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('error', models.TextField(blank=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='chunks', to='loyalty.jobrun')),
                    ],
                    options={
                        'db_table': 'members_jobchunk',
                        'constraints': [models.UniqueConstraint(fields=('run', 'start_id'), name='job_chunk_unique')],
                    },
                ),
                migrations.CreateModel(
                    name='Message',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('recipient', models.CharField(help_text='phone, email or openid', max_length=254, verbose_name='recipient')),
                        ('channel', models.CharField(choices=[('sms', 'SMS'), ('wechat', 'WeChat'), ('email', 'email'), ('inbox', 'in-app inbox')], max_length=8, verbose_name='channel')),
                        ('kind', models.CharField(max_length=40, verbose_name='kind')),
                        ('subject', models.CharField(blank=True, max_length=200, verbose_name='subject')),
                        ('body', models.TextField(verbose_name='body')),
                        ('status', models.CharField(choices=[('queued', 'queued'), ('sent', 'sent'), ('failed', 'failed'), ('skipped', 'skipped')], default='queued', max_length=8, verbose_name='status')),
                        ('status_reason', models.CharField(blank=True, max_length=200, verbose_name='reason')),
                        ('backend', models.CharField(blank=True, max_length=100, verbose_name='backend')),
                        ('provider_message_id', models.CharField(blank=True, max_length=100)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                        ('sent_at', models.DateTimeField(blank=True, null=True, verbose_name='sent at')),
                        ('member', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='messages', to='members.member')),
                    ],
                    options={
                        'verbose_name': 'message',
                        'verbose_name_plural': 'messages',
                        'db_table': 'members_message',
                        'indexes': [models.Index(fields=['recipient', '-id'], name='message_recipient_idx'), models.Index(fields=['member', '-id'], name='message_member_idx')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
