"""The message table's member foreign key loses its own index: message_member_idx (member, -id) serves every
lookup by member (the inbox, the frequency cap, the SET_NULL of a member's deletion), and each index is one more
write for each of the tens of thousands of rows the reminders job writes a night. Only the index is dropped (found
by its column, whatever its name): the foreign key constraint stays as it is, so nothing is re-validated."""

import django.db.models.deletion
from django.db import migrations, models


def drop_member_index(apps, schema_editor):
    message = apps.get_model("loyalty", "Message")
    for name in schema_editor._constraint_names(message, ["member_id"], index=True, type_=models.Index.suffix):
        schema_editor.execute(schema_editor._delete_index_sql(message, name))


def create_member_index(apps, schema_editor):
    message = apps.get_model("loyalty", "Message")
    field = message._meta.get_field("member")
    schema_editor.execute(schema_editor._create_index_sql(message, fields=[field]))


class Migration(migrations.Migration):
    dependencies = [
        ("loyalty", "0010_send_due_messages_schedule"),
        ("members", "0013_reminders_schedule"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="member",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="messages",
                        to="members.member",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_member_index, create_member_index)],
        ),
    ]
