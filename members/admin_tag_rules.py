"""The rule of a rule-based tag as form fields (members.tag_rules' language without writing JSON): one field or
pair of fields per condition, all or any of them to be met. A rule the fields cannot show (nesting, "not", a
condition twice) stays editable as JSON in the advanced field; the JSON field, when changed, wins over the fields.
Either way the rule saved is the one validate_rule accepts, and its refusal is shown on the form."""

from django import forms
from django.utils.translation import gettext_lazy as _

from loyalty.admin_fields import CodeChoiceListField
from members.models import Gender, Lifecycle, Segment, Store
from members.tag_rules import InvalidRule, validate_rule

MONTHS = [(str(month), str(month)) for month in range(1, 13)]
# The rule's fields, in the order a rule built from them lists its conditions.
RULE_FIELDS = [
    "rule_match",
    "rule_age_min",
    "rule_age_max",
    "rule_gender",
    "rule_birthday_month",
    "rule_bought_category",
    "rule_bought_days",
    "rule_spent_min",
    "rule_spent_days",
    "rule_segments",
    "rule_lifecycles",
    "rule_stores",
    "rule_joined_within_days",
]


def days_field(label, default):
    return forms.IntegerField(
        label=label,
        min_value=1,
        max_value=3650,
        required=False,
        help_text=_("Empty: %(days)s days.") % {"days": default},
    )


def conditions_of(rule):
    """(match, [condition]) when the rule is one condition, or all / any of conditions each named once; else None
    (the fields cannot show it)."""
    if not isinstance(rule, dict) or not rule:
        return None
    match, parts = "all", [rule]
    if set(rule) in ({"all"}, {"any"}):
        match, parts = next(iter(rule)), rule[next(iter(rule))]
    if not isinstance(parts, list):
        return None
    names = []
    for part in parts:
        if not isinstance(part, dict):
            return None
        name = "bought_category" if "bought_category" in part else next(iter(part), None)
        if name in ("all", "any", "not", None) or name in names:
            return None
        names.append(name)
    return match, parts


class TagRuleFormMixin(forms.Form):
    """Add to a ModelForm of Tag with a `rule` JSON field (TagAdminForm)."""

    rule_match = forms.ChoiceField(
        label=_("Members meet"),
        choices=[("all", _("all of the conditions below")), ("any", _("any of the conditions below"))],
        initial="all",
        required=False,
        widget=forms.RadioSelect,
    )
    rule_age_min = forms.IntegerField(label=_("Age from"), min_value=0, max_value=130, required=False)
    rule_age_max = forms.IntegerField(label=_("Age up to"), min_value=0, max_value=130, required=False)
    rule_gender = forms.ChoiceField(label=_("Gender"), choices=[("", "—"), *Gender.choices], required=False)
    rule_birthday_month = forms.ChoiceField(
        label=_("Birthday in month"),
        choices=[("", "—"), ("current", _("the current month")), *MONTHS],
        required=False,
    )
    rule_bought_category = forms.CharField(label=_("Bought in category"), max_length=64, required=False)
    rule_bought_days = days_field(_("…within the last days"), 90)
    rule_spent_min = forms.DecimalField(
        label=_("Spent at least"), min_value=0, max_digits=14, decimal_places=2, required=False
    )
    rule_spent_days = days_field(_("…within the last days (spent)"), 365)
    rule_segments = CodeChoiceListField(label=_("RFM segment"), choices=Segment.choices)
    rule_lifecycles = CodeChoiceListField(label=_("Lifecycle stage"), choices=Lifecycle.choices)
    rule_stores = CodeChoiceListField(label=_("Home store"), choices=())
    rule_joined_within_days = forms.IntegerField(
        label=_("Joined within the last days"), min_value=1, max_value=3650, required=False
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stores = self.fields["rule_stores"]
        stores.choices = [(s.code, f"{s.name} ({s.code})") for s in Store.objects.order_by("code")]
        if "rule" in self.fields:
            self.fields["rule"].label = _("Rule as JSON (advanced)")
            self.fields["rule"].help_text = _(
                "For rules the fields above cannot say (nested, “not”). Changed here, it replaces the fields' rule."
            )
        saved = self.instance.rule if self.instance.pk else None
        shown = conditions_of(saved) if saved else None
        if saved and shown is None:
            for name in RULE_FIELDS:
                self.fields[name].disabled = True
                self.fields[name].help_text = _("This rule is edited as JSON below.")
        elif shown:
            self.initial.update(self.initial_from(*shown))
            stores.keep_unknown(self.initial.get("rule_stores"))

    @staticmethod
    def initial_from(match, parts):
        initial = {"rule_match": match}
        for part in parts:
            if "age" in part:
                initial["rule_age_min"] = part["age"].get("min")
                initial["rule_age_max"] = part["age"].get("max")
            elif "gender" in part:
                initial["rule_gender"] = part["gender"]
            elif "birthday_month" in part:
                initial["rule_birthday_month"] = str(part["birthday_month"])
            elif "bought_category" in part:
                initial["rule_bought_category"] = part["bought_category"]
                initial["rule_bought_days"] = part.get("days")
            elif "spent" in part:
                initial["rule_spent_min"] = part["spent"].get("min")
                initial["rule_spent_days"] = part["spent"].get("days")
            elif "segment" in part:
                initial["rule_segments"] = part["segment"]
            elif "lifecycle" in part:
                initial["rule_lifecycles"] = part["lifecycle"]
            elif "store" in part:
                initial["rule_stores"] = part["store"]
            elif "joined_within_days" in part:
                initial["rule_joined_within_days"] = part["joined_within_days"]
        return initial

    def rule_from_fields(self, data):
        """The rule the fields say, or None when none is filled in."""
        conditions = []
        age = {key: data[f"rule_age_{key}"] for key in ("min", "max") if data.get(f"rule_age_{key}") is not None}
        if age.get("min") is not None and age.get("max") is not None and age["min"] > age["max"]:
            self.add_error("rule_age_max", _("The upper age is below the lower one."))
        if age:
            conditions.append({"age": age})
        if data.get("rule_gender"):
            conditions.append({"gender": data["rule_gender"]})
        if data.get("rule_birthday_month"):
            month = data["rule_birthday_month"]
            conditions.append({"birthday_month": month if month == "current" else int(month)})
        if data.get("rule_bought_category"):
            bought = {"bought_category": data["rule_bought_category"].strip()}
            if data.get("rule_bought_days"):
                bought["days"] = data["rule_bought_days"]
            conditions.append(bought)
        elif data.get("rule_bought_days"):
            self.add_error("rule_bought_category", _("Name the category bought within these days."))
        if data.get("rule_spent_min") is not None:
            spent = {"min": f"{data['rule_spent_min']:.2f}"}
            if data.get("rule_spent_days"):
                spent["days"] = data["rule_spent_days"]
            conditions.append({"spent": spent})
        elif data.get("rule_spent_days"):
            self.add_error("rule_spent_min", _("Give the amount to spend within these days."))
        for name, key in (("rule_segments", "segment"), ("rule_lifecycles", "lifecycle"), ("rule_stores", "store")):
            if data.get(name):
                conditions.append({key: data[name]})
        if data.get("rule_joined_within_days"):
            conditions.append({"joined_within_days": data["rule_joined_within_days"]})
        if not conditions:
            return None
        if len(conditions) == 1:
            return conditions[0]
        return {data.get("rule_match") or "all": conditions}

    def clean_rule_fields(self, cleaned):
        """Set cleaned["rule"]: the JSON when it was changed, else the fields' rule (or the saved rule when the
        fields cannot show it); check it with validate_rule. Returns the rule."""
        json_changed = "rule" in self.changed_data
        # The match alone is no condition (and an add form posted without it differs from its initial "all").
        fields_changed = any(name in self.changed_data for name in RULE_FIELDS if name != "rule_match")
        if json_changed and fields_changed:
            self.add_error("rule", _("Change the rule either with the fields above or as JSON, not both."))
            return cleaned.get("rule")
        if not json_changed and not self.fields["rule_match"].disabled:
            cleaned["rule"] = self.rule_from_fields(cleaned)
        rule = cleaned.get("rule")
        if rule is not None:
            try:
                validate_rule(rule)
            except InvalidRule as error:
                self.add_error("rule" if json_changed else None, str(error))
        return rule
