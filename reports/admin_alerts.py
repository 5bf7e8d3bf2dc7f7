"""The alert rules (switch them, set their thresholds) and the staff's alert subscriptions, saved through
reports.alert_notices (checked and audited). The alerts themselves are loyalty's Alert admin."""

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loyalty.access import ROLE_ADMIN, ROLE_MARKETER
from loyalty.admin import ConfigurationAdmin, ConfigurationForm, admin_actor
from members.models import StaffUser
from reports.alert_notices import change_alert_rule, delete_alert_subscription, save_alert_subscription
from reports.alert_rules import RULES_BY_CODE, rule_choices
from reports.models_alerts import AlertRule, AlertSubscription


@admin.register(AlertRule)
class AlertRuleAdmin(ConfigurationAdmin):
    """One row per rule of reports.alert_rules: on or off, threshold and floor (their meaning is the rule's)."""

    fields = ["code", "label", "description", "threshold_meaning", "is_active", "threshold", "floor", "updated_by"]
    readonly_fields = ["code", "label", "description", "threshold_meaning", "updated_by"]
    list_display = ["code", "label", "is_active", "threshold", "floor", "evaluated", "updated_at", "updated_by"]
    list_filter = ["is_active"]

    def _definition(self, obj):
        return RULES_BY_CODE.get(obj.code) if obj else None

    @admin.display(description=_("rule"))
    def label(self, obj):
        definition = self._definition(obj)
        return definition.label if definition else "-"

    @admin.display(description=_("when it fires"))
    def description(self, obj):
        definition = self._definition(obj)
        return definition.description if definition else "-"

    @admin.display(description=_("threshold means"))
    def threshold_meaning(self, obj):
        definition = self._definition(obj)
        if definition is None or definition.default_threshold is None:
            return _("none of its own: leave it empty")
        return definition.threshold_help

    @admin.display(description=_("evaluated here"), boolean=True)
    def evaluated(self, obj):
        definition = self._definition(obj)
        return bool(definition and definition.evaluated)

    def has_add_permission(self, request):
        return False  # a row per rule in the code, made by the migrations

    def has_delete_permission(self, request, obj=None):
        return False

    def change(self, request, obj, changes):
        return change_alert_rule(actor=admin_actor(request), code=obj.code, changes=changes)


class AlertSubscriptionForm(ConfigurationForm):
    rules = forms.MultipleChoiceField(
        label=_("rules"),
        choices=rule_choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked: every rule."),
    )

    class Meta:
        model = AlertSubscription
        fields = ["user", "rules", "by_email", "in_admin", "is_active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            StaffUser.objects.filter(Q(groups__name__in=[ROLE_ADMIN, ROLE_MARKETER]) | Q(is_superuser=True))
            .filter(is_active=True)
            .distinct()
            .order_by("username")
        )


@admin.register(AlertSubscription)
class AlertSubscriptionAdmin(ConfigurationAdmin):
    """Staff who hear of alerts: by email (her account's address) and/or in the admin (a note on the alerts
    page); of every rule or of some."""

    form = AlertSubscriptionForm
    fields = ["user", "rules", "by_email", "in_admin", "is_active"]
    list_display = ["user", "rule_list", "by_email", "in_admin", "is_active", "updated_at", "updated_by"]
    list_filter = ["is_active", "by_email", "in_admin"]
    list_select_related = ["user"]

    def get_readonly_fields(self, request, obj=None):
        return ["user"] if obj is not None else []

    @admin.display(description=_("rules"))
    def rule_list(self, obj):
        return ", ".join(obj.rules) if obj.rules else _("every rule")

    def create(self, request, values):
        return save_alert_subscription(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return save_alert_subscription(actor=admin_actor(request), values=changes, subscription_id=obj.pk)

    def delete_model(self, request, obj):
        delete_alert_subscription(actor=admin_actor(request), subscription_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for subscription in queryset:
            self.delete_model(request, subscription)
