"""The reports app's tables, one module per part (alerts: reports.models_alerts)."""

from reports.models_alerts import AlertNotice, AlertRule, AlertSubscription  # noqa: F401
