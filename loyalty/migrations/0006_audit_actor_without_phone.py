"""Audit rows of logins that registered a member named her phone (`member-login:+8613800138000`); they name the
member now, `member:<id>`, as members.services.login does since (issue 9, finding 8)."""

from django.db import migrations
from django.db.models import CharField, F, Value
from django.db.models.functions import Concat


def name_the_member_not_her_phone(apps, schema_editor):
    AuditEntry = apps.get_model("loyalty", "AuditEntry")
    AuditEntry.objects.filter(actor__startswith="member-login:", target_type="members.member").update(
        actor=Concat(Value("member:"), F("target_id"), output_field=CharField())
    )


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0005_apiclient_all_stores")]

    operations = [migrations.RunPython(name_the_member_not_her_phone, migrations.RunPython.noop)]
