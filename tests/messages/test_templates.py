"""Templates: the defaults are valid for their kinds in both languages, a template is checked when it is saved
(only the kind's variables, placeholders only, no tags), values are escaped in HTML email only, and marketers edit
them in the admin with a preview."""

from datetime import date

import pytest
from django.core.exceptions import ValidationError

from loyalty.message_templates import check_template, message_kinds, preview, render, save_message_template
from loyalty.models import AuditEntry, MessageTemplate

pytestmark = pytest.mark.django_db

KINDS = {
    "points_expiring",
    "birthday",
    "tier_up",
    "tier_down",
    "tier_downgrade_warning",
    "win_back",
    "campaign_launch",
    "redemption_confirmed",
    "stored_value_paid",
    "coupons_expiring",
}


def template(**values):
    fields = {"kind": "points_expiring", "channel": "sms", "language": "en", "body": "Hi {{ name }}"}
    return MessageTemplate(**{**fields, **values})


def refusal(**values):
    with pytest.raises(ValidationError) as refused:
        check_template(template(**values))
    return refused.value.message_dict


def test_every_kind_has_a_default_template_on_every_channel_in_chinese_and_english_inbox_and_sms_active():
    assert set(message_kinds.keys()) == KINDS
    rows = set(MessageTemplate.objects.values_list("kind", "channel", "language", "is_active"))
    expected = {
        (kind, channel, language, channel in ("inbox", "sms"))
        for kind in KINDS
        for channel in ("inbox", "sms", "wechat", "email")
        for language in ("zh-hans", "en")
    }
    assert rows == expected


def test_every_default_template_passes_its_kinds_check_and_renders_its_example_values():
    for row in MessageTemplate.objects.all():
        check_template(row)
        shown = preview(row)
        assert shown.body and "{{" not in shown.body and "{%" not in shown.body, row
        assert bool(shown.subject) == (row.channel == "email"), row


def test_the_default_texts_render_with_exact_values_in_each_language():
    sms = MessageTemplate.objects.get(kind="points_expiring", channel="sms", language="zh-hans")
    variables = {"name": "王芳", "points": 320, "date": date(2026, 12, 31), "days": 30, "balance": 1280}
    assert render(sms, variables).body == "王芳，您有 320 积分将于 2026-12-31 过期，当前可用 1280 积分，请及时使用。"
    sms.language = "en"
    sms.body = MessageTemplate.objects.get(kind="points_expiring", channel="sms", language="en").body
    assert render(sms, {**variables, "name": ""}).body == (
        "Dear member, 320 of your points expire on 2026-12-31. You have 1280 points available: use them before then."
    )


def test_a_variable_the_kind_does_not_have_is_refused_at_save_naming_the_ones_it_has():
    errors = refusal(body="Your code is {{ code }}")
    assert errors == {"body": ["Unknown variable code; this kind has: balance, date, days, member_no, name, points."]}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{% include 'admin/base.html' %}", "Only {{ variable }} placeholders are allowed, not {% include"),
        ("{% load static %}", "Template syntax error: 'static' is not a registered tag library"),
        ("{% debug %}", "Only {{ variable }} placeholders are allowed, not {% debug %}."),
        ("{% if points %}x{% endif %}", "Only {{ variable }} placeholders are allowed, not {% if points %}."),
        ("{{ name.__class__ }}", "Template syntax error: Variables and attributes may not begin with underscores"),
        ("{{ name.upper }}", "name.upper: only plain variable names are allowed."),
        ("{{ points|safe }}", "The filter safe is not allowed; allowed: date, default, floatformat, lower, upper."),
        ("{{ date|date:points }}{{ date|date:secret }}", "Unknown variable secret"),
        ("{{ points", "A placeholder is not closed: {{ points"),
    ],
)
def test_only_placeholders_of_the_kinds_variables_with_harmless_filters_are_allowed(body, error):
    messages = refusal(body=body)["body"]
    assert any(message.startswith(error) for message in messages), messages


def test_an_email_needs_a_subject_and_a_wechat_template_is_field_lines():
    assert refusal(channel="email", subject=" ") == {"subject": ["An email needs a subject."]}
    assert refusal(channel="wechat", body="Hello {{ name }}") == {
        "body": ["A WeChat template message is one `field: text` line per field (e.g. keyword1: {{ points }})."]
    }
    check_template(template(channel="wechat", body="first: Hi {{ name }}\nkeyword1: {{ points }}"))


def test_an_unknown_kind_is_refused():
    assert list(refusal(kind="lottery")) == ["kind"]


def test_values_are_escaped_in_html_email_and_kept_as_they_are_in_plain_text():
    variables = {"name": "<b>Tom & Co</b>", "points": 1, "date": date(2026, 1, 2), "days": 7, "balance": 0}
    email = template(channel="email", subject="For {{ name }}", body="<p>{{ name }}</p>")
    assert render(email, variables).body == "<p>&lt;b&gt;Tom &amp; Co&lt;/b&gt;</p>"
    assert render(template(), variables).body == "Hi <b>Tom & Co</b>"


def test_saving_a_template_checks_it_writes_it_and_audits_what_changed():
    row = MessageTemplate.objects.get(kind="win_back", channel="sms", language="en")
    row.body = "{{ name }}, come back: your stage is {{ lifecycle }}."
    save_message_template(actor="staff:marketing", template=row)
    row.refresh_from_db()
    assert (row.body, row.updated_by) == ("{{ name }}, come back: your stage is {{ lifecycle }}.", "staff:marketing")
    audit = AuditEntry.objects.get(action="message_template.changed")
    assert audit.new_values == {"body": "{{ name }}, come back: your stage is {{ lifecycle }}."}
    row.body = "{{ points }}"
    with pytest.raises(ValidationError):
        save_message_template(actor="staff:marketing", template=row)
    row.refresh_from_db()
    assert row.body == "{{ name }}, come back: your stage is {{ lifecycle }}."


def test_marketers_edit_templates_in_the_admin_with_the_variables_and_a_preview(client):
    from tests.factories import StaffUserFactory

    client.force_login(StaffUserFactory(username="mk", role="marketer"))
    row = MessageTemplate.objects.get(kind="tier_up", channel="sms", language="en")
    url = f"/admin/loyalty/messagetemplate/{row.pk}/change/"
    page = client.get(url).content.decode()
    assert "<code>{{ previous_tier }}</code>" in page
    assert "Congratulations, 王小明: you are now 金卡! You keep it at least until 2027-06-30." in page
    form = {
        "subject": "",
        "body": "You are {{ tier }} now, {{ password }}",
        "provider_template_id": "",
        "is_active": "on",
    }
    refused = client.post(url, form)
    assert refused.status_code == 200
    assert "Unknown variable password" in refused.content.decode()
    row.refresh_from_db()
    assert "password" not in row.body
    saved = client.post(url, {**form, "body": "You are {{ tier }} now, {{ name }}!"})
    assert saved.status_code == 302
    row.refresh_from_db()
    assert (row.body, row.updated_by) == ("You are {{ tier }} now, {{ name }}!", "staff:mk")


def test_the_templates_and_messages_lists_name_the_kinds_in_the_admins_language(client, settings):
    """The lists show a kind's label, in Chinese for a Chinese admin, not its code."""
    from loyalty.models import Message
    from tests.factories import StaffUserFactory

    Message.objects.create(kind="tier_up", channel="sms", recipient="+8613800138000", status="sent")
    client.force_login(StaffUserFactory(username="mk", role="marketer"))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    templates = client.get("/admin/loyalty/messagetemplate/", {"kind": "tier_up", "language": "zh-hans"})
    messages = client.get("/admin/loyalty/message/")

    assert len(templates.context["cl"].result_list) == 4  # inbox, SMS, WeChat and email
    assert templates.content.decode().count('<th class="field-shown_kind"><a href=') == 4
    assert "等级升级</a>" in templates.content.decode()
    assert '<td class="field-shown_kind">等级升级</td>' in messages.content.decode()
