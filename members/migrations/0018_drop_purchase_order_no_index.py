# purchase_order_no_idx goes: nothing needs it. Every lookup by order number also names the source and is served by
# the unique (source, order_no) index; the admin's order search is icontains (UPPER(order_no) LIKE '%...%'), which a
# btree does not serve; the review event's `member = ... AND order_no = ...` reads the member's few purchases through
# purchase_member_time_cover_idx (EXPLAIN ANALYZE on the 10M seed: 0.5 ms against 0.3 ms with this index). Every
# purchase recorded or imported wrote an entry into it (301 MB at 10M purchases; a random leaf per row when order
# numbers are not in file order). members_purchase_store_id stays: the clerk's purchase list filters by store, and
# a store's PROTECTed delete would read the whole table without it.
#
# Not atomic: on PostgreSQL the index is dropped CONCURRENTLY (no lock that stops purchases being written).

from django.db import migrations, models

INDEX = models.Index(fields=["order_no"], name="purchase_order_no_idx")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX.name}")
    else:
        schema_editor.remove_index(apps.get_model("members", "Purchase"), INDEX)


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX.name} ON members_purchase (order_no)")
    else:
        schema_editor.add_index(apps.get_model("members", "Purchase"), INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("members", "0017_rfm_chunk_values"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveIndex(model_name="purchase", name="purchase_order_no_idx")],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        ),
    ]
