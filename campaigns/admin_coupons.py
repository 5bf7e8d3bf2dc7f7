"""Admin screens for coupons (SPEC §10): templates for marketers (saved through campaigns.services.coupons, the
same functions the API calls; terms fixed once coupons were issued), and the coupons themselves read-only, found
by their code, a member's card number or phone (a clerk sees her stores' members' coupons)."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from campaigns.coupon_codes import MalformedCode, normalise
from campaigns.models_coupons import Coupon, CouponTemplate
from campaigns.services import coupons
from loyalty.admin import ConfigurationAdmin, ConfigurationForm, ReadOnlyAdmin, admin_actor
from points.admin import MemberScopedAdmin


class CouponTemplateForm(ConfigurationForm):
    class Meta:
        model = CouponTemplate
        fields = list(coupons.TEMPLATE_FIELDS)
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


@admin.register(CouponTemplate)
class CouponTemplateAdmin(ConfigurationAdmin):
    form = CouponTemplateForm
    list_display = [
        "name",
        "kind",
        "amount_off",
        "percent_off",
        "threshold",
        "issued_count",
        "total_quantity",
        "is_active",
    ]
    list_filter = ["kind", "is_active", "issue_on"]
    search_fields = ["name"]
    readonly_fields = ["issued_count", "created_by", "created_at"]

    def create(self, request, values):
        return coupons.create_template(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return coupons.change_template(actor=admin_actor(request), template_id=obj.pk, changes=changes)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.issued_count == 0)

    def delete_model(self, request, obj):
        coupons.delete_template(actor=admin_actor(request), template_id=obj.pk)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one by one, through the service
        return actions


@admin.register(Coupon)
class CouponAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    """Coupons are money at the counter: read-only here (issue, redeem and undo go through the services)."""

    list_display = ["code", "member", "template", "status", "valid_from", "valid_until", "used_at", "order_no", "store"]
    list_filter = ["status", "source"]
    list_select_related = ["member", "template", "store"]
    search_help_text = _("A coupon code, or a member's card number or phone.")
    search_fields = ["code"]  # shows the box; get_search_results decides

    def get_search_results(self, request, queryset, search_term):
        try:
            return queryset.filter(code=normalise(search_term)), False
        except MalformedCode:
            return super().get_search_results(request, queryset, search_term)
