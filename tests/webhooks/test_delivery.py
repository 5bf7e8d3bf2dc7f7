"""Delivery to a real HTTP receiver: the body and headers of API.md, a signature the receiver can verify, retries
with backoff and the same event id, failure with an alert after 24 hours, order per member, resend, no redirects,
and the connection going to the address that was checked."""

import hashlib
import hmac
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty import webhook_http, webhooks
from loyalty.models import Alert, DeliveryStatus, OutboxEvent, WebhookDelivery
from tests.factories import MemberFactory
from tests.points.helpers import adjust, purchase
from tests.webhooks.conftest import SECRET


def verify(secret, request, tolerance=300, now=None):
    """What a receiver does (README "Webhooks"): recompute the HMAC over "<t>.<raw body>" and compare in constant
    time, refusing a timestamp too far from its clock."""
    fields = dict(part.split("=", 1) for part in request.headers["Loyalty-Signature"].split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256).hexdigest()
    now = now if now is not None else timezone.now().timestamp()
    return hmac.compare_digest(expected, fields["v1"]) and abs(now - timestamp) <= tolerance


@pytest.fixture
def member(store_a):
    return MemberFactory(home_store=store_a)


def test_a_purchase_reaches_the_receiver_signed_with_the_fixed_shape(receiver, subscribe, member):
    subscription = subscribe(receiver.url("/hooks?source=loyalty"), events=["points.earned"])
    result = purchase(member, "128.00", order_no="A1001")

    webhooks.deliver_everything_due()

    [request] = receiver.requests
    event = OutboxEvent.objects.get()
    assert request.path == "/hooks?source=loyalty"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Loyalty-Event-Id"] == str(event.pk)
    assert verify(SECRET, request)
    assert not verify("another-secret-0123456789", request)
    tampered = type(request)(request.path, request.headers, request.body.replace(b"128", b"999"))
    assert not verify(SECRET, tampered)
    body = request.json
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["id"] == str(event.pk)
    assert body["type"] == "points.earned"
    assert body["created_at"] == timezone.localtime(event.created_at).isoformat()
    assert body["data"]["member"] == str(member.pk)
    assert body["data"]["points"] == result["points"]["awarded"] == 128
    assert body["data"]["reference"] == "A1001"
    assert body["data"]["status"] == "pending"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.subscription_id, delivery.status, delivery.attempts) == (
        subscription.pk,
        DeliveryStatus.DELIVERED,
        1,
    )
    assert delivery.last_status_code == 200 and delivery.last_error == ""
    assert delivery.last_latency_ms is not None and delivery.delivered_at is not None


def test_a_receiver_answering_500_twice_gets_the_event_once_more_after_the_failures(receiver, subscribe, member):
    receiver.statuses = [500, 500]
    subscribe(receiver.url())
    adjust(member, 50)
    start = timezone.now()

    webhooks.deliver_everything_due(now=start)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.PENDING, 1, 500)
    assert delivery.last_error == "HTTP 500: receiver says no"
    assert delivery.next_attempt_at == start + timedelta(minutes=1)
    webhooks.deliver_everything_due(now=start + timedelta(seconds=59))  # not due yet
    assert len(receiver.requests) == 1

    webhooks.deliver_everything_due(now=start + timedelta(minutes=1))
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.next_attempt_at) == (2, start + timedelta(minutes=3))  # then 2 minutes

    webhooks.deliver_everything_due(now=start + timedelta(minutes=3))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 3, 200)

    for hours in (1, 5, 30):  # delivered: never again
        webhooks.deliver_everything_due(now=start + timedelta(hours=hours))
    event = OutboxEvent.objects.get()
    assert receiver.event_ids() == [str(event.pk)] * 3
    assert [request.body for request in receiver.requests] == [receiver.requests[0].body] * 3  # the same body
    assert all(verify(SECRET, request) for request in receiver.requests)
    assert Alert.objects.count() == 0


def test_retries_back_off_up_to_an_hour_for_24_hours_then_the_delivery_fails_with_an_alert(receiver, subscribe, member):
    receiver.default_status = 503
    subscription = subscribe(receiver.url(), events=["points.adjusted"])
    adjust(member, 50)
    start = timezone.now()
    webhooks.deliver_everything_due(now=start)
    delivery = WebhookDelivery.objects.get()
    attempt_times, gaps = [start], []
    while delivery.status == DeliveryStatus.PENDING:
        gaps.append(delivery.next_attempt_at - attempt_times[-1])
        attempt_times.append(delivery.next_attempt_at)
        webhooks.deliver_everything_due(now=delivery.next_attempt_at)
        delivery.refresh_from_db()
        assert len(attempt_times) < 100

    minutes = [gap // timedelta(minutes=1) for gap in gaps]
    assert minutes[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert set(minutes[6:]) == {60}
    assert attempt_times[-2] - start < timedelta(hours=24) <= attempt_times[-1] - start
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == len(receiver.requests) == len(attempt_times) == 30
    assert delivery.next_attempt_at is None
    alert = Alert.objects.get()
    assert (alert.rule, alert.metric, alert.value) == ("webhook_delivery_failed", "attempts", 30)
    assert alert.key == f"webhook-delivery-failed:{delivery.pk}:0"
    assert alert.detail["subscription"] == str(subscription.pk)
    assert alert.detail["event"] == str(delivery.event_id)
    assert alert.detail["last_status_code"] == 503
    webhooks.deliver_everything_due(now=start + timedelta(days=3))
    assert len(receiver.requests) == 30  # failed: no more attempts


def test_events_of_one_member_arrive_in_order_a_later_one_waits_while_an_earlier_one_is_retried(
    receiver, subscribe, store_a
):
    anna, ben = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    subscribe(receiver.url(), events=["points.adjusted"])
    adjust(anna, 1)
    adjust(ben, 2)
    adjust(anna, 3)
    adjust(anna, 4)
    receiver.statuses = [500]  # the first request (anna's first event) fails
    start = timezone.now()

    webhooks.deliver_everything_due(now=start)
    # anna's first failed: her later ones wait; ben's went through.
    assert [r.json["data"]["points"] for r in receiver.requests] == [1, 2]
    pending = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, member_id=anna.pk)
    assert sorted(pending.values_list("attempts", flat=True)) == [0, 0, 1]

    webhooks.deliver_everything_due(now=start + timedelta(seconds=30))
    assert len(receiver.requests) == 2  # still waiting for the retry

    webhooks.deliver_everything_due(now=start + timedelta(minutes=1))
    assert [r.json["data"]["points"] for r in receiver.requests] == [1, 2, 1, 3, 4]
    first, _, third, fourth = (str(pk) for pk in OutboxEvent.objects.order_by("id").values_list("pk", flat=True))
    anna_ids = [r.event_id for r in receiver.requests if r.json["data"]["member"] == str(anna.pk)]
    assert anna_ids == [first, first, third, fourth]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}


def test_a_redirect_is_not_followed(receiver, subscribe, member):
    receiver.statuses = [302]
    receiver.extra_headers = {"Location": "http://169.254.169.254/latest/meta-data/"}
    subscribe(receiver.url(), events=["points.adjusted"])
    adjust(member, 5)

    webhooks.deliver_everything_due()

    assert len(receiver.requests) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.PENDING, 302)


def test_a_receiver_that_is_down_is_retried(subscribe, member):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subscribe(f"http://127.0.0.1:{port}/hooks", events=["points.adjusted"])
    adjust(member, 5)
    start = timezone.now()

    webhooks.deliver_everything_due(now=start)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.PENDING, 1, None)
    assert delivery.last_error.startswith("ConnectionRefusedError")
    assert delivery.next_attempt_at == start + timedelta(minutes=1)


def test_the_connection_goes_to_the_address_checked_with_the_host_name_kept(receiver, subscribe, member, monkeypatch):
    """The host name is resolved once per attempt, by the check; the request is sent to that address (here a name
    only our fake DNS knows), with the name in the Host header."""
    looked_up = []

    def fake_dns(host, port, *args, **kwargs):
        looked_up.append(host)
        assert host == "hooks.example.test"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]

    monkeypatch.setattr(webhook_http, "_getaddrinfo", fake_dns)
    subscribe(f"http://hooks.example.test:{receiver.port}/in", events=["points.adjusted"])
    adjust(member, 5)

    webhooks.deliver_everything_due()

    [request] = receiver.requests
    assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert looked_up == ["hooks.example.test"]
    assert WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED


def test_a_delivery_is_resent_with_the_same_event_id(receiver, subscribe, member, admin_api):
    subscription = subscribe(receiver.url(), events=["points.adjusted"])
    adjust(member, 5)
    webhooks.deliver_everything_due()
    delivery = WebhookDelivery.objects.get()

    answer = admin_api.post(f"/api/v1/webhooks/{subscription.pk}/deliveries/{delivery.pk}/resend/")

    assert answer.status_code == 200, answer.json()
    assert answer.json()["status"] == "pending"
    assert (answer.json()["attempts"], answer.json()["resends"]) == (0, 1)
    webhooks.deliver_everything_due()
    assert receiver.event_ids() == [str(delivery.event_id)] * 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.resends) == (DeliveryStatus.DELIVERED, 1, 1)


def test_deliveries_are_listed_with_their_attempts_status_and_latency(receiver, subscribe, member, admin_api):
    receiver.statuses = [500]
    subscription = subscribe(receiver.url(), events=["points.adjusted"])
    adjust(member, 5)
    adjust(member, 6)
    start = timezone.now()
    webhooks.deliver_everything_due(now=start)

    answer = admin_api.get(f"/api/v1/webhooks/{subscription.pk}/deliveries/")

    assert answer.status_code == 200
    rows = answer.json()["results"]
    events = list(OutboxEvent.objects.order_by("id"))
    assert [(row["event"]["id"], row["event"]["type"]) for row in rows] == [
        (str(events[1].pk), "points.adjusted"),
        (str(events[0].pk), "points.adjusted"),
    ]
    newest, oldest = rows
    assert (oldest["status"], oldest["attempts"], oldest["response_status"]) == ("pending", 1, 500)
    assert oldest["next_attempt_at"] == timezone.localtime(start + timedelta(minutes=1)).isoformat()
    assert isinstance(oldest["latency_ms"], int)
    assert (newest["status"], newest["attempts"], newest["response_status"]) == ("pending", 0, None)  # waits
    assert oldest["member"] == newest["member"] == str(member.pk)
    only_pending = admin_api.get(f"/api/v1/webhooks/{subscription.pk}/deliveries/?status=delivered")
    assert only_pending.json()["results"] == []
    assert admin_api.get(f"/api/v1/webhooks/{subscription.pk}/deliveries/?status=lost").status_code == 400


def test_an_inactive_subscription_gets_nothing_and_its_pending_deliveries_wait(receiver, subscribe, member):
    subscription = subscribe(receiver.url(), events=["points.adjusted"])
    adjust(member, 5)
    webhooks.dispatch_events()
    webhooks.change_subscription(actor="test", subscription_id=subscription.pk, changes={"is_active": False})
    adjust(member, 6)  # no active subscription wants it now: no event at all

    webhooks.deliver_everything_due()

    assert receiver.requests == []
    assert OutboxEvent.objects.count() == 1
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
    webhooks.change_subscription(actor="test", subscription_id=subscription.pk, changes={"is_active": True})
    webhooks.deliver_everything_due()
    assert [r.json["data"]["points"] for r in receiver.requests] == [5]


@pytest.mark.django_db(transaction=True)
def test_after_commit_the_events_are_delivered_at_once_without_a_broker(receiver, subscribe, member, settings):
    """Development and tests have no broker (tasks run in-process): the nudge after commit delivers at once."""
    settings.WEBHOOKS_KICK_ON_COMMIT = True
    subscribe(receiver.url(), events=["points.earned"])

    purchase(member, "10.00", order_no="K1")

    assert [r.json["data"]["reference"] for r in receiver.requests] == ["K1"]
    assert WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED


def test_the_readme_sample_verifies_a_real_delivery_and_refuses_a_forgery(receiver, subscribe, member, settings):
    """The receiver's code README "Webhooks" shows, run as it is printed there."""
    readme = (settings.BASE_DIR / "README.md").read_text()
    section = readme.split("## Webhooks\n", 1)[1]
    sample = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(sample, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    readme_verify = namespace["verify"]
    subscribe(receiver.url(), events=["points.adjusted"])
    adjust(member, 5)
    webhooks.deliver_everything_due()

    [request] = receiver.requests
    header = request.headers["Loyalty-Signature"]
    assert readme_verify(SECRET, request.body, header)
    assert not readme_verify(SECRET, request.body + b" ", header)
    assert not readme_verify("wrong-secret-0123456789", request.body, header)
    assert not readme_verify(SECRET, request.body, "t=1,v1=" + header.split("v1=")[1])  # too old
    assert not readme_verify(SECRET, request.body, "garbage")
