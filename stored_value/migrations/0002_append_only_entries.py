"""Stored-value entries and movements are append-only in the database too: PostgreSQL refuses UPDATE and DELETE on
them (as on the points ledger), so no code path, raw SQL included, can rewrite the ledger."""

from django.db import migrations

APPEND_ONLY_TABLES = ("stored_value_storedvalueentry", "stored_value_storedvaluemovement")

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION stored_value_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = TG_TABLE_NAME || ' rows are append-only: add a correcting entry instead';
END $$;
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(TRIGGER_FUNCTION)
    for table in APPEND_ONLY_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION stored_value_refuse_change()"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in APPEND_ONLY_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS stored_value_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("stored_value", "0001_stored_value_accounts_ledger_rules")]

    operations = [migrations.RunPython(create_triggers, drop_triggers)]
