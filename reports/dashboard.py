"""The admin dashboard (SPEC §6): the morning's KPIs and charts for marketers and admins, in the admin's style.

The page is a shell: its script (static/reports/dashboard.js) fetches the report API with the admin's session
(plain GETs, so no CSRF token is involved) and draws what the API answers, so the dashboard shows the same figures
as the JSON and CSV reports. This module only decides who may open it and hands the script its configuration:
the report URLs, the last business date that has ended, the period choices and the translated labels.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from loyalty.access import staff_role
from loyalty.scheduling import yesterday
from members.jobs import latest_rfm_date
from members.models import Segment
from reports.views import REPORT_ROLES
from tiers.models import Tier

PERIOD_DAYS = (7, 30, 90)
DEFAULT_PERIOD_DAYS = 30
# Reports the page reads, by the path API.md gives them under /api/v1/reports/.
REPORTS = {
    "points": "points/",
    "liability": "liability/",
    "members": "members/",
    "segment_moves": "segment-moves/",
    "repurchase": "repurchase/",
    "retention": "retention/",
    "stored_value": "stored-value/",
}


def may_see_dashboard(user):
    """Admins and marketers: the roles that read the reports through the API (reports.views.REPORT_ROLES)."""
    return staff_role(user) in REPORT_ROLES


def report_urls():
    """The report endpoints' URLs, made from the RFM report's (the one report every deployment has), so that a
    script prefix (SCRIPT_NAME) is honoured."""
    base = reverse("report-rfm").removesuffix("rfm/")
    return {name: base + path for name, path in REPORTS.items()}


def labels():
    """The words the script writes (chart legends, units, messages), in the request's language."""
    return {
        "issued": _("Issued"),
        "redeemed": _("Redeemed"),
        "expired": _("Expired"),
        "points": _("points"),
        "members": _("members"),
        "expiring": _("Points due to expire"),
        "outstanding_after": _("Outstanding if nothing else changes"),
        "money_value": _("worth %(money)s at the cash rate"),
        "vs_previous": _("vs. previous %(days)s days"),
        "no_change": _("no change"),
        "new_from_zero": _("new (was 0)"),
        "percentage_points": _("pp"),
        "range": _("%(from)s to %(to)s, compared with %(previous_from)s to %(previous_to)s"),
        "no_data": _("No data for this period."),
        "unavailable": _("This report is not available (HTTP %(status)s)."),
        "failed": _("The report could not be loaded."),
        "cohort": _("Join month"),
        "cohort_members": _("Members"),
        "month_n": _("Month %(n)s"),
        "from_segment": _("Segment at the start"),
        "to_segment": _("Segment at the end"),
        "no_segment": _("not segmented"),
        "no_tier": _("no tier"),
        "no_rfm": _("No RFM run yet: segments come from the nightly rfm job (it needs PostgreSQL)."),
        "stayed": _("stayed in the segment"),
        "sv_store": _("Store"),
        "sv_principal": _("Principal"),
        "sv_bonus": _("Bonus"),
        "sv_total": _("Total"),
        "sv_all_stores": _("All stores"),
        "sv_no_store": _("no store (adjustments)"),
        "sv_owed": _("Owed now"),
        "sv_period": _("In the period"),
        "sv_topped_up": _("Topped up"),
        "sv_bonus_given": _("Bonus given"),
        "sv_paid": _("Paid"),
        "sv_refunded": _("Refunded to the balance"),
        "sv_withdrawn": _("Withdrawn"),
        "sv_bonus_expired": _("Bonus expired"),
    }


def _iso(day):
    return day.isoformat() if day else None


def dashboard_config(request):
    """What the script needs, rendered into the page with json_script."""
    return {
        "language": get_language(),
        "yesterday": yesterday().isoformat(),
        "periods": list(PERIOD_DAYS),
        "default_period": DEFAULT_PERIOD_DAYS,
        "rfm_as_of": _iso(latest_rfm_date()),
        "endpoints": report_urls(),
        "labels": labels(),
        "segments": [{"key": key, "label": str(label)} for key, label in Segment.choices],
        "tiers": [{"key": code, "label": name} for code, name in Tier.objects.values_list("code", "name")],
    }


def dashboard_view(request):
    """GET /admin/reports/dashboard/ (behind the admin's login): the dashboard page, or 403 for a clerk."""
    if not may_see_dashboard(request.user):
        raise PermissionDenied
    try:
        period = int(request.GET.get("days", DEFAULT_PERIOD_DAYS))
    except ValueError:
        period = DEFAULT_PERIOD_DAYS
    if period not in PERIOD_DAYS:
        period = DEFAULT_PERIOD_DAYS
    config = dashboard_config(request)
    config["period"] = period
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "subtitle": None,
        "periods": PERIOD_DAYS,
        "period": period,
        "dashboard": config,
    }
    return TemplateResponse(request, "admin/reports/dashboard.html", context)
