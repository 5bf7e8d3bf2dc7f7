"""The marketer's section on the admin index: earning rules, rewards, tiers, campaigns, message templates and
reports, each one line with its previews, whichever app owns the screen (reports reads every app, so the section
lives here). Marketers and admins see it; a line shows only when the user may see its screen."""

from django.contrib import admin
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from campaigns.models import Campaign
from campaigns.models_coupons import CouponTemplate
from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, staff_role
from loyalty.models import MessageTemplate
from points.models import EarningRule, Reward
from reports.dashboard import may_see_dashboard
from tiers.models import GrowthPolicy, Tier


def changelist(model):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


# (model, what the line says, [(link text, "preview" or another model)] of its extra pages)
MARKETING_LINES = [
    (
        EarningRule,
        _("How members earn: purchases, sign-ins, reviews, referrals."),
        [(_("Preview a purchase"), "preview")],
    ),
    (Reward, _("What points buy: gifts, coupons, vouchers; stock and tier limits."), []),
    (Tier, _("The tier ladder, thresholds and benefits."), [(_("Growth policy"), GrowthPolicy)]),
    (
        Campaign,
        _("Multipliers, bonuses and coupons for a target; its member count before activation."),
        [(_("Coupon templates"), CouponTemplate)],
    ),
    (MessageTemplate, _("Message texts per kind, channel and language, with a preview."), []),
]


def marketing_menu(request):
    """[{label, url, description, links: [(text, url)]}] for a marketer or an admin (others: none), then the
    reports' dashboard."""
    if staff_role(request.user) not in (ROLE_ADMIN, ROLE_MARKETER) and not request.user.is_superuser:
        return []
    lines = []
    for model, description, extras in MARKETING_LINES:
        model_admin = admin.site._registry.get(model)
        if model_admin is None or not model_admin.has_view_permission(request):
            continue
        links = []
        for text, target in extras:
            if target == "preview":
                links.append((text, reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_preview")))
            elif (other := admin.site._registry.get(target)) and other.has_view_permission(request):
                links.append((text, changelist(target)))
        lines.append(
            {
                "label": model._meta.verbose_name_plural,
                "url": changelist(model),
                "description": description,
                "links": links,
            }
        )
    if may_see_dashboard(request.user):
        lines.append(
            {
                "label": _("Reports"),
                "url": reverse("reports-dashboard"),
                "description": _("KPIs, points flow, liability, segments, tiers and retention"),
                "links": [],
            }
        )
    return lines
