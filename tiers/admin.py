"""Admin for the ladder and growth policy (marketers, admins), with an audit row for every edit, and read-only
views of members' tiers, tier history and growth entries."""

from django.contrib import admin
from django.forms.models import model_to_dict

from loyalty.admin import ReadOnlyAdmin, admin_actor
from loyalty.audit import record_audit
from tiers.models import GrowthEntry, GrowthPolicy, MemberTier, Tier, TierChange


class AuditedAdmin(admin.ModelAdmin):
    """Saves write an audit row with the old and new values (who changed a threshold, when, from what)."""

    def save_model(self, request, obj, form, change):
        old = model_to_dict(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        record_audit(actor=admin_actor(request), action=f"{obj._meta.model_name}.{'changed' if change else 'added'}",
                     target=obj, old=_jsonable(old), new=_jsonable(model_to_dict(obj)))


def _jsonable(values):
    return None if values is None else {key: str(value) if value is not None else None
                                        for key, value in values.items()}


@admin.register(Tier)
class TierAdmin(AuditedAdmin):
    list_display = ["rank", "code", "name", "entry_threshold", "retention_threshold", "hold_days",
                    "points_multiplier", "birthday_bonus", "discount_rate", "free_shipping"]
    list_display_links = ["code"]
    ordering = ["rank"]

    def has_delete_permission(self, request, obj=None):
        return False  # members hold tiers; retire one by raising its thresholds instead


@admin.register(GrowthPolicy)
class GrowthPolicyAdmin(AuditedAdmin):
    """A change of weights is a new version from a date: existing versions are read-only."""

    list_display = ["name", "valid_from", "tag", "priority", "per_currency_unit", "per_order", "per_active_day",
                    "per_share", "per_review", "per_campaign", "window_days"]
    list_filter = ["tag"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["created_by"]
        return [field.name for field in obj._meta.fields]

    def save_model(self, request, obj, form, change):
        obj.created_by = admin_actor(request)
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MemberTier)
class MemberTierAdmin(ReadOnlyAdmin):
    list_display = ["member", "tier", "since", "hold_until", "window_growth"]
    list_filter = ["tier"]
    list_select_related = ["member", "tier"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "member", "from_tier", "to_tier", "reason", "growth_value", "actor"]
    list_filter = ["reason", "to_tier"]
    list_select_related = ["member", "from_tier", "to_tier"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False


@admin.register(GrowthEntry)
class GrowthEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "member", "kind", "value", "occurred_at", "reference"]
    list_filter = ["kind"]
    list_select_related = ["member"]
    search_fields = ["member__member_no", "reference"]
    show_full_result_count = False
