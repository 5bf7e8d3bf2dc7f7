"""{% may_see_dashboard user as flag %}: whether the admin index shows the dashboard link."""

from django import template

from reports.dashboard import may_see_dashboard as _may_see_dashboard

register = template.Library()


@register.simple_tag
def may_see_dashboard(user):
    return _may_see_dashboard(user)
