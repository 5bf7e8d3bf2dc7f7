"""The reports app's admin screens, one module per part (alerts: reports.admin_alerts; the dashboard's link on the
admin index: reports.admin_dashboard)."""

from reports import admin_alerts, admin_dashboard  # noqa: F401
