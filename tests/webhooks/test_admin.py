"""The webhooks in the admin: an admin subscribes (the secret shown once, the URL checked as in the API), lists the
events and deliveries and sends deliveries again; other roles do not see them. The schedule delivers every minute."""

import json

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from loyalty import webhooks
from loyalty.models import AuditEntry, DeliveryStatus, WebhookDelivery, WebhookSubscription
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import adjust

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_an_admin_subscribes_in_the_admin_and_sees_the_secret_once(admin_client, settings):
    answer = admin_client.post(
        "/admin/loyalty/webhooksubscription/add/",
        {"url": "http://127.0.0.1:9000/hooks", "events": ["points.earned", "tier.*"], "is_active": "on"},
        follow=True,
    )
    assert answer.status_code == 200
    subscription = WebhookSubscription.objects.get()
    assert subscription.events == ["points.earned", "tier.*"]
    shown = [str(message) for message in get_messages(answer.wsgi_request)]
    assert any(subscription.secret in text and "shown once" in text for text in shown)
    assert AuditEntry.objects.filter(action="webhook.created", actor="staff:boss").count() == 1
    page = admin_client.get(f"/admin/loyalty/webhooksubscription/{subscription.pk}/change/").content.decode()
    assert subscription.secret not in page


def test_a_subscriptions_url_and_events_are_labelled_in_chinese(admin_client):
    """Issue 15: the form's fields were labelled "URL" and "Events" on the Chinese admin."""
    page = admin_client.get("/admin/loyalty/webhooksubscription/add/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    form = page.context["adminform"].form

    assert [str(form[name].label) for name in ("url", "events")] == ["网址", "事件"]


def test_the_admin_refuses_an_unsafe_url_in_production(admin_client, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    answer = admin_client.post(
        "/admin/loyalty/webhooksubscription/add/",
        {"url": "https://169.254.169.254/latest/", "events": ["*"], "is_active": "on"},
        follow=True,
    )
    assert answer.status_code == 200
    assert WebhookSubscription.objects.count() == 0
    assert any("not a public address" in str(m) for m in get_messages(answer.wsgi_request))


def test_deliveries_are_listed_and_resent_from_the_admin(admin_client, receiver, subscribe, store_a):
    subscribe(receiver.url(), events=["points.adjusted"])
    adjust(MemberFactory(home_store=store_a), 5)
    webhooks.deliver_everything_due()
    delivery = WebhookDelivery.objects.get()

    listing = admin_client.get("/admin/loyalty/webhookdelivery/")
    assert listing.status_code == 200 and "points.adjusted" in listing.content.decode()
    assert admin_client.get("/admin/loyalty/outboxevent/").status_code == 200
    admin_client.post(
        "/admin/loyalty/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]}, follow=True
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.resends) == (DeliveryStatus.PENDING, 1)
    call_command("deliver_webhooks")
    assert receiver.event_ids() == [str(delivery.event_id)] * 2


@pytest.mark.parametrize("role", ["clerk", "marketer"])
def test_other_roles_do_not_see_the_webhooks_in_the_admin(client, role, store_a):
    client.force_login(StaffUserFactory(username=f"{role}-1", role=role, stores=[store_a]))
    for page in ("webhooksubscription", "webhookdelivery", "outboxevent"):
        assert client.get(f"/admin/loyalty/{page}/").status_code == 403


def test_the_default_schedule_delivers_webhooks_every_minute():
    task = PeriodicTask.objects.select_related("interval").get(name="webhooks: deliver")
    assert task.task == "loyalty.tasks.deliver_webhooks"
    assert json.loads(task.args) == []
    assert (task.interval.every, task.interval.period) == (60, "seconds")
