"""The fast path of CompiledTemplate (text and plain placeholders joined without Django's engine) renders exactly
what the engine renders: every default template with many values, and generated templates with the allowed filters,
awkward values (HTML, empty, None, negative and large numbers, dates, datetimes, decimals, lazy translations) in both
languages and both escaping modes. Templates the fast path does not take (tags, dotted names, missing variables) go
through the engine."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils.translation import gettext_lazy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.message_templates import CompiledTemplate, message_kinds
from loyalty.models import MessageTemplate

NAMES = ["name", "member_no", "points", "date", "balance", "tier", "code", "starts", "days"]
TEXT = st.text(alphabet=st.sampled_from(list("ab <>&'\"\n:，会员é") + ["{", "}", "%"]), max_size=12).filter(
    lambda text: "{{" not in text and "{%" not in text and "{#" not in text and not text.endswith("{")
)
LITERAL = st.text(alphabet=st.sampled_from(list("ab <>&尊敬的会员Y-m-dHis")), max_size=8)
FILTERS = st.one_of(
    st.just(""),
    st.sampled_from(["|lower", "|upper", '|date:"Y-m-d"', "|date:'Y-m-d H:i'", "|date", "|floatformat"]),
    st.sampled_from(["|floatformat:2", '|floatformat:"-1"', "|floatformat:'0'"]),
    LITERAL.map(lambda text: f"|default:'{text}'"),
    LITERAL.map(lambda text: f'|default:"{text}"|upper'),
)
PLACEHOLDER = st.tuples(st.sampled_from(NAMES), FILTERS, st.sampled_from(["{{ %s%s }}", "{{%s%s}}"])).map(
    lambda parts: parts[2] % (parts[0], parts[1])
)
TEMPLATE = st.lists(st.one_of(TEXT, PLACEHOLDER), max_size=8).map("".join)
SHANGHAI = ZoneInfo("Asia/Shanghai")
VALUE = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list("ab <>&'\"王芳 ")), max_size=8),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(SHANGHAI)),
    st.decimals(min_value=-1000, max_value=1000, places=2),
    st.just(gettext_lazy("dormant")),
    st.booleans(),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
VARIABLES = st.dictionaries(st.sampled_from(NAMES), VALUE)


def outcome(render, variables):
    """What a render gives: its text, or the type of what it raised (a date format with hours for a date raises
    in both)."""
    try:
        return render(variables)
    except Exception as error:  # noqa: BLE001 - compared, not handled
        return type(error)


def compiled(subject, body, channel, language):
    return CompiledTemplate(
        MessageTemplate(kind="points_expiring", channel=channel, language=language, subject=subject, body=body)
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=TEMPLATE,
    body=TEMPLATE,
    channel=st.sampled_from(["sms", "email", "inbox", "wechat"]),
    language=st.sampled_from(["en", "zh-hans"]),
    many=st.lists(VARIABLES, min_size=1, max_size=4),
)
def test_generated_templates_render_as_django_renders_them(subject, body, channel, language, many):
    template = compiled(subject, body, channel, language)
    assert template._body_parts is not None  # the generated ones are all for the fast path
    for variables in many + many:  # each value formatted once per template, then remembered
        assert outcome(template.render, variables) == outcome(template.render_with_engine, variables)


@pytest.mark.django_db
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_default_template_renders_as_django_renders_it(data):
    for row in MessageTemplate.objects.order_by("pk"):
        template = CompiledTemplate(row)
        assert template._body_parts is not None and template._subject_parts is not None, row
        names = list(message_kinds[row.kind].all_variables)
        variables = data.draw(st.fixed_dictionaries({}, optional={name: VALUE for name in names}))
        assert outcome(template.render, variables) == outcome(template.render_with_engine, variables), row


@pytest.mark.parametrize(
    "body",
    [
        "{% if points %}yes{% endif %}",
        "{{ member.name }}",
        "{{ 'literal' }}",
        "{{ points|default:name }}",
    ],
)
def test_templates_beyond_plain_placeholders_go_through_the_engine(body):
    template = compiled("", body, "sms", "en")
    assert template._body_parts is None
    variables = {"points": 5, "name": "<b>", "member": {"name": "x"}}
    assert template.render(variables) == template.render_with_engine(variables)


def test_a_variable_not_given_or_callable_goes_through_the_engine():
    template = compiled("{{ name|default:'member' }}", "{{ points }} {{ dicts }}", "email", "en")
    for variables in ({"points": 1}, {"name": "A", "points": lambda: "<called>", "dicts": 3}):
        assert template.render(variables) == template.render_with_engine(variables)
    assert template.render({"name": "A&B", "points": 1, "dicts": 2}).body == "1 2"
    assert template.render({"name": "A&B", "points": 1, "dicts": 2}).subject == "A&amp;B"
