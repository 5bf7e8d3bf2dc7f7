# movement_entry_idx indexed the same column as the entry foreign key's own index (points_lotmovement_entry_id_...):
# every movement (1.5M in a large nightly expiry) wrote both. The foreign key's index stays and serves the lookups.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("points", "0011_lot_spend_order_covering"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="lotmovement",
            name="movement_entry_idx",
        ),
    ]
