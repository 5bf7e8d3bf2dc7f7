"""SSRF: with production's rule (WEBHOOKS_ALLOW_PRIVATE_URLS off) a webhook URL must be https to a host that resolves
only to public addresses, checked when it is saved and again, resolving anew, before every delivery (a name that
changes its answer after the check reaches nothing internal). Development and tests allow http and loopback."""

import secrets
import socket
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from loyalty import webhook_http, webhooks
from loyalty.errors import InvalidInput
from loyalty.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tests.factories import MemberFactory
from tests.points.helpers import adjust

URL = "/api/v1/webhooks/"
PUBLIC = "93.184.215.14"  # a public address (TEST-NET ranges are reserved, so they would be refused)


@pytest.fixture
def production_rule(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False


def fake_dns(monkeypatch, answers):
    """Host names resolve as `answers` says ({host: [addresses]} or a callable host -> addresses); nothing else."""

    def getaddrinfo(host, port, *args, **kwargs):
        addresses = answers(host) if callable(answers) else answers.get(host)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
            for address in addresses
        ]

    monkeypatch.setattr(webhook_http, "_getaddrinfo", getaddrinfo)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hooks",
        "http://10.0.0.1/hooks",
        "http://crm.example.com/hooks",  # http at all
        "https://127.0.0.1/hooks",
        "https://10.0.0.1/hooks",
        "https://192.168.1.20/hooks",
        "https://172.16.0.5/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/",  # carrier-grade NAT (shared)
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://[fe80::1]/hooks",
        "https://[fd00::1]/hooks",
        "https://localhost/hooks",  # a name resolving to loopback (the real resolver)
    ],
)
def test_production_refuses_to_save_a_url_that_is_not_https_to_a_public_address(production_rule, admin_api, url):
    answer = admin_api.post(URL, {"url": url, "events": ["*"]}, format="json")

    assert answer.status_code == 400, answer.json()
    assert answer.json()["code"] == "invalid"
    assert list(answer.json()["errors"]) == ["url"]
    assert WebhookSubscription.objects.count() == 0


@pytest.mark.django_db
def test_production_refuses_a_name_with_any_internal_address_and_one_that_does_not_resolve(
    production_rule, monkeypatch
):
    fake_dns(monkeypatch, {"mixed.example.com": [PUBLIC, "10.1.2.3"], "crm.example.com": [PUBLIC]})
    for url in ("https://mixed.example.com/in", "https://nowhere.example.com/in"):
        with pytest.raises(InvalidInput) as refused:
            webhooks.create_subscription(actor="test", values={"url": url, "events": ["*"]})
        assert list(refused.value.errors) == ["url"]
    subscription, _ = webhooks.create_subscription(
        actor="test", values={"url": "https://crm.example.com/in", "events": ["*"]}
    )
    assert subscription.url == "https://crm.example.com/in"
    with pytest.raises(InvalidInput):  # a change of URL is checked too
        webhooks.change_subscription(
            actor="test", subscription_id=subscription.pk, changes={"url": "https://169.254.169.254/"}
        )
    subscription.refresh_from_db()
    assert subscription.url == "https://crm.example.com/in"


@pytest.mark.django_db
def test_development_allows_http_and_loopback(admin_api):
    answer = admin_api.post(URL, {"url": "http://localhost:8001/hooks", "events": ["*"]}, format="json")
    assert answer.status_code == 201, answer.json()


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_delivery_to_a_loopback_address_is_refused_before_connecting(receiver, subscribe, store_a, settings, host):
    """Saved when loopback was allowed (or by another path): at delivery time production's rule still refuses it
    and no connection is made to the receiver listening there."""
    subscribe(f"https://{host}:{receiver.port}/hooks", events=["points.adjusted"])
    adjust(MemberFactory(home_store=store_a), 5)
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False

    webhooks.deliver_everything_due()

    assert receiver.connections == 0 and receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.PENDING, 1, None)
    assert delivery.last_error.startswith("refused, nothing sent: the host")
    assert "not a public address" in delivery.last_error


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hooks", "http://10.0.0.1/hooks"])
def test_a_delivery_to_an_http_url_is_refused_in_production(receiver, subscribe, store_a, settings, url):
    subscribe(url.format(port=receiver.port), events=["points.adjusted"])
    adjust(MemberFactory(home_store=store_a), 5)
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False

    webhooks.deliver_everything_due()

    assert receiver.connections == 0
    assert WebhookDelivery.objects.get().last_error == "refused, nothing sent: the URL must use https"


@pytest.mark.django_db
def test_dns_rebinding_a_name_checked_public_at_save_and_internal_at_delivery_reaches_nothing(
    production_rule, receiver, store_a, monkeypatch
):
    answers = {"hooks.example.com": [PUBLIC]}
    fake_dns(monkeypatch, answers)
    subscription, _ = webhooks.create_subscription(
        actor="test", values={"url": f"https://hooks.example.com:{receiver.port}/in", "events": ["*"]}
    )
    answers["hooks.example.com"] = ["127.0.0.1"]  # the attacker's DNS now points at us
    adjust(MemberFactory(home_store=store_a), 5)

    webhooks.deliver_everything_due()

    assert receiver.connections == 0
    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert delivery.status == DeliveryStatus.PENDING
    assert "resolves to 127.0.0.1: not a public address" in delivery.last_error


def test_production_refuses_to_start_with_private_urls_allowed():
    environment = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),  # a key production accepts: the webhook setting is what it refuses
        "ALLOWED_HOSTS": "loyalty.example.com",
        "SMS_BACKEND": "loyalty.messaging.HttpSmsBackend",
        "SMS_HTTP_URL": "https://sms.example.com/send",
        "WEBHOOKS_ALLOW_PRIVATE_URLS": "true",
        "PATH": "/usr/bin:/bin",
    }
    run = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "-c", "import loyalty.settings"],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "WEBHOOKS_ALLOW_PRIVATE_URLS must be off in production" in run.stderr


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("fe80::1%eth0", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("ff02::1", False),
    ],
)
def test_which_addresses_are_public(address, public):
    assert webhook_http.is_public_address(address) is public
