"""The default ladder and growth policy of SPEC §3, and growth entries append-only in PostgreSQL too."""

from decimal import Decimal

from django.db import migrations

LADDER = [
    # code, name, rank, entry, retention, multiplier, birthday bonus, discount, free shipping
    ("regular", "普通会员", 0, 0, 0, "1.00", 0, "1.00", False),
    ("silver", "银卡", 1, 1000, 800, "1.20", 20, "0.98", False),
    ("gold", "金卡", 2, 5000, 4000, "1.50", 50, "0.95", True),
    ("diamond", "钻石", 3, 20000, 16000, "2.00", 100, "0.90", True),
]


def create_ladder(apps, schema_editor):
    from datetime import datetime, timezone

    Tier = apps.get_model("tiers", "Tier")
    GrowthPolicy = apps.get_model("tiers", "GrowthPolicy")
    if not Tier.objects.exists():
        for code, name, rank, entry, retention, multiplier, birthday, discount, shipping in LADDER:
            Tier.objects.create(code=code, name=name, rank=rank, entry_threshold=entry,
                                retention_threshold=retention, points_multiplier=Decimal(multiplier),
                                birthday_bonus=birthday, discount_rate=Decimal(discount), free_shipping=shipping)
    if not GrowthPolicy.objects.exists():
        GrowthPolicy.objects.create(name="Default (fixed weights)", created_by="migration",
                                    valid_from=datetime(2000, 1, 1, tzinfo=timezone.utc))


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE TRIGGER tiers_growthentry_append_only BEFORE UPDATE OR DELETE ON tiers_growthentry "
            "FOR EACH ROW EXECUTE FUNCTION points_refuse_change()"
        )


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS tiers_growthentry_append_only ON tiers_growthentry")


class Migration(migrations.Migration):
    dependencies = [("tiers", "0001_initial"), ("points", "0002_append_only_and_defaults")]

    operations = [
        migrations.RunPython(create_ladder, migrations.RunPython.noop),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
