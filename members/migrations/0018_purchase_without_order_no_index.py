# purchase_order_no_idx goes: every lookup by order number names its source too (purchase_order_unique serves it),
# and the admin's search is a substring match (UPPER(order_no) LIKE '%…%') that no B-tree serves. One index entry
# less per purchase written.
#
# Not atomic: on PostgreSQL the index is dropped CONCURRENTLY (purchases are written meanwhile).

from django.db import migrations


def forwards(apps, schema_editor):
    concurrently = "CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'DROP INDEX {concurrently} IF EXISTS "purchase_order_no_idx"')


def backwards(apps, schema_editor):
    concurrently = "CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f'CREATE INDEX {concurrently} IF NOT EXISTS "purchase_order_no_idx" ON "members_purchase" ("order_no")'
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("members", "0017_rfm_chunk_values"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveIndex(model_name="purchase", name="purchase_order_no_idx")],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
