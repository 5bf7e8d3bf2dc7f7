"""The default templates of the coupons_expiring reminder, in Simplified Chinese and in English, like
loyalty 0009's: inbox and SMS active, WeChat and email for a marketer to switch on. Existing rows stay."""

from django.db import migrations

D = '{{ date|date:"Y-m-d" }}'
TEXTS = {
    "zh-hans": {
        "text": "{{ name|default:'尊敬的会员' }}，您有 {{ count }} 张优惠券将于 " + D + " 到期，请及时使用。",
        "wechat": "first: 您有优惠券即将到期\nkeyword1: {{ count }} 张\nkeyword2: " + D + "\nremark: 请及时使用。",
        "subject": "您有 {{ count }} 张优惠券将于 " + D + " 到期",
        "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>您有 <strong>{{ count }}</strong> 张优惠券将于 " + D
        + " 到期，请及时使用。</p>",
    },
    "en": {
        "text": "{{ name|default:'Dear member' }}, {{ count }} of your coupons expire on " + D + ": use them before then.",
        "wechat": "first: Coupons expire soon\nkeyword1: {{ count }}\nkeyword2: " + D + "\nremark: Use them before then.",
        "subject": "{{ count }} coupons expire on " + D,
        "email": "<p>Hello {{ name|default:'member' }},</p><p><strong>{{ count }}</strong> of your coupons expire on "
        + D + ": use them before then.</p>",
    },
}
ACTIVE_CHANNELS = ("inbox", "sms")


def create_templates(apps, schema_editor):
    MessageTemplate = apps.get_model("loyalty", "MessageTemplate")
    for language, texts in TEXTS.items():
        for channel in ("inbox", "sms", "wechat", "email"):
            MessageTemplate.objects.get_or_create(
                kind="coupons_expiring",
                channel=channel,
                language=language,
                defaults={
                    "subject": texts["subject"] if channel == "email" else "",
                    "body": texts["text"] if channel in ("inbox", "sms") else texts[channel],
                    "is_active": channel in ACTIVE_CHANNELS,
                    "updated_by": "migration",
                },
            )


def remove_templates(apps, schema_editor):
    apps.get_model("loyalty", "MessageTemplate").objects.filter(kind="coupons_expiring", updated_by="migration").delete()


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0006_coupon_batches"), ("loyalty", "0009_default_message_templates")]

    operations = [migrations.RunPython(create_templates, remove_templates)]
