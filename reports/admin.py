"""The reports app's admin screens, one module per part (alerts: reports.admin_alerts)."""

from reports import admin_alerts  # noqa: F401
