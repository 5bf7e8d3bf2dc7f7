"""Form fields for configuration stored as JSON lists (a reward's eligible tiers, a rule's excluded categories, a
coupon's stores and categories), so a marketer ticks boxes or types words instead of writing JSON. Each cleans into
the list the service and the model expect, and compares with the saved list (ConfigurationAdmin.changed_values
asks `has_changed`), so an untouched field is no change."""

import json
import re

from django import forms
from django.utils.translation import gettext_lazy as _

SEPARATORS = re.compile(r"[,，;；\n]+")  # commas and semicolons, also the full-width ones of a Chinese keyboard


def json_list(value):
    """A list pasted or posted as JSON ("[\"coffee\"]", as these fields were typed before): the list; else None."""
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip().startswith("["):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return [str(item) for item in parsed] if isinstance(parsed, list) else None


class WordListField(forms.Field):
    """Words separated by commas (or semicolons, or one per line), e.g. product categories: cleaned into a list of
    stripped, distinct words in the order typed. Shown as "coffee, tea"."""

    widget = forms.TextInput(attrs={"size": 60, "class": "vTextField word-list"})
    default_error_messages = {
        "invalid_word": _("“%(word)s” is too long: at most %(max_length)s characters per entry."),
        "too_many": _("At most %(count)s entries."),
    }

    def __init__(self, *, max_length=64, max_entries=100, **kwargs):
        self.max_word_length, self.max_entries = max_length, max_entries
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        if not self.help_text:
            self.help_text = _("Separated by commas; empty: none.")

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(word) for word in value)
        return value

    def to_python(self, value):
        if value in self.empty_values:
            return []
        if (parsed := json_list(value)) is not None:
            value = parsed
        if isinstance(value, list | tuple):
            words = [str(word).strip() for word in value]
        else:
            words = [word.strip() for word in SEPARATORS.split(str(value))]
        return list(dict.fromkeys(word for word in words if word))

    def validate(self, value):
        super().validate(value)
        for word in value:
            if len(word) > self.max_word_length:
                raise forms.ValidationError(
                    self.error_messages["invalid_word"],
                    code="invalid_word",
                    params={"word": word, "max_length": self.max_word_length},
                )
        if len(value) > self.max_entries:
            raise forms.ValidationError(
                self.error_messages["too_many"], code="too_many", params={"count": self.max_entries}
            )

    def has_changed(self, initial, data):
        try:
            return self.to_python(initial) != self.to_python(data)
        except forms.ValidationError:
            return True


class CodeChoiceListField(forms.MultipleChoiceField):
    """Codes ticked among `choices` (a callable, read when the form is made: tiers, stores), cleaned into a list of
    codes in the choices' order. A saved code that is no longer among them (a tier removed since) stays shown and
    ticked, marked unknown, so saving the form does not drop it unnoticed."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, *, choices, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(choices=choices, **kwargs)

    def keep_unknown(self, saved):
        """Add the saved codes missing from the choices (call with the saved list when the form is made)."""
        known = {str(code) for code, _label in self.choices}
        missing = [code for code in saved or () if str(code) not in known]
        if missing:
            self.choices = [
                *self.choices,
                *((code, _("%(code)s (unknown code)") % {"code": code}) for code in missing),
            ]

    def prepare_value(self, value):
        return [str(code) for code in value] if isinstance(value, list | tuple) else value

    def to_python(self, value):
        parsed = json_list(value)
        return super().to_python(value if parsed is None else parsed)

    def clean(self, value):
        chosen = set(super().clean(value))
        return [str(code) for code, _label in self.choices if str(code) in chosen]
