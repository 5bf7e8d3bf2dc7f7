"""The default message templates: every kind on every channel, in Simplified Chinese and in English. The inbox and
SMS ones are active; WeChat's need the template id the official account registers (and WECHAT_APP_ID), email's an
address and a mail server, so a marketer switches those on in the admin. Existing rows are left as they are."""

from django.db import migrations

D = '{{ date|date:"Y-m-d" }}'

TEXTS = {
    "points_expiring": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，您有 {{ points }} 积分将于 " + D + " 过期，当前可用 {{ balance }} 积分，"
            "请及时使用。",
            "wechat": "first: {{ name|default:'尊敬的会员' }}，您有积分即将过期\nkeyword1: {{ points }} 积分\nkeyword2: " + D
            + "\nremark: 当前可用 {{ balance }} 积分，请及时使用。",
            "subject": "您有 {{ points }} 积分将于 " + D + " 过期",
            "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>您有 <strong>{{ points }}</strong> 积分将于 " + D
            + " 过期，当前可用 {{ balance }} 积分，请及时使用。</p>",
        },
        "en": {
            "text": "{{ name|default:'Dear member' }}, {{ points }} of your points expire on " + D + ". You have "
            "{{ balance }} points available: use them before then.",
            "wechat": "first: {{ name|default:'Dear member' }}, some of your points expire soon\nkeyword1: {{ points }} "
            "points\nkeyword2: " + D + "\nremark: {{ balance }} points available. Use them before then.",
            "subject": "{{ points }} points expire on " + D,
            "email": "<p>Hello {{ name|default:'member' }},</p><p><strong>{{ points }}</strong> of your points expire on "
            + D + ". You have {{ balance }} points available: use them before then.</p>",
        },
    },
    "birthday": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，祝您生日快乐！我们为您送上 {{ points }} 生日积分，已存入您的账户。",
            "wechat": "first: {{ name|default:'尊敬的会员' }}，祝您生日快乐！\nkeyword1: 生日积分\nkeyword2: {{ points }} 积分"
            "\nremark: 积分已存入您的账户。",
            "subject": "生日快乐，{{ name|default:'尊敬的会员' }}！",
            "email": "<p>{{ name|default:'尊敬的会员' }}，祝您生日快乐！</p><p>我们为您送上 <strong>{{ points }}</strong> "
            "生日积分，已存入您的账户。</p>",
        },
        "en": {
            "text": "Happy birthday, {{ name|default:'dear member' }}! We have added {{ points }} birthday points to your "
            "account.",
            "wechat": "first: Happy birthday, {{ name|default:'dear member' }}!\nkeyword1: birthday points\nkeyword2: "
            "{{ points }} points\nremark: They are in your account.",
            "subject": "Happy birthday, {{ name|default:'dear member' }}!",
            "email": "<p>Happy birthday, {{ name|default:'dear member' }}!</p><p>We have added <strong>{{ points }}"
            "</strong> birthday points to your account.</p>",
        },
    },
    "tier_up": {
        "zh-hans": {
            "text": "恭喜{{ name|default:'您' }}升级为{{ tier }}！新等级保级至 " + D + "，尽享更多会员权益。",
            "wechat": "first: 恭喜您升级为{{ tier }}！\nkeyword1: {{ previous_tier }}\nkeyword2: {{ tier }}\nremark: 新等级保级至 "
            + D + "。",
            "subject": "恭喜您升级为{{ tier }}",
            "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>恭喜您由{{ previous_tier }}升级为<strong>{{ tier }}"
            "</strong>，新等级保级至 " + D + "。</p>",
        },
        "en": {
            "text": "Congratulations, {{ name|default:'dear member' }}: you are now {{ tier }}! You keep it at least until "
            + D + ".",
            "wechat": "first: Congratulations: you are now {{ tier }}!\nkeyword1: {{ previous_tier }}\nkeyword2: {{ tier }}"
            "\nremark: You keep it at least until " + D + ".",
            "subject": "You are now {{ tier }}",
            "email": "<p>Congratulations, {{ name|default:'dear member' }}!</p><p>You moved up from {{ previous_tier }} to "
            "<strong>{{ tier }}</strong>, and keep it at least until " + D + ".</p>",
        },
    },
    "tier_down": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，您的会员等级已由{{ previous_tier }}调整为{{ tier }}。继续消费即可重新升级。",
            "wechat": "first: 您的会员等级已调整\nkeyword1: {{ previous_tier }}\nkeyword2: {{ tier }}\nremark: 继续消费即可重新升级。",
            "subject": "您的会员等级已调整为{{ tier }}",
            "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>您的会员等级已由{{ previous_tier }}调整为<strong>"
            "{{ tier }}</strong>。继续消费即可重新升级。</p>",
        },
        "en": {
            "text": "{{ name|default:'Dear member' }}, your tier is now {{ tier }} (it was {{ previous_tier }}). Every "
            "purchase brings you closer to moving up again.",
            "wechat": "first: Your tier has changed\nkeyword1: {{ previous_tier }}\nkeyword2: {{ tier }}\nremark: Every "
            "purchase brings you closer to moving up again.",
            "subject": "Your tier is now {{ tier }}",
            "email": "<p>Hello {{ name|default:'member' }},</p><p>Your tier is now <strong>{{ tier }}</strong> (it was "
            "{{ previous_tier }}). Every purchase brings you closer to moving up again.</p>",
        },
    },
    "tier_downgrade_warning": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，您的{{ tier }}等级将于 " + D + " 复核，目前还差 {{ growth_needed }} "
            "成长值即可保级，否则将调整为{{ new_tier }}。",
            "wechat": "first: 您的会员等级即将复核\nkeyword1: {{ tier }}\nkeyword2: " + D + "\nremark: 还差 {{ growth_needed }} "
            "成长值即可保级。",
            "subject": "还差 {{ growth_needed }} 成长值即可保留{{ tier }}",
            "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>您的{{ tier }}等级将于 " + D + " 复核，目前还差 "
            "<strong>{{ growth_needed }}</strong> 成长值即可保级，否则将调整为{{ new_tier }}。</p>",
        },
        "en": {
            "text": "{{ name|default:'Dear member' }}, your {{ tier }} tier is reviewed on " + D + ": {{ growth_needed }} "
            "more growth keeps it, otherwise it becomes {{ new_tier }}.",
            "wechat": "first: Your tier is reviewed soon\nkeyword1: {{ tier }}\nkeyword2: " + D + "\nremark: "
            "{{ growth_needed }} more growth keeps it.",
            "subject": "{{ growth_needed }} more growth keeps your {{ tier }} tier",
            "email": "<p>Hello {{ name|default:'member' }},</p><p>Your {{ tier }} tier is reviewed on " + D + ": "
            "<strong>{{ growth_needed }}</strong> more growth keeps it, otherwise it becomes {{ new_tier }}.</p>",
        },
    },
    "win_back": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，好久不见！我们为您准备了回归礼遇，欢迎回来看看。",
            "wechat": "first: {{ name|default:'尊敬的会员' }}，好久不见！\nkeyword1: 回归礼遇\nkeyword2: 欢迎回来\nremark: "
            "我们为您准备了回归礼遇。",
            "subject": "{{ name|default:'尊敬的会员' }}，好久不见",
            "email": "<p>{{ name|default:'尊敬的会员' }}，好久不见！</p><p>我们为您准备了回归礼遇，欢迎回来看看。</p>",
        },
        "en": {
            "text": "{{ name|default:'Dear member' }}, we miss you! A welcome-back treat is waiting for you.",
            "wechat": "first: {{ name|default:'Dear member' }}, we miss you!\nkeyword1: welcome-back treat\nkeyword2: come "
            "and see\nremark: A treat is waiting for you.",
            "subject": "We miss you, {{ name|default:'dear member' }}",
            "email": "<p>{{ name|default:'Dear member' }}, we miss you!</p><p>A welcome-back treat is waiting for you.</p>",
        },
    },
    "campaign_launch": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，「{{ campaign }}」活动于 {{ starts|date:'Y-m-d' }} 开始，欢迎参与！",
            "wechat": "first: 新活动上线\nkeyword1: {{ campaign }}\nkeyword2: {{ starts|date:'Y-m-d' }}\nremark: 欢迎参与！",
            "subject": "「{{ campaign }}」活动开始啦",
            "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>「{{ campaign }}」活动于 {{ starts|date:'Y-m-d' }} "
            "开始，欢迎参与！</p>",
        },
        "en": {
            "text": "{{ name|default:'Dear member' }}, {{ campaign }} starts on {{ starts|date:'Y-m-d' }}. Join in!",
            "wechat": "first: A new campaign\nkeyword1: {{ campaign }}\nkeyword2: {{ starts|date:'Y-m-d' }}\nremark: "
            "Join in!",
            "subject": "{{ campaign }} starts on {{ starts|date:'Y-m-d' }}",
            "email": "<p>Hello {{ name|default:'member' }},</p><p><strong>{{ campaign }}</strong> starts on "
            "{{ starts|date:'Y-m-d' }}. Join in!</p>",
        },
    },
    "redemption_confirmed": {
        "zh-hans": {
            "text": "{{ name|default:'尊敬的会员' }}，您已使用 {{ points }} 积分兑换{{ reward }} × {{ quantity }}。"
            "{{ code|default:'' }} 剩余可用 {{ balance }} 积分。",
            "wechat": "first: 积分兑换成功\nkeyword1: {{ reward }} × {{ quantity }}\nkeyword2: {{ points }} 积分\nremark: "
            "{{ code|default:'' }} 剩余可用 {{ balance }} 积分。",
            "subject": "兑换成功：{{ reward }}",
            "email": "<p>{{ name|default:'尊敬的会员' }}，您好：</p><p>您已使用 {{ points }} 积分兑换{{ reward }} × "
            "{{ quantity }}。{{ code|default:'' }}</p><p>剩余可用 {{ balance }} 积分。</p>",
        },
        "en": {
            "text": "{{ name|default:'Dear member' }}, you redeemed {{ quantity }} × {{ reward }} for {{ points }} points. "
            "{{ code|default:'' }} {{ balance }} points left.",
            "wechat": "first: Redeemed\nkeyword1: {{ quantity }} × {{ reward }}\nkeyword2: {{ points }} points\nremark: "
            "{{ code|default:'' }} {{ balance }} points left.",
            "subject": "Redeemed: {{ reward }}",
            "email": "<p>Hello {{ name|default:'member' }},</p><p>You redeemed {{ quantity }} × {{ reward }} for "
            "{{ points }} points. {{ code|default:'' }}</p><p>{{ balance }} points left.</p>",
        },
    },
}
ACTIVE_CHANNELS = ("inbox", "sms")


def rows():
    for kind, languages in TEXTS.items():
        for language, texts in languages.items():
            for channel in ("inbox", "sms", "wechat", "email"):
                body = texts["text"] if channel in ("inbox", "sms") else texts[channel]
                subject = texts["subject"] if channel == "email" else ""
                yield kind, channel, language, subject, body, channel in ACTIVE_CHANNELS


def create_templates(apps, schema_editor):
    MessageTemplate = apps.get_model("loyalty", "MessageTemplate")
    for kind, channel, language, subject, body, active in rows():
        MessageTemplate.objects.get_or_create(
            kind=kind,
            channel=channel,
            language=language,
            defaults={"subject": subject, "body": body, "is_active": active, "updated_by": "migration"},
        )


def remove_templates(apps, schema_editor):
    apps.get_model("loyalty", "MessageTemplate").objects.filter(updated_by="migration").delete()


class Migration(migrations.Migration):
    dependencies = [("loyalty", "0008_message_templates")]

    operations = [migrations.RunPython(create_templates, remove_templates)]
