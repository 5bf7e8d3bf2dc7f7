"""Celery tasks of the reports app: thin wrappers over its services, safe to run twice."""

from celery import shared_task


@shared_task(acks_late=True)
def evaluate_alerts(rules=None):
    """Periodic ("alerts: evaluate" every 10 minutes; "alerts: nightly jobs" at 06:05 for nightly_job_late):
    evaluate the alert rules (all, or the codes in `rules`), then tell the subscribers of every alert not told yet,
    whichever app raised it. Idempotent: alerts have keys, and each alert is told once."""
    from reports.alert_notices import notify_subscribers
    from reports.alert_rules import evaluate_rules

    raised = evaluate_rules(codes=rules)
    return {"raised": raised, **notify_subscribers()}
