"""Admin for the ladder and growth policy (marketers, admins), saved through tiers.services (one audit row with the
old and new values for every edit), and read-only views of members' tiers, tier history and growth entries."""

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from loyalty.admin import ConfigurationAdmin, ReadOnlyAdmin, admin_actor
from members.extensions import member_glance
from points.admin import tier_choices
from tiers import selectors, services
from tiers.models import TIER_CHANGE_REASONS, GrowthEntry, GrowthPolicy, MemberTier, Tier, TierChange


def tier_glance(member):
    """The member page's summary: her tier, her growth towards the next tier and what keeps her tier, from
    selectors.member_standing (the API's GET /members/{id}/tier/)."""
    standing = selectors.member_standing(member.pk)
    tier, next_tier, growth = standing["tier"], standing["next_tier"], standing["growth_value"]
    if tier is None:
        return [(_("tier"), _("No tiers are set up."))]
    if next_tier is None:
        progress = _("%(growth)s growth value; the highest tier.") % {"growth": growth}
    else:
        progress = format_html(
            '<progress value="{}" max="{}"></progress> {}',
            min(growth, next_tier["entry_threshold"]),
            next_tier["entry_threshold"],
            _("%(growth)s of %(threshold)s growth value for %(next)s: %(left)s to go.")
            % {
                "growth": growth,
                "threshold": next_tier["entry_threshold"],
                "next": next_tier["name"],
                "left": standing["to_next"],
            },
        )
    retention = _("%(threshold)s growth value keeps %(tier)s") % {
        "threshold": tier["retention_threshold"],
        "tier": tier["name"],
    }
    if standing["hold_until"]:
        retention += _(" (held until %(date)s)") % {"date": standing["hold_until"][:10]}
    return [(_("tier"), tier["name"]), (_("progress"), progress), (_("retention"), retention)]


member_glance.register(tier_glance, key="tier")


def reward_tier_choices():
    """The ladder for a reward's eligible tiers (points.admin.tier_choices), lowest first."""
    return [(tier.code, f"{tier.name} ({tier.code})") for tier in Tier.objects.order_by("rank")]


tier_choices.register(reward_tier_choices, key="tiers")


@admin.register(Tier)
class TierAdmin(ConfigurationAdmin):
    fields = services.TIER_FIELDS
    list_display = [
        "rank",
        "code",
        "name",
        "entry_threshold",
        "retention_threshold",
        "hold_days",
        "points_multiplier",
        "birthday_bonus",
        "discount_rate",
        "free_shipping",
    ]
    list_display_links = ["code"]
    ordering = ["rank"]

    def create(self, request, values):
        return services.create_tier(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return services.change_tier(actor=admin_actor(request), tier_id=obj.pk, changes=changes)

    def has_delete_permission(self, request, obj=None):
        return False  # members hold tiers; retire one by raising its thresholds instead


@admin.register(GrowthPolicy)
class GrowthPolicyAdmin(ConfigurationAdmin):
    """A change of weights is a new version from a date: saved versions are read-only."""

    fields = services.GROWTH_POLICY_FIELDS
    list_display = [
        "name",
        "valid_from",
        "tag",
        "priority",
        "per_currency_unit",
        "per_order",
        "per_active_day",
        "per_share",
        "per_review",
        "per_campaign",
        "window_days",
        "created_by",
    ]
    list_filter = ["tag"]

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else [*self.fields, "created_by", "created_at"]

    def create(self, request, values):
        return services.add_growth_policy(actor=admin_actor(request), values=values)

    def has_change_permission(self, request, obj=None):
        return False  # as points policies: a saved version is only viewed

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MemberTier)
class MemberTierAdmin(ReadOnlyAdmin):
    list_display = ["member", "tier", "since", "hold_until", "window_growth"]
    list_filter = ["tier"]
    list_select_related = ["member", "tier"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False


class TierChangeReasonFilter(admin.SimpleListFilter):
    """The stored reason codes (upgrade, downgrade ...) under their translated labels."""

    title = _("reason")
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return list(TIER_CHANGE_REASONS.items())

    def queryset(self, request, queryset):
        return queryset.filter(reason=self.value()) if self.value() else queryset


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "member", "from_tier", "to_tier", "shown_reason", "growth_value", "actor"]
    list_filter = [TierChangeReasonFilter, "to_tier"]
    list_select_related = ["member", "from_tier", "to_tier"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False
    readonly_fields = ["shown_reason"]
    # On a change's page: its reason as the list shows it, not as stored (no migration: the codes stay).
    SHOWN_FIELDS = {"reason": "shown_reason"}

    @admin.display(description=_("reason"), ordering="reason")
    def shown_reason(self, change):
        return TIER_CHANGE_REASONS.get(change.reason, change.reason)


@admin.register(GrowthEntry)
class GrowthEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "member", "kind", "value", "occurred_at", "reference"]
    list_filter = ["kind"]
    list_select_related = ["member"]
    search_fields = ["member__member_no", "reference"]
    show_full_result_count = False
