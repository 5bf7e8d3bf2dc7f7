# Fewer index entries per purchase: the foreign keys' own indexes that no query needs go.
# - points_ledgerentry.member_id: ledger_member_idx (member_id, id DESC) starts with it and serves every lookup
#   by member (her history, the chunked jobs' member id ranges, the foreign key's checks).
# - points_pointslot.entry_id and .purchase_id: ledger entries and purchases are never deleted, and the two reads
#   by them (a transfer's received lots, a refund's lots) name the member too, so lot_member_expiry_idx serves them.
# And points_pointsaccount gets fillfactor 90: every purchase updates her account row, and PostgreSQL updates it in
# place (HOT: no new index entry, no other page) only when its page has room for the new row version.
#
# Not atomic: on PostgreSQL the indexes are dropped CONCURRENTLY (entries and lots are written meanwhile). The
# fillfactor applies to new pages; to give an existing table the room, rewrite it once (README, "Points, tiers
# and the nightly jobs").

import django.db.models.deletion
from django.db import migrations, models

from loyalty.schema_changes import drop_own_indexes, restore_own_indexes

# (table, column, the name Django gave the column's own index): the name is looked up, the one here is for going
# back.
OWN_INDEXES = [
    ("points_ledgerentry", "member_id", "points_ledgerentry_member_id_c9f91564"),
    ("points_pointslot", "entry_id", "points_pointslot_entry_id_17aca423"),
    ("points_pointslot", "purchase_id", "points_pointslot_purchase_id_1c18a511"),
]


def forwards(apps, schema_editor):
    drop_own_indexes(schema_editor, OWN_INDEXES)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE points_pointsaccount SET (fillfactor = 90)")


def backwards(apps, schema_editor):
    restore_own_indexes(schema_editor, OWN_INDEXES)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE points_pointsaccount RESET (fillfactor)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("members", "0018_purchase_without_order_no_index"),
        ("points", "0013_lot_hot_updates"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="ledger_entries",
                        to="members.member",
                    ),
                ),
                migrations.AlterField(
                    model_name="pointslot",
                    name="entry",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="lots",
                        to="points.ledgerentry",
                    ),
                ),
                migrations.AlterField(
                    model_name="pointslot",
                    name="purchase",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="points_lots",
                        to="members.purchase",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
