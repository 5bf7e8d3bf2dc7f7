"""Alerts (SPEC §6): a rule on a metric crossed its threshold. Apps raise them here; reports lists them and turns
them into messages to staff."""

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loyalty.audit import record_audit
from loyalty.errors import NotFoundError
from loyalty.models import Alert

STAFF_ALERT_KIND = "staff_alert"  # the kind of the messages that tell staff of alerts (reports' subscriptions)


def staff_inbox_address(user):
    """The recipient of a staff user's in-admin alert notes (inbox messages to no member): her actor label."""
    return f"staff:{user.get_username()}"


def raise_alert(*, rule, metric, value, threshold, subject="", detail=None, key=None):
    """Record an alert; with a `key`, at most one alert per key ever (a second raise returns the first). Safe inside
    the caller's transaction: a duplicate key rolls back only its own savepoint."""
    if key is not None:
        existing = Alert.objects.filter(key=key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            return Alert.objects.create(
                rule=rule,
                metric=metric,
                value=value,
                threshold=threshold,
                subject=subject,
                detail=detail or {},
                key=key,
            )
    except IntegrityError:
        return Alert.objects.get(key=key)


def raise_alerts(alerts):
    """Record many alerts at once (a rule's evaluation may find hundreds): each an unsaved Alert with a `key`; those
    whose key is new are written, in batches, and a key that exists already writes nothing, however many processes
    raise it at once (INSERT ... ON CONFLICT DO NOTHING on the unique key). Returns the keys this call wrote. Call
    inside the caller's transaction or none."""
    if any(alert.key is None for alert in alerts):
        raise ValueError("raise_alerts needs a key on every alert")
    fields = [f for f in Alert._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    written = []
    for first in range(0, len(alerts), RAISE_BATCH):
        batch = {alert.key: alert for alert in alerts[first : first + RAISE_BATCH]}
        existing = set(Alert.objects.filter(key__in=list(batch)).values_list("key", flat=True))
        fresh = [alert for key, alert in batch.items() if key not in existing]
        if not fresh:
            continue
        params = [f.get_db_prep_save(getattr(alert, f.attname), connection) for alert in fresh for f in fields]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {Alert._meta.db_table} ({columns}) VALUES "  # noqa: S608 - our own column names
                + ", ".join([row_sql] * len(fresh))
                + " ON CONFLICT DO NOTHING RETURNING key",
                params,
            )
            written += [key for (key,) in cursor.fetchall()]
    return written


RAISE_BATCH = 1000


def acknowledge_alert(*, actor, alert_id):
    """Staff saw the alert: who and when, once (acknowledging it again changes nothing); one audit row."""
    with transaction.atomic(durable=True):
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise NotFoundError(_("No alert with this id."))
        if alert.acknowledged_at is not None:
            return alert, False
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), actor
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
        record_audit(
            actor=actor,
            action="alert.acknowledged",
            target=alert,
            old={"acknowledged_at": None},
            new={"acknowledged_at": alert.acknowledged_at, "acknowledged_by": actor},
        )
    return alert, True
