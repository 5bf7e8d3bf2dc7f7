# The RFM job reads each member id range's purchases through purchase_member_time_idx; with the purchases in time
# order, that visited a heap page per purchase (the whole table, once per chunk). The covering index answers it
# from the index alone. The member foreign key's own index is dropped: the new index starts with member_id.
# The new index is built before the old ones go, so member lookups always have one.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0015_wechat_openid_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="purchase",
            index=models.Index(
                fields=["member", "occurred_at"],
                include=("id", "amount", "refunded_amount"),
                name="purchase_member_time_cover_idx",
            ),
        ),
        migrations.RemoveIndex(
            model_name="purchase",
            name="purchase_member_time_idx",
        ),
        migrations.AlterField(
            model_name="purchase",
            name="member",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="purchases",
                to="members.member",
            ),
        ),
    ]
