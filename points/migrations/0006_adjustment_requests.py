"""Adjustments over a role's limit wait for a manager: the request, its decision and its ledger entry."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0008_household'),
        ('points', '0005_purge_idempotency_schedule'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AdjustmentRequest',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('points', models.BigIntegerField(verbose_name='points')),
                ('reason', models.CharField(max_length=200, verbose_name='reason')),
                ('status', models.CharField(choices=[('pending', 'pending'), ('approved', 'approved'), ('rejected', 'rejected')], default='pending', max_length=8, verbose_name='status')),
                ('requested_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='requested at')),
                ('decided_at', models.DateTimeField(blank=True, null=True, verbose_name='decided at')),
                ('decision_note', models.CharField(blank=True, max_length=200, verbose_name='decision note')),
                ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='decided by')),
                ('entry', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='adjustment_request', to='points.ledgerentry', verbose_name='ledger entry')),
                ('member', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='adjustment_requests', to='members.member')),
                ('requested_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='requested by')),
            ],
            options={
                'verbose_name': 'adjustment request',
                'verbose_name_plural': 'adjustment requests',
                'indexes': [models.Index(fields=['member', '-id'], name='adjustment_request_member_idx'), models.Index(condition=models.Q(('status', 'pending')), fields=['-id'], name='adjustment_request_pending_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('points', 0), _negated=True), name='adjustment_request_not_zero'), models.CheckConstraint(condition=models.Q(models.Q(('status', 'pending'), ('decided_by__isnull', True), ('entry__isnull', True)), models.Q(('status', 'approved'), ('decided_by__isnull', False), ('entry__isnull', False)), models.Q(('status', 'rejected'), ('decided_by__isnull', False), ('entry__isnull', True)), _connector='OR'), name='adjustment_request_decision_consistent')],
            },
        ),
    ]
