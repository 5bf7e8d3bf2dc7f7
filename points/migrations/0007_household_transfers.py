"""Household transfers (append-only in PostgreSQL, as the ledger), the transfer kind of ledger entry, and the
policy's transfer switch (off) and daily limit."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # points_refuse_change() comes from 0002
        schema_editor.execute("CREATE TRIGGER points_pointstransfer_append_only BEFORE UPDATE OR DELETE ON "
                              "points_pointstransfer FOR EACH ROW EXECUTE FUNCTION points_refuse_change()")


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS points_pointstransfer_append_only ON points_pointstransfer")


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0008_household'),
        ('points', '0006_adjustment_requests'),
    ]

    operations = [
        migrations.AddField(
            model_name='pointspolicy',
            name='transfer_daily_limit',
            field=models.PositiveIntegerField(default=1000, verbose_name='points a member may transfer per day'),
        ),
        migrations.AddField(
            model_name='pointspolicy',
            name='transfers_enabled',
            field=models.BooleanField(default=False, verbose_name='points transfers within a household'),
        ),
        migrations.AlterField(
            model_name='ledgerentry',
            name='kind',
            field=models.CharField(choices=[('earn', 'earn'), ('redeem', 'redeem'), ('expire', 'expire'), ('adjust', 'adjust'), ('reverse', 'reverse (refund)'), ('release', 'release'), ('deduct', 'deduct (points as cash)'), ('cancel', 'cancel (points returned)'), ('merge', 'merge'), ('transfer', 'transfer (household)')], max_length=8, verbose_name='kind'),
        ),
        migrations.CreateModel(
            name='PointsTransfer',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('points', models.BigIntegerField(verbose_name='points')),
                ('business_date', models.DateField(verbose_name='business date')),
                ('reason', models.CharField(blank=True, max_length=200, verbose_name='reason')),
                ('actor', models.CharField(max_length=120, verbose_name='actor')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('from_member', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='transfers_out', to='members.member', verbose_name='from member')),
                ('in_entry', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='transfer_in', to='points.ledgerentry')),
                ('out_entry', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='transfer_out', to='points.ledgerentry')),
                ('to_member', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='transfers_in', to='members.member', verbose_name='to member')),
            ],
            options={
                'verbose_name': 'points transfer',
                'verbose_name_plural': 'points transfers',
                'indexes': [models.Index(fields=['from_member', 'business_date'], name='transfer_sender_day_idx'), models.Index(fields=['to_member', '-id'], name='transfer_receiver_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('points__gt', 0)), name='transfer_points_positive'), models.CheckConstraint(condition=models.Q(('from_member', models.F('to_member')), _negated=True), name='transfer_between_two')],
            },
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
