# Lots updated in place (HOT): no lot index names `status` or `remaining`, which the nightly expiry and every spend
# change. lot_member_expiry_idx replaces the covering spend-order index, the expiry index and the member foreign
# key's own index; the release finds pending lots by the new `pending_until` (NULL once released, so the expiry
# never writes an indexed column); points_pointslot gets fillfactor 80 so that the new row version fits on its
# page. The expiry reads lots from a watermark (ExpiryWatermark) instead of from a partial index of open lots.
#
# Not atomic: on PostgreSQL the indexes are built and dropped CONCURRENTLY, the check constraint is added NOT VALID
# and then validated (SHARE UPDATE EXCLUSIVE: lots are written meanwhile). Deploy it with the code that writes
# pending_until: older code inserting a pending lot would fail the constraint. The fillfactor applies to new pages;
# to give an existing table the room, rewrite it once (README, "Points, tiers and the nightly jobs").

import django.db.models.deletion
from django.db import migrations, models

NEW_INDEXES = [
    models.Index(fields=["member", "expires_at", "id"], name="lot_member_expiry_idx"),
    models.Index(fields=["pending_until"], name="lot_pending_until_idx", condition=models.Q(pending_until__isnull=False)),
]
OLD_INDEXES = ["lot_spend_order_cover_idx", "lot_expiry_idx", "lot_release_idx"]
PENDING_UNTIL_CHECK = models.CheckConstraint(
    condition=(
        models.Q(status="pending")
        & models.Q(pending_until__isnull=False)
        & models.Q(pending_until=models.F("available_at"))
    )
    | (~models.Q(status="pending") & models.Q(pending_until__isnull=True)),
    name="lot_pending_until_while_pending",
)


def _member_index_names(schema_editor):
    """The member foreign key's own index (its name is Django's hash)."""
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, "points_pointslot")
    return [
        name
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and info["columns"] == ["member_id"] and not info.get("primary_key")
    ]


def forwards(apps, schema_editor):
    lot = apps.get_model("points", "PointsLot")
    execute = schema_editor.execute
    # pending_until for the lots pending now (the old release index finds them).
    execute("UPDATE points_pointslot SET pending_until = available_at WHERE status = 'pending'")
    if schema_editor.connection.vendor == "postgresql":
        for index in NEW_INDEXES:
            sql = str(index.create_sql(lot, schema_editor, concurrently=True))
            execute(sql.replace("CREATE INDEX CONCURRENTLY", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
        check = schema_editor._check_sql(PENDING_UNTIL_CHECK.name, PENDING_UNTIL_CHECK._get_check_sql(lot, schema_editor))
        execute(f"ALTER TABLE points_pointslot ADD {check} NOT VALID")
        execute(f"ALTER TABLE points_pointslot VALIDATE CONSTRAINT {PENDING_UNTIL_CHECK.name}")
        for name in OLD_INDEXES + _member_index_names(schema_editor):
            execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        execute("ALTER TABLE points_pointslot SET (fillfactor = 80)")
    else:
        # SQLite adds a check constraint by rebuilding the table from the model it is given: this (historical)
        # model, with the new constraint added to it.
        lot._meta.constraints = [*lot._meta.constraints, PENDING_UNTIL_CHECK]
        schema_editor.add_constraint(lot, PENDING_UNTIL_CHECK)
        for name in OLD_INDEXES + _member_index_names(schema_editor):
            execute(f'DROP INDEX IF EXISTS "{name}"')
        for index in NEW_INDEXES:
            schema_editor.add_index(lot, index)


def backwards(apps, schema_editor):
    execute = schema_editor.execute
    postgres = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY" if postgres else ""
    execute(f"CREATE INDEX {concurrently} points_pointslot_member_id_idx ON points_pointslot (member_id)")
    execute(
        f"CREATE INDEX {concurrently} lot_spend_order_cover_idx ON points_pointslot (member_id, status, expires_at, id)"
        + (" INCLUDE (remaining)" if postgres else "")
        + " WHERE NOT (remaining = 0)"
    )
    execute(f"CREATE INDEX {concurrently} lot_expiry_idx ON points_pointslot (status, expires_at) WHERE NOT (remaining = 0)")
    execute(
        f"CREATE INDEX {concurrently} lot_release_idx ON points_pointslot (status, available_at) WHERE status = 'pending'"
    )
    for index in NEW_INDEXES:
        execute(f'DROP INDEX {concurrently} IF EXISTS "{index.name}"')
    if postgres:
        execute(f"ALTER TABLE points_pointslot DROP CONSTRAINT {PENDING_UNTIL_CHECK.name}")
        execute("ALTER TABLE points_pointslot RESET (fillfactor)")
    else:
        schema_editor.remove_constraint(apps.get_model("points", "PointsLot"), PENDING_UNTIL_CHECK)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("members", "0017_rfm_chunk_values"),
        ("points", "0012_drop_duplicate_movement_entry_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="ExpiryWatermark",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("closed_before", models.DateTimeField(blank=True, null=True, verbose_name="closed before")),
                ("reopened_from", models.DateTimeField(blank=True, null=True, verbose_name="reopened from")),
                ("run_from", models.DateTimeField(blank=True, null=True, verbose_name="run reads from")),
                ("run_started_at", models.DateTimeField(blank=True, null=True, verbose_name="run started at")),
                ("run_as_of", models.DateField(blank=True, null=True, verbose_name="run business date")),
            ],
            options={"verbose_name": "expiry watermark", "verbose_name_plural": "expiry watermarks"},
        ),
        migrations.AddField(
            model_name="pointslot",
            name="pending_until",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="pending until"),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="pointslot", name="lot_expiry_idx"),
                migrations.RemoveIndex(model_name="pointslot", name="lot_release_idx"),
                migrations.RemoveIndex(model_name="pointslot", name="lot_spend_order_cover_idx"),
                migrations.AlterField(
                    model_name="pointslot",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="points_lots",
                        to="members.member",
                    ),
                ),
                *(migrations.AddIndex(model_name="pointslot", index=index) for index in NEW_INDEXES),
                migrations.AddConstraint(model_name="pointslot", constraint=PENDING_UNTIL_CHECK),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
