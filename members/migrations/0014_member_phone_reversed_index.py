"""An expression index on the reversed phone, so that the admin's search by a phone's last 4 digits
(members.admin.phone_ends_with: reverse(phone) LIKE '0008%') reads a few index entries instead of every member.
PostgreSQL only (text_pattern_ops makes LIKE 'prefix%' use the btree whatever the collation); SQLite answers the
same query without it. Built CONCURRENTLY, so a large member table stays writable meanwhile (hence not atomic)."""

from django.db import migrations

INDEX = "member_phone_reversed_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON members_member (reverse(phone) text_pattern_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("members", "0013_reminders_schedule")]

    operations = [migrations.RunPython(create_index, drop_index)]
