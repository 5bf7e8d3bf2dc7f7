"""Alerts (SPEC §6): a rule on a metric crossed its threshold. Apps raise them here; reports lists them and turns
them into messages to staff."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from loyalty.audit import record_audit
from loyalty.errors import NotFoundError
from loyalty.models import Alert


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


def acknowledge_alert(*, actor, alert_id):
    """Staff saw the alert: who and when, once (acknowledging it again changes nothing); one audit row."""
    with transaction.atomic(durable=True):
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            raise NotFoundError("No alert with this id.")
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
