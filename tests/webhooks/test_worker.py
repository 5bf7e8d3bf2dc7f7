"""A real Celery worker on a real Redis broker (tests/jobs/conftest.py: a redis-server and workers of this test's
own, on the test database) killed with SIGKILL in the middle of a delivery: the event is delivered at least once
after the worker is gone, an event written meanwhile is not lost, and the member's order holds."""

import threading

import pytest
from django.utils import timezone

from loyalty import events
from loyalty.models import DeliveryStatus, OutboxEvent, WebhookDelivery
from loyalty.tasks import deliver_webhooks
from tests.factories import MemberFactory
from tests.jobs.conftest import wait_for
from tests.points.helpers import adjust

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKER_SETTINGS = {"WEBHOOKS_TIMEOUT_SECONDS": 3, "WEBHOOKS_LEASE_SECONDS": 8, "CELERY_VISIBILITY_TIMEOUT": 5}


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_delivery_leads_to_delivery_at_least_once_and_no_lost_event(
    receiver, subscribe, store_a, start_worker, settings, monkeypatch
):
    settings.WEBHOOKS_KICK_ON_COMMIT = True  # commits send the deliver task to the broker, as in production
    monkeypatch.setattr(events, "_last_kick", 0.0)
    receiver.hold = threading.Event()  # the first request hangs until released
    member = MemberFactory(home_store=store_a)
    subscribe(receiver.url(), events=["points.adjusted"])
    first_worker = start_worker(**WORKER_SETTINGS)

    adjust(member, 5)  # committed: the nudge reaches the worker, which posts and waits on the receiver
    wait_for(receiver.arrived.is_set, 60, message="the first delivery to reach the receiver")
    first_worker.kill()
    receiver.hold.set()  # the dead worker's request is answered into a closed connection

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert delivery.leased_until > timezone.now()  # taken by the dead worker until its lease runs out
    events._last_kick = 0.0
    adjust(member, 6)  # written while no worker runs: it waits in the outbox and the broker

    second_worker = start_worker(**WORKER_SETTINGS)

    def all_delivered():
        deliver_webhooks.delay()  # what beat sends every minute
        deliveries = WebhookDelivery.objects.all()
        return len(deliveries) == 2 and {d.status for d in deliveries} == {DeliveryStatus.DELIVERED}

    try:
        wait_for(all_delivered, 90, interval=1, message="both events to be delivered")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{first_worker.log()[-3000:]}\n{second_worker.log()[-3000:]}") from None

    first, second = OutboxEvent.objects.order_by("id")
    assert receiver.event_ids() == [str(first.pk), str(first.pk), str(second.pk)]  # at least once, in order
    assert [r.json["data"]["points"] for r in receiver.requests] == [5, 5, 6]
    redelivered = WebhookDelivery.objects.get(event=first)
    assert (redelivered.attempts, redelivered.last_status_code) == (2, 200)
    assert WebhookDelivery.objects.get(event=second).attempts == 1
