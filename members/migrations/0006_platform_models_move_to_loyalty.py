"""Client apps, staff tokens, the audit log, the message log and job runs move to the platform app (loyalty).

State only: the tables stay where they are, with their rows; loyalty's 0001 takes them over by name and its
0002 renames them."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0005_default_schedule"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='apiclient',
                    name='stores',
                ),
                migrations.DeleteModel(
                    name='AuditEntry',
                ),
                migrations.RemoveField(
                    model_name='jobchunk',
                    name='run',
                ),
                migrations.RemoveField(
                    model_name='message',
                    name='member',
                ),
                migrations.RemoveField(
                    model_name='stafftoken',
                    name='user',
                ),
                migrations.DeleteModel(
                    name='ApiClient',
                ),
                migrations.DeleteModel(
                    name='JobChunk',
                ),
                migrations.DeleteModel(
                    name='JobRun',
                ),
                migrations.DeleteModel(
                    name='Message',
                ),
                migrations.DeleteModel(
                    name='StaffToken',
                ),
            ],
            database_operations=[],
        ),
    ]
