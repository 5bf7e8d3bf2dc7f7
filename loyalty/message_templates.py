"""Kinds of messages to members and the templates marketers write for them.

A kind (points_expiring, birthday, tier_up, ...) is registered by the app that owns what it is about, in its
AppConfig.ready(): whether it is marketing (sent only on the channels the member consented to) or transactional
(always), which variables its templates may use (a fixed whitelist, with example values for the preview), how
often a member may get it, and whether it waits out the quiet hours. The platform knows no kind by itself.

Templates are Django templates reduced to placeholders: `{{ variable }}` and `{{ variable|filter:"arg" }}` with a
few harmless filters, nothing else (no tags: no {% include %}, {% load %} or {% debug %}, no attribute lookups), and
only the kind's variables. A template that breaks a rule is refused when it is saved, with the reason; so a
template that was saved renders. Email bodies are HTML and their values are escaped; the other channels are plain
text.
"""

import re
from dataclasses import dataclass, field
from datetime import date
from html import unescape
from typing import Any

from django.core.exceptions import ValidationError
from django.template import Context, Engine, TemplateSyntaxError, defaultfilters
from django.template.base import FilterExpression, TextNode, Variable, VariableNode
from django.utils import translation
from django.utils.formats import localize
from django.utils.html import conditional_escape, strip_tags
from django.utils.safestring import SafeData, mark_safe
from django.utils.timezone import template_localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loyalty.registry import ExtensionPoint

COMMON_VARIABLES = {"name": gettext_lazy("the member's name"), "member_no": gettext_lazy("her card number")}
COMMON_SAMPLE = {"name": "王小明", "member_no": "M00012345"}
ALLOWED_FILTERS = frozenset({"date", "default", "floatformat", "lower", "upper"})
WECHAT_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*:(.*)$")


@dataclass(frozen=True)
class MessageKind:
    """A kind of message. `frequency_days`: at most one per member and channel in that many days (None: the
    MESSAGE_FREQUENCY_CAP_DAYS setting; 0: no period cap, only one per thing it is about, its dedupe key, as for
    the expiry of one lot date or one redemption). `quiet_hours`: False for a message the member waits for (a
    redemption at the counter)."""

    code: str
    label: str
    marketing: bool
    variables: dict[str, str]
    sample: dict[str, Any] = field(default_factory=dict)
    frequency_days: int | None = None
    quiet_hours: bool = True

    @property
    def all_variables(self):
        return {**COMMON_VARIABLES, **self.variables}


message_kinds = ExtensionPoint(
    "message_kinds", "MessageKind by code: registered by the app that owns the kind, in AppConfig.ready()", keyed=True
)


def register_message_kind(kind):
    message_kinds.register(kind, key=kind.code)
    return kind


def kind_for(code):
    kind = message_kinds.get(code)
    if kind is None:
        raise LookupError(f"Unknown message kind {code!r}; kinds: {', '.join(message_kinds.keys())}")
    return kind


_PLAIN = Engine(autoescape=False)
_HTML = Engine(autoescape=True)


def _engine(channel):
    return _HTML if channel == "email" else _PLAIN


def _names_in(expression: FilterExpression):
    """Yield (what, name) for the variable and filters of one placeholder: ("variable", "points"), ("filter",
    "date"), ("lookup", "member.phone") for a dotted or private name."""
    variables = [expression.var]
    for function, arguments in expression.filters:
        yield "filter", getattr(function, "_filter_name", function.__name__)
        variables += [argument for is_variable, argument in arguments if is_variable]
    for variable in variables:
        if isinstance(variable, Variable) and variable.lookups is not None:
            name = ".".join(variable.lookups)
            yield ("lookup" if len(variable.lookups) > 1 or name.startswith("_") else "variable"), name


def template_errors(text, *, channel, allowed):
    """The reasons `text` may not be used as a template with the variables `allowed` (empty: it may)."""
    try:
        compiled = _engine(channel).from_string(text)
    except TemplateSyntaxError as error:
        return [_("Template syntax error: %(error)s") % {"error": error}]
    errors = []
    for node in compiled.nodelist:
        if isinstance(node, TextNode):
            if "{{" in node.s or "{%" in node.s:
                errors.append(_("A placeholder is not closed: %(text)s") % {"text": node.s.strip()[:40]})
            continue
        if not isinstance(node, VariableNode):
            token = getattr(node, "token", None)
            tag = token.contents if token is not None else type(node).__name__
            errors.append(_("Only {{ variable }} placeholders are allowed, not {%% %(tag)s %%}.") % {"tag": tag})
            continue
        for what, name in _names_in(node.filter_expression):
            if what == "filter" and name not in ALLOWED_FILTERS:
                errors.append(
                    _("The filter %(name)s is not allowed; allowed: %(allowed)s.")
                    % {"name": name, "allowed": ", ".join(sorted(ALLOWED_FILTERS))}
                )
            elif what == "lookup":
                errors.append(_("%(name)s: only plain variable names are allowed.") % {"name": name})
            elif what == "variable" and name not in allowed:
                errors.append(
                    _("Unknown variable %(name)s; this kind has: %(allowed)s.")
                    % {"name": name, "allowed": ", ".join(sorted(allowed))}
                )
    return errors


def check_template(template):
    """Raise ValidationError (by field) unless `template` (a MessageTemplate) can be saved: a registered kind, only
    its variables and plain placeholders, a subject for email, `field: text` lines for WeChat."""
    kind = message_kinds.get(template.kind)
    if kind is None:
        raise ValidationError(
            {"kind": _("Unknown kind; kinds: %(kinds)s.") % {"kinds": ", ".join(message_kinds.keys())}}
        )
    errors = {}
    allowed = kind.all_variables
    for name in ("subject", "body"):
        found = template_errors(getattr(template, name) or "", channel=template.channel, allowed=allowed)
        if found:
            errors[name] = found
    if template.channel == "email" and not template.subject.strip():
        errors.setdefault("subject", []).append(_("An email needs a subject."))
    if template.channel == "wechat" and "body" not in errors:
        lines = [line for line in template.body.splitlines() if line.strip()]
        bad = [line for line in lines if not WECHAT_LINE.match(line)]
        if bad or not lines:
            errors["body"] = [
                _("A WeChat template message is one `field: text` line per field (e.g. keyword1: {{ points }}).")
            ]
    if errors:
        raise ValidationError(errors)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _fast_parts(compiled):
    """The template as a list of parts for `_render_fast`, or None when it has anything but text and `{{ name }}` /
    `{{ name|filter:"literal" }}` placeholders (Django's engine renders those). A part is a text, or (name, filters)
    with each filter as (function, literal arguments marked safe, expects_localtime, needs_autoescape, is_safe), as
    django.template.base.FilterExpression.resolve would call it."""
    parts = []
    for node in compiled.nodelist:
        if type(node) is TextNode:
            parts.append(node.s)
            continue
        if type(node) is not VariableNode:
            return None
        expression = node.filter_expression
        variable = expression.var
        if (
            not isinstance(variable, Variable)
            or variable.lookups is None
            or len(variable.lookups) != 1
            or variable.translate
            or variable.message_context
        ):
            return None
        filters = []
        for function, arguments in expression.filters:
            values = []
            for is_variable, argument in arguments:
                if not is_variable:
                    values.append(mark_safe(argument))  # noqa: S308 - a literal of the template, as the engine marks it
                elif argument.lookups is None and not argument.translate and not argument.message_context:
                    values.append(argument.literal)  # a number: Variable.resolve gives its literal
                else:
                    return None
            filters.append(
                (
                    function,
                    tuple(values),
                    getattr(function, "expects_localtime", False),
                    getattr(function, "needs_autoescape", False),
                    getattr(function, "is_safe", False),
                )
            )
        parts.append((variable.lookups[0], tuple(filters)))
    return parts


_MISSING = object()
# Values whose text depends only on themselves, the filters, the language and the settings (not on the time zone,
# not mutable): one CompiledTemplate formats each such value once (a job renders the same dates and numbers for
# thousands of members).
_MEMO_TYPES = frozenset({str, int, bool, date, type(None)})
_MEMO_LIMIT = 50_000
# Filters whose answer for a text does not depend on the language (localize() leaves a text as it is, too).
_PLAIN_TEXT_FILTERS = frozenset({defaultfilters.default, defaultfilters.lower, defaultfilters.upper})


def _format_value(value, filters, autoescape):
    """One placeholder's text: the filters applied and the value rendered as FilterExpression.resolve and
    render_value_in_context do it (with the template's language active)."""
    for function, arguments, expects_localtime, needs_autoescape, is_safe in filters:
        if expects_localtime:
            value = template_localtime(value, None)
        new = function(value, *arguments, autoescape=autoescape) if needs_autoescape else function(value, *arguments)
        # a safe filter keeps a safe value safe, as the engine does
        value = mark_safe(new) if is_safe and isinstance(value, SafeData) else new  # noqa: S308
    value = localize(template_localtime(value, None), None)
    if autoescape:
        return conditional_escape(value if issubclass(type(value), str) else str(value))
    return str(value)


class CompiledTemplate:
    """A template compiled once and rendered for many members (a job renders thousands per chunk).

    Templates of text and plain placeholders (all the default ones) render without Django's engine: the parts are
    joined with each value formatted, filtered and escaped by the very functions the engine uses (a differential
    test holds the two equal). Anything else, or a variable not given, goes through the engine."""

    def __init__(self, template):
        self.template = template
        self.engine = _engine(template.channel)
        self.subject = self.engine.from_string(template.subject) if template.subject else None
        self.body = self.engine.from_string(template.body)
        self._subject_parts = _fast_parts(self.subject) if self.subject else []
        self._body_parts = _fast_parts(self.body)
        self._memo = {}

    def render(self, variables):
        """Subject and body with `variables`, in the template's language (dates and numbers formatted for it).
        Email: the body is HTML with the values escaped."""
        if self._subject_parts is not None and self._body_parts is not None:
            subject = self._render_fast(self._subject_parts, variables)
            body = self._render_fast(self._body_parts, variables) if subject is not None else None
            if body is not None:
                return Rendered(subject=subject.strip(), body=body.strip())
        return self.render_with_engine(variables)

    def _render_fast(self, parts, variables):
        """What Django's engine renders for these parts (see _fast_parts) with a Context of `variables`, or None
        when a placeholder names a variable that is not given or is callable (the engine's lookup rules then
        apply)."""
        out = []
        autoescape, memo = self.engine.autoescape, self._memo
        for part in parts:
            if type(part) is str:
                out.append(part)
                continue
            name, filters = part
            value = variables.get(name, _MISSING)
            if value is _MISSING or callable(value):
                return None
            kind = type(value)
            if kind is str and all(f[0] in _PLAIN_TEXT_FILTERS for f in filters):
                out.append(_format_value(value, filters, autoescape))  # a text the language does not change
                continue
            key = (filters, kind, value) if kind in _MEMO_TYPES else None
            text = memo.get(key) if key is not None else None
            if text is None:
                with translation.override(self.template.language):
                    text = _format_value(value, filters, autoescape)
                if key is not None:
                    if len(memo) >= _MEMO_LIMIT:
                        memo.clear()
                    memo[key] = text
            out.append(text)
        return "".join(out)

    def render_with_engine(self, variables):
        """The render of Django's template engine (the reference the fast path is tested against)."""
        with translation.override(self.template.language):
            context = Context(variables, autoescape=self.engine.autoescape)
            subject = self.subject.render(context).strip() if self.subject else ""
            return Rendered(subject=subject, body=self.body.render(context).strip())


_compiled = {}
COMPILED_KEPT = 256  # templates compiled and kept per process (a few dozen exist: kinds x channels x languages)


def compiled_template(template):
    """The CompiledTemplate of `template`, compiled once per process for the same text: keyed by what compiling
    and rendering read (channel, language, subject, body), so a changed template is compiled afresh and never
    rendered from an old compile. A redemption's or an upgrade's message compiled its templates on every request
    (about a tenth of a redemption's CPU, issue 14)."""
    key = (template.pk, template.channel, template.language, template.subject, template.body)
    found = _compiled.get(key)
    if found is None:
        found = CompiledTemplate(template)
        if len(_compiled) >= COMPILED_KEPT:
            _compiled.clear()
        _compiled[key] = found
    return found


def render(template, variables):
    return CompiledTemplate(template).render(variables)


def preview(template):
    """The template rendered with its kind's example values (the admin's preview)."""
    kind = kind_for(template.kind)
    return render(template, {**COMMON_SAMPLE, **kind.sample})


def plain_text(html):
    """The text part of an HTML email: paragraphs and line breaks as new lines, the tags gone."""
    return unescape(strip_tags(re.sub(r"(?i)</p>|<br\s*/?>", "\n", html))).strip()


def wechat_fields(body):
    """A rendered WeChat body as template message data: {"first": {"value": "..."}, "keyword1": ...}."""
    data = {}
    for line in body.splitlines():
        match = WECHAT_LINE.match(line)
        if match:
            data[match[1]] = {"value": match[2].strip()}
    return data


TEMPLATE_FIELDS = ["kind", "channel", "language", "subject", "body", "provider_template_id", "is_active"]


def save_message_template(*, actor, template):
    """Save a marketer's template (new or changed): checked first (ValidationError by field, nothing saved), then
    written with an audit row of what changed. Members get the new text from the next message on."""
    from django.db import transaction

    from loyalty.audit import record_audit
    from loyalty.models import MessageTemplate

    template.full_clean()
    with transaction.atomic(durable=True):
        before = MessageTemplate.objects.select_for_update().filter(pk=template.pk).first() if template.pk else None
        old = {name: getattr(before, name) for name in TEMPLATE_FIELDS} if before else None
        new = {name: getattr(template, name) for name in TEMPLATE_FIELDS}
        if old is not None:
            changed = [name for name in TEMPLATE_FIELDS if old[name] != new[name]]
            old, new = {name: old[name] for name in changed}, {name: new[name] for name in changed}
        template.updated_by = actor
        template.save()
        if new:
            action = "message_template.changed" if before else "message_template.added"
            record_audit(actor=actor, action=action, target=template, old=old, new=new)
    return template
