"""Households: members of one family, linked by staff (a member in at most one; indexed where set)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0007_erased_identities'),
    ]

    operations = [
        migrations.CreateModel(
            name='Household',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(blank=True, max_length=100, verbose_name='name')),
                ('created_by', models.CharField(blank=True, max_length=120, verbose_name='created by')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
            ],
            options={
                'verbose_name': 'household',
                'verbose_name_plural': 'households',
            },
        ),
        migrations.AddField(
            model_name='member',
            name='household',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='members', to='members.household', verbose_name='household'),
        ),
        migrations.AddIndex(
            model_name='member',
            index=models.Index(condition=models.Q(('household__isnull', False)), fields=['household'], name='member_household_idx'),
        ),
    ]
