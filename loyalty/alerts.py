"""Alerts (SPEC §6): a rule on a metric crossed its threshold. Apps raise them here; reports lists them and turns
them into messages to staff."""

from django.db import IntegrityError, transaction

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
