"""The audit log: who changed what, from which values to which."""

from datetime import date, datetime, time
from decimal import Decimal
from uuid import UUID

from django.db.models import Model
from django.utils import timezone

from loyalty.models import AuditEntry


def record_audit(*, actor, action, target, old=None, new=None):
    """One audit row for a change a person or client app made. Call inside the service's transaction."""
    AuditEntry.objects.create(
        actor=actor,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk),
        old_values=json_safe(old),
        new_values=json_safe(new),
    )


def json_safe(value):
    """A value as an audit row keeps it: decimals as strings (never floats), dates and times in ISO 8601 (instants
    in the business time zone, as the API shows them), rows by their id; dicts and lists item by item."""
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, datetime) and timezone.is_aware(value):
        return timezone.localtime(value).isoformat()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item) for item in value]
    return value
