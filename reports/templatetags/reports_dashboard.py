"""{% may_see_dashboard user as flag %}: whether the admin index shows the dashboard link; {% marketing_menu request
as lines %}: the marketer's section of the index (reports.admin_menu)."""

from django import template

from reports.admin_menu import marketing_menu as _marketing_menu
from reports.dashboard import may_see_dashboard as _may_see_dashboard

register = template.Library()


@register.simple_tag
def may_see_dashboard(user):
    return _may_see_dashboard(user)


@register.simple_tag
def marketing_menu(request):
    return _marketing_menu(request)
