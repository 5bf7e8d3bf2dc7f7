# Fewer index entries per growth entry (one is written with every purchase and points event):
# - policy_id's own index goes: growth policies are versions, never deleted, and nothing reads entries by policy.
# - merge_id's own index becomes growth_merge_idx, partial (WHERE merge_id IS NOT NULL): merge is NULL on every
#   entry but a merge's mirrors, and a lookup of one merge's entries (merge_id = %s) implies the condition.
# And tiers_membertier gets fillfactor 90: a purchase that changes her window growth updates her tier row, in
# place (HOT: no new entries in its three indexes) only when its page has room for the new row version.
#
# Not atomic: on PostgreSQL the indexes are built and dropped CONCURRENTLY (entries are written meanwhile). The
# fillfactor applies to new pages; to give an existing table the room, rewrite it once (README, "Points, tiers and
# the nightly jobs").

import django.db.models.deletion
from django.db import migrations, models

from loyalty.schema_changes import drop_own_indexes, restore_own_indexes

MERGE_INDEX = models.Index(fields=["merge"], name="growth_merge_idx", condition=models.Q(merge__isnull=False))
# (table, column, the name Django gave the column's own index): the name is looked up, the one here is for going
# back.
TABLE = "tiers_growthentry"
OWN_INDEXES = [
    (TABLE, "merge_id", "tiers_growthentry_merge_id_28f714ff"),
    (TABLE, "policy_id", "tiers_growthentry_policy_id_7bfc6c08"),
]


def forwards(apps, schema_editor):
    entry = apps.get_model("tiers", "GrowthEntry")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        sql = str(MERGE_INDEX.create_sql(entry, schema_editor, concurrently=True))
        schema_editor.execute(sql.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
    else:
        schema_editor.add_index(entry, MERGE_INDEX)
    drop_own_indexes(schema_editor, OWN_INDEXES)
    if postgres:
        schema_editor.execute("ALTER TABLE tiers_membertier SET (fillfactor = 90)")


def backwards(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY" if postgres else ""
    restore_own_indexes(schema_editor, OWN_INDEXES)
    schema_editor.execute(f'DROP INDEX {concurrently} IF EXISTS "{MERGE_INDEX.name}"')
    if postgres:
        schema_editor.execute("ALTER TABLE tiers_membertier RESET (fillfactor)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("members", "0018_purchase_without_order_no_index"),
        ("tiers", "0004_growth_member_time_covering"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="growthentry",
                    name="merge",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text="Set on the mirror entries of a merge: the duplicate's entry negated on her, and "
                        "copied (same kind, reference and date) on the survivor.",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="growth_entries",
                        to="members.membermerge",
                    ),
                ),
                migrations.AlterField(
                    model_name="growthentry",
                    name="policy",
                    field=models.ForeignKey(
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="tiers.growthpolicy",
                    ),
                ),
                migrations.AddIndex(model_name="growthentry", index=MERGE_INDEX),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
