"""Ledger rows are append-only in the database too (PostgreSQL refuses UPDATE and DELETE on them), and the
default points policy and earning rules of SPEC §2 exist from the start, for marketers to edit."""

from decimal import Decimal

from django.db import migrations

APPEND_ONLY_TABLES = ("points_ledgerentry", "points_lotmovement")

TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION points_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
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
            "FOR EACH ROW EXECUTE FUNCTION points_refuse_change()"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in APPEND_ONLY_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS points_refuse_change()")


DEFAULT_RULES = [
    {"channel": "purchase", "name": "Purchase: 1 point per 1 CNY", "points_per_unit": Decimal("1"), "pending_days": 7},
    {"channel": "sign_in", "name": "Daily sign-in", "points": 5, "streak_days": 7, "streak_bonus": 20},
    {"channel": "share", "name": "Share", "points": 2, "daily_limit": 3},
    {"channel": "review", "name": "Review of an order", "points": 10},
    {"channel": "referral", "name": "Referral (first purchase of the referee)", "points": 100},
    {"channel": "birthday", "name": "Birthday month bonus", "points": 50},
]


def create_defaults(apps, schema_editor):
    from datetime import datetime, timezone

    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    PointsPolicy = apps.get_model("points", "PointsPolicy")
    EarningRule = apps.get_model("points", "EarningRule")
    if not PointsPolicy.objects.exists():
        PointsPolicy.objects.create(valid_from=start, created_by="migration")
    if not EarningRule.objects.exists():
        for rule in DEFAULT_RULES:
            EarningRule.objects.create(valid_from=start, created_by="migration", **rule)


class Migration(migrations.Migration):
    dependencies = [("points", "0001_initial")]

    operations = [
        migrations.RunPython(create_triggers, drop_triggers),
        migrations.RunPython(create_defaults, migrations.RunPython.noop),
    ]
