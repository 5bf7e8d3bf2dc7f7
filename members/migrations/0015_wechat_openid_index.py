"""An index on the WeChat openid alone, so that the admin search (members.admin.wechat_member_ids) and the API's
?wechat_openid= without an app id read a few index entries instead of every identity. On PostgreSQL built
CONCURRENTLY, so a large table stays writable meanwhile (hence not atomic)."""

from django.db import migrations, models

INDEX = models.Index(fields=["openid"], name="wechat_openid_idx")


def create_index(apps, schema_editor):
    model = apps.get_model("members", "WechatIdentity")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX.name} ON {model._meta.db_table} (openid)"
        )
    else:
        schema_editor.add_index(model, INDEX)


def drop_index(apps, schema_editor):
    model = apps.get_model("members", "WechatIdentity")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX.name}")
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("members", "0014_member_phone_reversed_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_index, drop_index)],
            state_operations=[migrations.AddIndex(model_name="wechatidentity", index=INDEX)],
        )
    ]
