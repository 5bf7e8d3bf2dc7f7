"""The default templates of the stored_value_paid message (stored_value.messages), as loyalty's 0009 writes the
other kinds': every channel, Simplified Chinese and English, inbox and SMS active. Existing rows are left alone."""

from django.db import migrations

KIND = "stored_value_paid"
TEXTS = {
    "zh-hans": {
        "text": "{{ name|default:'尊敬的会员' }}，您的储值余额已支付 {{ amount }} 元（订单 {{ order_no }}），"
        "当前余额 {{ balance }} 元。",
        "wechat": "first: 储值消费成功\nkeyword1: {{ amount }} 元\nkeyword2: 订单 {{ order_no }}\nremark: "
        "{{ store|default:'' }} 当前余额 {{ balance }} 元。",
        "subject": "储值消费 {{ amount }} 元",
        "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>您的储值余额已支付 <strong>{{ amount }}</strong> 元"
        "（订单 {{ order_no }}），当前余额 {{ balance }} 元。</p>",
    },
    "en": {
        "text": "{{ name|default:'Dear member' }}, {{ amount }} was paid from your balance (order {{ order_no }}). "
        "Balance now: {{ balance }}.",
        "wechat": "first: Paid from your balance\nkeyword1: {{ amount }}\nkeyword2: order {{ order_no }}\nremark: "
        "{{ store|default:'' }} Balance now: {{ balance }}.",
        "subject": "Paid {{ amount }} from your balance",
        "email": "<p>Hello {{ name|default:'member' }},</p><p><strong>{{ amount }}</strong> was paid from your "
        "balance (order {{ order_no }}).</p><p>Balance now: {{ balance }}.</p>",
    },
}
ACTIVE_CHANNELS = ("inbox", "sms")


def create_templates(apps, schema_editor):
    MessageTemplate = apps.get_model("loyalty", "MessageTemplate")
    for language, texts in TEXTS.items():
        for channel in ("inbox", "sms", "wechat", "email"):
            MessageTemplate.objects.get_or_create(
                kind=KIND,
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
    apps.get_model("loyalty", "MessageTemplate").objects.filter(kind=KIND, updated_by="migration").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("stored_value", "0003_bonus_expiry_schedule"),
        ("loyalty", "0009_default_message_templates"),
    ]

    operations = [migrations.RunPython(create_templates, remove_templates)]
