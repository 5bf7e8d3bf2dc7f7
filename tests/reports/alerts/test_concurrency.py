"""On PostgreSQL, evaluations and sweeps running at the same moment (two workers, or the 06:00 and 06:05 tasks
overlapping) still raise each alert once and tell it once."""

import threading

import pytest
from django.db import connection
from django.utils import timezone

from loyalty.alerts import raise_alert
from loyalty.models import Alert, Message
from points.models import PointsPolicy
from reports.alert_notices import notify_subscribers, save_alert_subscription
from reports.alert_rules import CAP_RULE, evaluate_rules
from reports.models_alerts import AlertNotice
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import purchase

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 8


def run_together(count, work):
    barrier, results = threading.Barrier(count), [None] * count

    def worker(index):
        try:
            barrier.wait()
            results[index] = work()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_evaluations_at_the_same_moment_raise_each_members_cap_alert_once(store_a):
    PointsPolicy.objects.create(valid_from=timezone.now() - timezone.timedelta(days=1), daily_cap=100)
    members = MemberFactory.create_batch(3, home_store=store_a)
    for member in members:
        purchase(member, 100)
    results = run_together(THREADS, lambda: evaluate_rules(codes=[CAP_RULE]))
    assert sum(result[CAP_RULE] for result in results) == 3
    assert sorted(Alert.objects.values_list("detail__member", flat=True)) == sorted(str(m.pk) for m in members)


def test_sweeps_at_the_same_moment_tell_each_alert_once():
    boss = StaffUserFactory(username="boss", role="admin", email="boss@example.com", password=None)
    save_alert_subscription(actor="staff:root", values={"user": boss})
    for key in ("a", "b"):
        raise_alert(rule=CAP_RULE, metric="points_earned_today", value=100, threshold=100, key=key)
    results = run_together(THREADS, notify_subscribers)
    assert sorted(results, key=lambda r: r["alerts"]) == [{"alerts": 0, "messages": 0}] * (THREADS - 1) + [
        {"alerts": 2, "messages": 2}
    ]
    assert sorted(Message.objects.values_list("recipient", "status")) == [
        ("boss@example.com", "sent"),
        ("staff:boss", "sent"),
    ]
    assert AlertNotice.objects.count() == 2
