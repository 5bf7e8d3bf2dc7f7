"""loyalty.message_templates.compiled_template keeps a template's compile per process, keyed by its text: the same
text is compiled once, a changed text (or language, or channel) is compiled afresh and renders the new text."""

from loyalty.message_templates import CompiledTemplate, compiled_template
from loyalty.models import MessageTemplate


def _template(body, *, language="en", channel="sms", subject=""):
    return MessageTemplate(pk=7, kind="points_expiring", channel=channel, language=language, subject=subject, body=body)


def test_the_same_text_is_compiled_once_and_renders_as_a_fresh_compile():
    first = compiled_template(_template("Hi {{ name }}, {{ points }} points"))
    again = compiled_template(_template("Hi {{ name }}, {{ points }} points"))
    assert again is first
    variables = {"name": "Li", "points": 1200}
    fresh = CompiledTemplate(_template("Hi {{ name }}, {{ points }} points"))
    assert again.render(variables) == fresh.render(variables)


def test_a_changed_template_is_compiled_afresh():
    old = compiled_template(_template("Old {{ name }}"))
    new = compiled_template(_template("New {{ name }}"))
    assert new is not old
    assert new.render({"name": "Li"}).body == "New Li"
    chinese = compiled_template(_template("New {{ name }}", language="zh-hans"))
    assert chinese is not new and chinese.template.language == "zh-hans"
    email = compiled_template(_template("New {{ name }}", channel="email", subject="S"))
    assert email is not new and email.render({"name": "<b>"}).body == "New &lt;b&gt;"
