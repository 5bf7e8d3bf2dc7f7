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


REDACTED = "[redacted]"


def redact_values(value, *, keys, traces=frozenset(), exact=frozenset()):
    """`value` (an audit row's old or new values) with what is personal replaced by REDACTED: the value under any of
    `keys` at any depth (a key whose value was empty stays empty: which fields changed is kept), any text that
    contains one of `traces` (phones, emails, external ids), and any text equal to one of `exact` (names,
    birthdays: too short to look for inside other text)."""
    if isinstance(value, dict):
        return {
            key: (REDACTED if item not in (None, "") else item)
            if key in keys
            else redact_values(item, keys=keys, traces=traces, exact=exact)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_values(item, keys=keys, traces=traces, exact=exact) for item in value]
    if isinstance(value, str) and (value in exact or any(trace in value for trace in traces)):
        return REDACTED
    return value


def audit_values_under(entries, keys):
    """Every value the audit rows `entries` (a queryset) recorded under one of `keys`, at any depth: {key: set}."""
    found = {key: set() for key in keys}

    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key in found and isinstance(item, str) and item:
                    found[key].add(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for old, new in entries.values_list("old_values", "new_values"):
        walk(old)
        walk(new)
    return found


def redact_audit(entries, *, keys, traces=frozenset(), exact=frozenset()):
    """Redact the audit rows `entries` (a queryset) with redact_values: who acted, the action and when stay, and so
    do the names of the fields that changed. One bulk UPDATE per 500 changed rows, never a save per row. Returns
    how many rows changed."""
    traces = frozenset(trace for trace in traces if trace)
    exact = frozenset(value for value in exact if value)
    changed = []
    for entry in entries.only("pk", "old_values", "new_values").order_by("pk"):
        old = redact_values(entry.old_values, keys=keys, traces=traces, exact=exact)
        new = redact_values(entry.new_values, keys=keys, traces=traces, exact=exact)
        if (old, new) != (entry.old_values, entry.new_values):
            entry.old_values, entry.new_values = old, new
            changed.append(entry)
    AuditEntry.objects.bulk_update(changed, ["old_values", "new_values"], batch_size=500)
    return len(changed)
