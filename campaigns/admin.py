"""The marketers' campaign admin: one page to create and schedule a campaign with its trigger, conditions, target,
budget, caps and A/B variants; buttons to activate, pause, end and copy it; its budget burn and results; and
read-only lists of the members' assignments and the awards.

Every write goes through campaigns.services (the functions the API calls), so the same rules apply and a refusal
comes back on the form's fields. A running campaign's terms are read-only here (pause or copy it to change them);
an ended one is read-only altogether (copy it to run it again).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import re_path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from campaigns import services
from campaigns.models import (
    DEFAULT_VARIANT,
    HOLDOUT,
    BonusAction,
    Campaign,
    CampaignAssignment,
    CampaignAward,
    CampaignKind,
    CampaignStatus,
    CampaignVariant,
)
from campaigns.selectors import targeted_member_count
from campaigns.services import results
from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, staff_role
from loyalty.admin import ConfigurationAdmin, ConfigurationForm, ReadOnlyAdmin, ServiceRefusal, admin_actor
from loyalty.errors import DomainError
from members.models import Lifecycle, PurchaseChannel, Segment, Store, Tag
from points.admin import ACTION_ROWS_LIMIT, MemberScopedAdmin, domain_error_text, when
from tiers.models import Tier

MARKETING = {ROLE_ADMIN, ROLE_MARKETER}
RUNNING = (CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE)
EDITABLE_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.PAUSED)
RUNNING_NOTE = _("The campaign is running: pause or copy to change its terms.")
SPLIT_NOTE = _("Members are already assigned to this campaign's groups: copy it to split them anew.")

# The campaign's own columns a marketer sets; trigger, conditions, target and variants are built from the fields below.
MODEL_TERMS = [
    "kind",
    "starts_at",
    "ends_at",
    "priority",
    "stacking",
    "multiplier",
    "bonus_points",
    "budget_points",
    "per_member_cap",
    "per_member_period_cap",
    "cap_period",
    "holdout_percent",
    "coupon_template",
]
MODEL_FIELDS = ["name", "description", *MODEL_TERMS]
TARGET_FIELDS = {
    "tiers": "target_tiers",
    "tags": "target_tags",
    "segments": "target_segments",
    "lifecycle": "target_lifecycle",
    "stores": "target_stores",
    "channels": "target_channels",
}
SEGMENT_MOVE_KEYS = ("from_segment", "to_segment", "from_lifecycle", "to_lifecycle")
TRIGGER_FIELDS = [
    "trigger_action",
    "trigger_days",
    "trigger_event_type",
    *(f"trigger_{key}" for key in SEGMENT_MOVE_KEYS),
    "trigger_lifecycle",
    "trigger_referrer_points",
]
CONDITION_FIELDS = ["condition_weekdays", "condition_hours", "condition_categories", "condition_min_amount"]
WEEKDAYS = [
    (1, _("Monday")),
    (2, _("Tuesday")),
    (3, _("Wednesday")),
    (4, _("Thursday")),
    (5, _("Friday")),
    (6, _("Saturday")),
    (7, _("Sunday")),
]
HOURS = [(hour, f"{hour:02d}:00–{hour:02d}:59") for hour in range(24)]


def _label(name):
    return capfirst(Campaign._meta.get_field(name).verbose_name)


ANY = _("any")


def _optional(choices, empty=ANY):
    return [("", empty), *choices]


# --- The campaign's JSON terms from the form's fields, and back -------------------------------------------------


def friendly_initial(campaign):
    """The form's trigger, condition and target fields as the campaign's JSON terms hold them."""
    target, trigger, conditions = campaign.target or {}, campaign.trigger or {}, campaign.conditions or {}
    initial = {field: [str(code) for code in target.get(key) or ()] for key, field in TARGET_FIELDS.items()}
    initial.update(
        {f"trigger_{key}": trigger.get(key) or "" for key in (*SEGMENT_MOVE_KEYS, "action", "event_type")},
        trigger_days=trigger.get("days"),
        trigger_lifecycle=[str(stage) for stage in trigger.get("lifecycle") or ()],
        trigger_referrer_points=trigger.get("referrer_points"),
        condition_weekdays=[int(day) for day in conditions.get("weekdays") or ()],
        condition_hours=[int(hour) for hour in conditions.get("hours") or ()],
        condition_categories=", ".join(str(code) for code in conditions.get("categories") or ()),
        condition_min_amount=conditions.get("min_amount"),
    )
    return initial


def build_trigger(kind, data):
    """campaign.trigger from the form: only the keys the campaign's kind reads."""
    if kind == CampaignKind.BONUS:
        action = data.get("trigger_action") or ""
        trigger = {"action": action} if action else {}
        if action in (BonusAction.FIRST_PURCHASE_IN_DAYS, BonusAction.SIGN_IN_STREAK) and (
            data.get("trigger_days") is not None
        ):
            trigger["days"] = data["trigger_days"]
        if action == BonusAction.EVENT and data.get("trigger_event_type"):
            trigger["event_type"] = data["trigger_event_type"]
        return trigger
    if kind == CampaignKind.SEGMENT_MOVE:
        return {key: data[f"trigger_{key}"] for key in SEGMENT_MOVE_KEYS if data.get(f"trigger_{key}")}
    if kind == CampaignKind.WIN_BACK:
        stages = list(data.get("trigger_lifecycle") or ())
        return {"lifecycle": stages} if stages else {}
    if kind == CampaignKind.REFERRAL and data.get("trigger_referrer_points") is not None:
        return {"referrer_points": data["trigger_referrer_points"]}
    return {}


def build_conditions(data):
    conditions = {}
    if data.get("condition_weekdays"):
        conditions["weekdays"] = sorted(data["condition_weekdays"])
    if data.get("condition_hours"):
        conditions["hours"] = sorted(data["condition_hours"])
    categories = [code.strip() for code in (data.get("condition_categories") or "").split(",") if code.strip()]
    if categories:
        conditions["categories"] = categories
    if data.get("condition_min_amount") is not None:
        conditions["min_amount"] = str(data["condition_min_amount"])
    return conditions


def build_target(data):
    return {key: list(data.get(field) or ()) for key, field in TARGET_FIELDS.items()}


def variant_rows(formset):
    """(form, variant values) of the variants the formset sends, in order: kept rows and filled-in new ones."""
    rows = []
    for index, form in enumerate(formset.forms):
        data = getattr(form, "cleaned_data", None)
        if data is None or (formset.can_delete and formset._should_delete_form(form)):
            continue
        if index >= formset.initial_form_count() and not form.has_changed():
            continue
        rows.append(
            (
                form,
                {
                    "code": data.get("code"),
                    "weight": data.get("weight"),
                    "multiplier": data.get("multiplier"),
                    "bonus_points": data.get("bonus_points"),
                },
            )
        )
    return rows


def current_variants(campaign):
    return [
        {"code": v.code, "weight": v.weight, "multiplier": v.multiplier, "bonus_points": v.bonus_points}
        for v in campaign.variants.order_by("id")
    ]


# --- The form -------------------------------------------------------------------------------------------------------


class CampaignForm(ConfigurationForm):
    """The campaign's columns, and friendly fields for its JSON terms (trigger, conditions, target). Shape only, as
    the API's serializer: the rules are campaigns.services.configuration.check_terms', whose refusal comes back on
    these fields."""

    name = forms.CharField(label=_label("name"), max_length=120)
    priority = forms.IntegerField(
        label=_label("priority"), min_value=-1000, max_value=1000, initial=0, help_text=_("Higher first.")
    )
    multiplier = forms.DecimalField(
        label=_label("multiplier"),
        max_digits=6,
        decimal_places=2,
        required=False,
        help_text=_("Multiplier and birthday campaigns: 2 doubles the purchase's points. Greater than 1."),
    )
    bonus_points = forms.IntegerField(
        label=_label("bonus_points"),
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text=_("Bonus, win-back, referral, segment-move and birthday-bonus campaigns: the points given."),
    )
    budget_points = forms.IntegerField(
        label=_label("budget_points"),
        min_value=1,
        max_value=2_000_000_000,
        required=False,
        help_text=_("The campaign's points in total; when they are spent it stops awarding. Empty: no budget."),
    )
    per_member_cap = forms.IntegerField(
        label=_label("per_member_cap"),
        min_value=1,
        max_value=100_000_000,
        required=False,
        help_text=_("Points one member may get from the campaign in all. Empty: no cap."),
    )
    per_member_period_cap = forms.IntegerField(
        label=_label("per_member_period_cap"),
        min_value=1,
        max_value=100_000_000,
        required=False,
        help_text=_("Points one member may get per cap period."),
    )
    holdout_percent = forms.DecimalField(
        label=_label("holdout_percent"),
        max_digits=5,
        decimal_places=2,
        min_value=0,
        max_value=99,
        initial=0,
        help_text=_("The share of members held out as the control group: they get nothing from the campaign."),
    )

    trigger_action = forms.ChoiceField(
        label=_("Bonus: action"),
        choices=_optional(BonusAction.choices, "—"),
        required=False,
        help_text=_("Bonus campaigns: the action rewarded."),
    )
    trigger_days = forms.IntegerField(
        label=_("Bonus: days (N)"),
        min_value=1,
        max_value=3650,
        required=False,
        help_text=_("First purchase in N days, or an N-day sign-in streak."),
    )
    trigger_event_type = forms.CharField(
        label=_("Bonus: event type"), max_length=60, required=False, help_text=_("A custom event's type.")
    )
    trigger_from_segment = forms.ChoiceField(
        label=_("Segment move: from segment"), choices=_optional(Segment.choices), required=False
    )
    trigger_to_segment = forms.ChoiceField(
        label=_("Segment move: to segment"), choices=_optional(Segment.choices), required=False
    )
    trigger_from_lifecycle = forms.ChoiceField(
        label=_("Segment move: from lifecycle stage"), choices=_optional(Lifecycle.choices), required=False
    )
    trigger_to_lifecycle = forms.ChoiceField(
        label=_("Segment move: to lifecycle stage"),
        choices=_optional(Lifecycle.choices),
        required=False,
        help_text=_("Name a move of segment, or of lifecycle stage (from, to or both)."),
    )
    trigger_lifecycle = forms.MultipleChoiceField(
        label=_("Win-back: stages"),
        choices=Lifecycle.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("The stages a member is won back from. None ticked: dormant and lost."),
    )
    trigger_referrer_points = forms.IntegerField(
        label=_("Referral: referrer's points"),
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text=_("Points for the referring member. Empty: the bonus points."),
    )

    condition_weekdays = forms.TypedMultipleChoiceField(
        label=_("Days of the week"),
        coerce=int,
        choices=WEEKDAYS,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text=_("None ticked: every day (business time zone)."),
    )
    condition_hours = forms.TypedMultipleChoiceField(
        label=_("Hours"),
        coerce=int,
        choices=HOURS,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        required=False,
        help_text=_("None selected: all day."),
    )
    condition_categories = forms.CharField(
        label=_("Categories"),
        max_length=2000,
        required=False,
        help_text=_("Product category codes, separated by commas: only those lines of a purchase count."),
    )
    condition_min_amount = forms.DecimalField(
        label=_("Minimum amount"),
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        help_text=_("A purchase counts from this amount."),
    )

    target_tiers = forms.MultipleChoiceField(label=_("Tiers"), widget=forms.CheckboxSelectMultiple, required=False)
    target_tags = forms.MultipleChoiceField(
        label=_("Tags"),
        widget=admin.widgets.FilteredSelectMultiple(_("tags"), is_stacked=False),
        required=False,
        help_text=_("Members with any of these tags."),
    )
    target_segments = forms.MultipleChoiceField(
        label=_("RFM segments"), choices=Segment.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    target_lifecycle = forms.MultipleChoiceField(
        label=_("Lifecycle stages"), choices=Lifecycle.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    target_stores = forms.MultipleChoiceField(
        label=_("Stores"),
        widget=admin.widgets.FilteredSelectMultiple(_("stores"), is_stacked=False),
        required=False,
        help_text=_("Purchases and events at these stores."),
    )
    target_channels = forms.MultipleChoiceField(
        label=_("Purchase channels"),
        choices=PurchaseChannel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    # Set per request by CampaignAdmin.get_form.
    terms_locked = False  # a running campaign: only the name and description change
    split_locked = False  # members are assigned: the holdout stays

    class Meta:
        model = Campaign
        fields = MODEL_FIELDS

    def __init__(self, *args, instance=None, initial=None, **kwargs):
        if instance is not None and instance.pk is not None:
            initial = {**friendly_initial(instance), **(initial or {})}
        super().__init__(*args, instance=instance, initial=initial, **kwargs)
        self._set_code_choices()
        for name, field in self.fields.items():
            if self.terms_locked and name not in ("name", "description"):
                field.disabled = True  # the page says why (RUNNING_NOTE, CampaignAdmin.get_fieldsets)
            elif self.split_locked and name == "holdout_percent":
                field.disabled = True
                field.help_text = SPLIT_NOTE

    def _set_code_choices(self):
        """Tiers, tags and stores as they are now; a code the campaign holds that no longer exists stays a choice,
        so that the form still saves unchanged."""
        tables = {
            "target_tiers": [(tier.code, f"{tier.name} ({tier.code})") for tier in Tier.objects.order_by("rank")],
            "target_tags": [(tag.code, f"{tag.name} ({tag.code})") for tag in Tag.objects.order_by("code")],
            "target_stores": [(store.code, f"{store.name} ({store.code})") for store in Store.objects.order_by("code")],
        }
        for name, choices in tables.items():
            if name not in self.fields:
                continue
            known = {code for code, _label in choices}
            held = [code for code in self.initial.get(name) or () if code not in known]
            self.fields[name].choices = [*choices, *((code, f"{code} (?)") for code in held)]

    def _post_clean(self):
        kind = self.cleaned_data.get("kind")
        for key, texts in self.refusal_errors.items():
            if key is not None and key.split(".")[0] == "variants":
                continue  # shown on the variants (VariantFormSet)
            name = error_field(key, kind, texts)
            for text in texts:
                if name in self.fields:
                    self.add_error(name, text)
                else:
                    self.add_error(None, f"{key}: {text}" if key else text)


def error_field(key, kind, texts=()):
    """The form field that shows a service error named `key` (check_terms' names), or the key itself."""
    if key is None:
        return None
    group, _dot, sub = key.partition(".")
    if group == "target" and sub in TARGET_FIELDS:
        return TARGET_FIELDS[sub]
    if group == "trigger":
        text = " ".join(str(t) for t in texts)
        if kind == CampaignKind.BONUS:
            if "trigger.days" in text:
                return "trigger_days"
            if "trigger.event_type" in text:
                return "trigger_event_type"
            return "trigger_action"
        return {
            CampaignKind.SEGMENT_MOVE: "trigger_to_segment",
            CampaignKind.WIN_BACK: "trigger_lifecycle",
            CampaignKind.REFERRAL: "trigger_referrer_points",
        }.get(kind, "trigger")
    return key


def campaign_refusal_errors(error):
    """A service's refusal as {check_terms' field name or None: [messages]}: CampaignForm puts them on its fields,
    VariantFormSet those of the variants."""
    if isinstance(error, services.CampaignRunning):
        return {name: [str(RUNNING_NOTE)] for name in error.extra.get("fields") or ()} or {None: [error.detail]}
    errors = getattr(error, "errors", None) or error.extra.get("errors")
    return errors or {None: [f"{error.code}: {error.detail}"]}


class VariantFormSet(BaseInlineFormSet):
    """The variants, sent to the service as one list; a refusal that names them comes back here (`refusal_errors`,
    set by CampaignVariantInline.get_formset): "variants" above the rows, "variants.N.field" on the Nth row sent."""

    refusal_errors = {}

    def clean(self):
        super().clean()
        rows = variant_rows(self)
        above = []
        for key, texts in self.refusal_errors.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(rows):
                form = rows[int(parts[1])][0]
                for text in texts:
                    form.add_error(parts[2] if parts[2] in form.fields else None, text)
            else:
                above.extend(texts)
        if above:
            raise ValidationError(above)


class CampaignVariantInline(admin.TabularInline):
    model = CampaignVariant
    formset = VariantFormSet
    fields = ["code", "weight", "multiplier", "bonus_points"]
    extra = 0
    max_num = 20
    verbose_name_plural = _("A/B variants (weights sum to 100; none: one group gets the campaign's terms)")

    def get_formset(self, request, obj=None, **kwargs):
        formset_class = super().get_formset(request, obj, **kwargs)  # a class of its own, made per call
        refusal = getattr(request, "service_refusal", None)
        if refusal is not None:
            formset_class.refusal_errors = {
                key: texts
                for key, texts in campaign_refusal_errors(refusal).items()
                if key is not None and key.split(".")[0] == "variants"
            }
        return formset_class

    # Permissions follow the campaign's: a variant is part of its terms.
    def has_view_permission(self, request, obj=None):
        user = request.user
        return user.has_perm("campaigns.view_campaign") or user.has_perm("campaigns.change_campaign")

    def has_add_permission(self, request, obj):
        return split_editable(request, obj)

    def has_change_permission(self, request, obj=None):
        return split_editable(request, obj)

    def has_delete_permission(self, request, obj=None):
        return split_editable(request, obj)


def terms_editable(campaign):
    return campaign.status_at(timezone.now()) in EDITABLE_STATUSES


def split_fixed(campaign):
    """Members assigned to its groups: the variants and holdout stay (asked once per request and campaign)."""
    if not hasattr(campaign, "_split_fixed"):
        campaign._split_fixed = CampaignAssignment.objects.filter(campaign=campaign).exists()
    return campaign._split_fixed


def split_editable(request, campaign):
    if campaign is None or campaign.pk is None:
        return request.user.has_perm("campaigns.add_campaign")
    return request.user.has_perm("campaigns.change_campaign") and terms_editable(campaign) and not split_fixed(campaign)


# --- Lists ---------------------------------------------------------------------------------------------------------


class EffectiveStatusFilter(admin.SimpleListFilter):
    """The status as it stands now (Campaign.status_at): an activated campaign is scheduled before its start and
    ended after its end."""

    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return CampaignStatus.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        running = Q(status__in=RUNNING)
        not_over = Q(ends_at__isnull=True) | Q(ends_at__gt=now)
        conditions = {
            CampaignStatus.DRAFT: Q(status=CampaignStatus.DRAFT),
            CampaignStatus.PAUSED: Q(status=CampaignStatus.PAUSED),
            CampaignStatus.SCHEDULED: running & Q(starts_at__gt=now) & not_over,
            CampaignStatus.ACTIVE: running & Q(starts_at__lte=now) & not_over,
            CampaignStatus.ENDED: Q(status=CampaignStatus.ENDED) | (running & Q(ends_at__lte=now)),
        }
        condition = conditions.get(self.value())
        return queryset if condition is None else queryset.filter(condition)


def term_labels():
    """Each JSON term's key as the form labels it, and how its coded values read (codes without a label stay)."""
    return {
        "weekdays": (_("Days of the week"), dict(WEEKDAYS)),
        "hours": (_("Hours"), dict(HOURS)),
        "categories": (_("Categories"), {}),
        "min_amount": (_("Minimum amount"), {}),
        "tiers": (_("Tiers"), {}),
        "tags": (_("Tags"), {}),
        "segments": (_("RFM segments"), dict(Segment.choices)),
        "lifecycle": (_("Lifecycle stages"), dict(Lifecycle.choices)),
        "stores": (_("Stores"), {}),
        "channels": (_("Purchase channels"), dict(PurchaseChannel.choices)),
        "action": (_("Bonus: action"), dict(BonusAction.choices)),
        "days": (_("Bonus: days (N)"), {}),
        "event_type": (_("Bonus: event type"), {}),
        "from_segment": (_("Segment move: from segment"), dict(Segment.choices)),
        "to_segment": (_("Segment move: to segment"), dict(Segment.choices)),
        "from_lifecycle": (_("Segment move: from lifecycle stage"), dict(Lifecycle.choices)),
        "to_lifecycle": (_("Segment move: to lifecycle stage"), dict(Lifecycle.choices)),
        "referrer_points": (_("Referral: referrer's points"), {}),
    }


def terms_text(terms, keys, empty):
    """A JSON term as a line a clerk reads in the admin's language: "Tiers: gold, silver; Purchase channels:
    offline", "Days of the week: Saturday, Sunday" (empty lists left out; an unknown key or code as stored)."""
    labels = term_labels()
    parts = []
    for key in keys:
        value = (terms or {}).get(key)
        if value in (None, "", []):
            continue
        label, readings = labels.get(key, (key, {}))
        items = value if isinstance(value, list) else [value]
        shown = ", ".join(str(readings.get(item, item)) for item in items)
        parts.append(_("%(term)s: %(values)s") % {"term": label, "values": shown})
    return "; ".join(parts) or empty


def budget_burn(campaign):
    if campaign.budget_points is None:
        return _("no budget")
    share = 100 * campaign.budget_used / campaign.budget_points if campaign.budget_points else 100
    text = f"{campaign.budget_used} / {campaign.budget_points} ({share:.1f}%)"
    if campaign.budget_exhausted_at is not None:
        text += f", {_('spent')} {when(campaign.budget_exhausted_at)}"
    return text


# --- The campaign admin -----------------------------------------------------------------------------------------------

STATUS_ACTIONS = {
    CampaignStatus.DRAFT: ["activate", "copy"],
    CampaignStatus.SCHEDULED: ["pause", "end", "copy"],
    CampaignStatus.ACTIVE: ["pause", "end", "copy"],
    CampaignStatus.PAUSED: ["activate", "end", "copy"],
    CampaignStatus.ENDED: ["copy"],
}
ACTION_LABELS = {
    "activate": _("Activate"),
    "pause": _("Pause"),
    "end": _("End now"),
    "copy": _("Copy as a new draft"),
}
MARKETING_PANEL = ("awards_summary", "results_table")  # as the API: results (and the award lists) are marketing's
VIEW_FIELDS = ["trigger_shown", "conditions_shown", "target_shown"]
PANEL_FIELDS = [
    "effective_status",
    "targeted_members_shown",
    "budget_burn_shown",
    "awards_summary",
    "results_table",
    "activated_at",
    "copied_from",
    "created_by",
    "created_at",
]


@admin.register(Campaign)
class CampaignAdmin(ConfigurationAdmin):
    """Campaigns for marketers and admins (clerks see them read-only). Saved by create_campaign / change_campaign;
    activate, pause, end and copy are buttons on the page (and list actions), each one service call, audited."""

    form = CampaignForm
    inlines = [CampaignVariantInline]
    change_form_template = "admin/campaigns/campaign/change_form.html"
    list_display = [
        "name",
        "kind",
        "effective_status",
        "starts_at",
        "ends_at",
        "priority",
        "budget_burn_shown",
        "awards_count",
    ]
    list_filter = ["kind", EffectiveStatusFilter]
    search_fields = ["name"]
    ordering = ["-id"]
    readonly_fields = [*PANEL_FIELDS, *VIEW_FIELDS]
    actions = ["activate_selected", "pause_selected", "end_selected"]

    # Pages ---------------------------------------------------------------------------------------------------

    def get_queryset(self, request):
        awards = (
            CampaignAward.objects.filter(campaign=OuterRef("pk"))
            .order_by()
            .values("campaign")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return super().get_queryset(request).annotate(awards_total=Coalesce(Subquery(awards), 0))

    def may_see_results(self, request):
        return staff_role(request.user) in MARKETING

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return shown if self.may_see_results(request) else [name for name in shown if name != "awards_count"]

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ["name", "description", "kind", "starts_at", "ends_at", "priority", "stacking"]})
        changeable = obj is None or self.has_change_permission(request, obj)
        if obj is not None and changeable and obj.status_at(timezone.now()) in RUNNING:
            main[1]["description"] = RUNNING_NOTE
        reward = (
            _("Reward"),
            {
                "fields": ["multiplier", "bonus_points", "coupon_template"],
                "description": _(
                    "A variant's own multiplier or bonus points (below) override these. A coupon template: each "
                    "award also issues one coupon of it (alone, without bonus or multiplier: a coupon-only campaign)."
                ),
            },
        )
        budget = (
            _("Budget and caps"),
            {"fields": ["budget_points", "per_member_cap", "per_member_period_cap", "cap_period"]},
        )
        ab_test = (
            _("A/B test"),
            {
                "fields": ["holdout_percent"],
                "description": _(
                    "The variants below split the members who are not held out, by weight. A member's group is "
                    "fixed the first time she is evaluated."
                ),
            },
        )
        if not changeable:
            terms = (
                _("Trigger, conditions and target"),
                {"fields": ["trigger_shown", "conditions_shown", "target_shown"]},
            )
            fieldsets = [main, reward, terms, budget, ab_test]
        else:
            trigger = (
                _("Trigger"),
                {
                    "fields": TRIGGER_FIELDS,
                    "description": _(
                        "What the campaign rewards, by kind: a bonus campaign names its action; a segment move "
                        "names the move; win-back the stages; referral the referrer's points. Fields of other "
                        "kinds are ignored."
                    ),
                },
            )
            conditions = (_("Conditions"), {"fields": CONDITION_FIELDS, "description": _("Empty: always.")})
            target = (
                _("Target"),
                {
                    "fields": list(TARGET_FIELDS.values()),
                    "description": _(
                        "Who takes part. All empty: everyone. A member must match every list given (any entry "
                        "within a list)."
                    ),
                },
            )
            fieldsets = [main, reward, trigger, conditions, target, budget, ab_test]
        if obj is None:
            return fieldsets
        panel = [name for name in PANEL_FIELDS if name not in MARKETING_PANEL or self.may_see_results(request)]
        return [*fieldsets, (_("Status, budget burn and results"), {"fields": panel})]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)
        if obj is not None:
            form_class.terms_locked = not terms_editable(obj)
            form_class.split_locked = split_fixed(obj)
        return form_class

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, unquote(object_id))
        actions = []
        if campaign is not None and self.has_change_permission(request):
            actions = [(name, ACTION_LABELS[name]) for name in STATUS_ACTIONS[campaign.status_at(timezone.now())]]
        extra_context = {**(extra_context or {}), "campaign_actions": actions}
        return super().change_view(request, object_id, form_url, extra_context)

    # Permissions: an ended campaign changes no more; only a draft is deleted (through the service). -------------

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.status_at(timezone.now()) != CampaignStatus.ENDED)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.status == CampaignStatus.DRAFT)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deleting goes through the service, one draft at a time
        return actions

    # Saving: one service call with the form's and the variants' values ----------------------------------------

    def save_model(self, request, obj, form, change):
        """Nothing here: the campaign and its variants are saved together in save_related, which has both."""

    def save_related(self, request, form, formsets, change):
        variants = next(fs for fs in formsets if fs.model is CampaignVariant)
        actor = admin_actor(request)
        campaign = form.instance
        try:
            if change:
                changes = self.campaign_changes(form, variants, campaign)
                if changes:
                    services.change_campaign(actor=actor, campaign_id=campaign.pk, changes=changes)
            else:
                campaign.pk = services.create_campaign(actor=actor, values=self.campaign_values(form, variants)).pk
        except DomainError as error:
            raise ServiceRefusal(error) from error
        campaign.refresh_from_db()
        for formset in formsets:  # read by the admin's change message; the service saved the variants
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def campaign_values(self, form, variants):
        data = form.cleaned_data
        return {
            **{name: data[name] for name in MODEL_FIELDS},
            "trigger": build_trigger(data["kind"], data),
            "conditions": build_conditions(data),
            "target": build_target(data),
            "variants": [values for _form, values in variant_rows(variants)],
        }

    def campaign_changes(self, form, variants, campaign):
        """What the marketer changed: columns by field, the JSON terms whole when one of their fields changed, the
        variants whole when they differ from the saved ones."""
        data = form.cleaned_data
        changed = self.changed_values(form)
        changes = {name: value for name, value in changed.items() if name in MODEL_FIELDS}
        if changed.keys() & set(TARGET_FIELDS.values()):
            changes["target"] = build_target(data)
        if changed.keys() & set(CONDITION_FIELDS):
            changes["conditions"] = build_conditions(data)
        if changed.keys() & {*TRIGGER_FIELDS, "kind"}:
            trigger = build_trigger(data["kind"], data)
            if trigger != (campaign.trigger or {}):
                changes["trigger"] = trigger
        new_variants = [values for _form, values in variant_rows(variants)]
        if new_variants != current_variants(campaign):
            changes["variants"] = new_variants
        return changes

    def refusal_errors(self, error):
        return campaign_refusal_errors(error)

    # Deleting a draft: through the service (which refuses anything else), not in the admin's transaction -------

    @csrf_protect_m
    def delete_view(self, request, object_id, extra_context=None):
        try:
            return self._delete_view(request, object_id, extra_context)
        except DomainError as error:
            self.message_user(request, domain_error_text(error), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[object_id]))

    def log_deletions(self, request, queryset):
        """Logged by delete_model once the service has deleted the draft."""

    def delete_model(self, request, obj):
        services.delete_campaign(actor=admin_actor(request), campaign_id=obj.pk)
        super().log_deletions(request, [obj])

    # Activate, pause, end, copy: buttons on the page ----------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view(self.campaign_action_view)
        return [
            re_path(
                r"^(?P<object_id>[0-9]{1,18})/(?P<action>activate|pause|end|copy)/$",
                view,
                name=f"{self.opts.app_label}_{self.opts.model_name}_campaign_action",
            ),
            *super().get_urls(),
        ]

    def campaign_action_view(self, request, object_id, action):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=object_id)
        back = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        try:
            done = self.run_action(request, action, campaign)
        except DomainError as error:
            self.message_user(request, domain_error_text(error), messages.ERROR)
            return HttpResponseRedirect(back)
        if action == "copy":
            self.message_user(
                request,
                _("Copied “%(name)s” as a new draft: change its terms here and activate it.") % {"name": done.name},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[done.pk]))
        self.message_user(
            request,
            _("“%(name)s” is now %(status)s.")
            % {
                "name": done.name,
                "status": CampaignStatus(done.status_at(timezone.now())).label,
            },
            messages.SUCCESS,
        )
        return HttpResponseRedirect(back)

    def run_action(self, request, action, campaign):
        service = {
            "activate": services.activate_campaign,
            "pause": services.pause_campaign,
            "end": services.end_campaign,
            "copy": services.copy_campaign,
        }[action]
        return service(actor=admin_actor(request), campaign_id=campaign.pk)

    # ... and list actions, each campaign in its own transaction -------------------------------------------------

    @admin.action(description=_("Activate the selected campaigns"), permissions=["change"])
    def activate_selected(self, request, queryset):
        self._each(request, queryset, "activate", _("Activated %(count)s campaign(s)."))

    @admin.action(description=_("Pause the selected campaigns"), permissions=["change"])
    def pause_selected(self, request, queryset):
        self._each(request, queryset, "pause", _("Paused %(count)s campaign(s)."))

    @admin.action(description=_("End the selected campaigns"), permissions=["change"])
    def end_selected(self, request, queryset):
        self._each(request, queryset, "end", _("Ended %(count)s campaign(s)."))

    def _each(self, request, queryset, action, done_text):
        done, failures = 0, []
        for campaign in queryset.order_by("id")[:ACTION_ROWS_LIMIT]:
            try:
                self.run_action(request, action, campaign)
            except DomainError as error:
                failures.append(f"“{campaign.name}”: {domain_error_text(error)}")
            else:
                done += 1
        if done:
            self.message_user(request, done_text % {"count": done}, messages.SUCCESS)
        for failure in failures:
            self.message_user(request, failure, messages.ERROR)

    # What the list and the panel show --------------------------------------------------------------------------

    @admin.display(description=_("status"))
    def effective_status(self, campaign):
        return CampaignStatus(campaign.status_at(timezone.now())).label

    @admin.display(description=_("trigger"))
    def trigger_shown(self, campaign):
        return terms_text(campaign.trigger, sorted(campaign.trigger or {}), _("—"))

    @admin.display(description=_("conditions"))
    def conditions_shown(self, campaign):
        return terms_text(campaign.conditions, sorted(campaign.conditions or {}), _("always"))

    @admin.display(description=_("target"))
    def target_shown(self, campaign):
        return terms_text(campaign.target, list(TARGET_FIELDS), _("everyone"))

    @admin.display(description=_("members targeted"))
    def targeted_members_shown(self, campaign):
        """How many members the saved target takes in now: a count to check before activating (an ended
        campaign's is not counted again)."""
        if campaign.status_at(timezone.now()) == CampaignStatus.ENDED:
            return "—"
        text = _("%(count)s active members match the target now.") % {"count": targeted_member_count(campaign)}
        if campaign.holdout_percent:
            text += " " + _("About %(percent)s%% of them are held out (the control group).") % {
                "percent": campaign.holdout_percent
            }
        return text

    @admin.display(description=_("budget burn"))
    def budget_burn_shown(self, campaign):
        return budget_burn(campaign)

    @admin.display(description=_("awards"))
    def awards_count(self, campaign):
        count = getattr(campaign, "awards_total", None)
        if count is None:
            count = CampaignAward.objects.filter(campaign=campaign).count()
        return format_html(
            '<a href="{}?campaign__id__exact={}">{}</a>',
            reverse("admin:campaigns_campaignaward_changelist"),
            campaign.pk,
            count,
        )

    @admin.display(description=_("awards"))
    def awards_summary(self, campaign):
        totals = CampaignAward.objects.filter(campaign=campaign).aggregate(
            count=Count("pk"), points=Sum("points"), returned=Sum("points_returned")
        )
        return format_html(
            '{} · <a href="{}?campaign__id__exact={}">{}</a> · <a href="{}?campaign__id__exact={}">{}</a>',
            _("%(count)s awards, %(points)s points (%(returned)s returned by refunds)")
            % {"count": totals["count"], "points": totals["points"] or 0, "returned": totals["returned"] or 0},
            reverse("admin:campaigns_campaignaward_changelist"),
            campaign.pk,
            _("the awards"),
            reverse("admin:campaigns_campaignassignment_changelist"),
            campaign.pk,
            _("the members' groups"),
        )

    @admin.display(description=_("results"))
    def results_table(self, campaign):
        if campaign.activated_at is None:
            return _("The campaign has not run yet.")
        try:
            result = results.campaign_results(campaign)
        except (NotImplementedError, DomainError):
            return _("Results not available.")
        return render_results(result)


def _cells(row, keys):
    return [row.get(key, "") if isinstance(row, dict) else "" for key in keys]


def render_results(result):
    """The results (API.md's shape) as tables: per group, the lift against the holdout, points per extra revenue."""
    if not isinstance(result, dict):
        return _("Results not available.")
    group_keys = [
        "group",
        "members",
        "participants",
        "purchases",
        "revenue",
        "points_cost",
        "repurchase_rate",
        "revenue_per_member",
    ]
    lift_keys = ["group", "metric", "estimate", "ci_low", "ci_high", "p_value"]
    groups = format_html(
        '<table class="campaign-results"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        format_html_join("", "<th>{}</th>", ((key.replace("_", " "),) for key in group_keys)),
        format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (format_html_join("", "<td>{}</td>", ((cell,) for cell in _cells(row, group_keys))),)
                for row in result.get("groups") or ()
            ),
        ),
    )
    lift = format_html(
        '<table class="campaign-lift"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        format_html_join("", "<th>{}</th>", ((key.replace("_", " "),) for key in lift_keys)),
        format_html_join(
            "",
            "<tr>{}</tr>",
            (
                (format_html_join("", "<td>{}</td>", ((cell,) for cell in _cells(row, lift_keys))),)
                for row in result.get("lift") or ()
            ),
        ),
    )
    extra = format_html_join(
        "",
        "<p>{}</p>",
        (
            (", ".join(f"{key}: {value}" for key, value in row.items()) if isinstance(row, dict) else str(row),)
            for row in result.get("points_per_extra_revenue") or ()
        ),
    )
    return format_html(
        "<p>{} {} – {}</p>{}<p>{}</p>{}{}",
        _("Window:"),
        result.get("from", "?"),
        result.get("to", "?"),
        groups,
        # xgettext:no-python-format (a per cent sign, not a placeholder)
        _("Lift against the holdout (95% confidence interval, p-value):"),
        lift,
        extra,
    )


# --- Members' groups and the awards (read-only) -------------------------------------------------------------------


class GroupFilter(admin.SimpleListFilter):
    """The groups of the campaign filtered on (its variants' codes, the holdout, `default` without variants)."""

    title = _("group")
    parameter_name = "group"

    def lookups(self, request, model_admin):
        variants = CampaignVariant.objects.all()
        campaign_id = request.GET.get("campaign__id__exact", "")
        if campaign_id.isdigit() and len(campaign_id) <= 18:
            variants = variants.filter(campaign_id=campaign_id)
        codes = set(variants.order_by("code").values_list("code", flat=True).distinct()[:200])
        codes |= {HOLDOUT, DEFAULT_VARIANT}
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        return queryset if self.value() is None else queryset.filter(group=self.value())


@admin.register(CampaignAssignment)
class CampaignAssignmentAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    list_display = ["assigned_at", "campaign", "member", "group"]
    list_filter = ["campaign", GroupFilter]
    list_select_related = ["campaign", "member"]
    search_fields = ["member__member_no"]
    search_help_text = _("Card number or phone (any format).")
    ordering = ["-id"]


@admin.register(CampaignAward)
class CampaignAwardAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "campaign",
        "member",
        "group",
        "points",
        "points_returned",
        "purchase",
        "reference",
        "business_date",
        "coupon",
        "coupon_skipped",
    ]
    list_filter = ["campaign", GroupFilter, "coupon_skipped"]
    list_select_related = ["campaign", "member", "purchase", "coupon"]
    search_fields = ["member__member_no"]
    search_help_text = _("Card number or phone (any format).")
    ordering = ["-id"]


from campaigns import admin_coupons  # noqa: E402, F401 - the coupon screens register themselves
