"""/api/v1/webhooks/: admins only; the secret is write-only (shown once, when made); event types are checked;
changes are audited without the secret."""

import pytest

from loyalty.models import AuditEntry, WebhookSubscription
from tests.conftest import member_client
from tests.factories import MemberFactory

URL = "/api/v1/webhooks/"
FIELDS = {"id", "url", "events", "is_active", "description", "created_at", "updated_at"}


@pytest.mark.django_db
def test_an_admin_subscribes_and_sees_the_made_secret_once(admin_api):
    body = {"url": "http://127.0.0.1:9000/hooks", "events": ["points.earned", "campaign.*"]}
    answer = admin_api.post(URL, body, format="json")

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert set(body) == FIELDS | {"secret"}
    subscription = WebhookSubscription.objects.get()
    assert body["secret"] == subscription.secret and body["secret"].startswith("whsec_")
    assert len(body["secret"]) > 40
    assert (body["id"], body["url"], body["events"], body["is_active"]) == (
        str(subscription.pk),
        "http://127.0.0.1:9000/hooks",
        ["points.earned", "campaign.*"],
        True,
    )
    shown = admin_api.get(f"{URL}{subscription.pk}/").json()
    assert set(shown) == FIELDS
    assert set(admin_api.get(URL).json()["results"][0]) == FIELDS
    audit = AuditEntry.objects.get(action="webhook.created")
    assert audit.actor == "staff:boss"
    assert subscription.secret not in str(audit.new_values)


@pytest.mark.django_db
def test_a_given_secret_is_kept_and_never_shown(admin_api):
    answer = admin_api.post(
        URL,
        {"url": "https://crm.example.com/in", "events": ["*"], "secret": "my-own-secret-of-24-chars"},
        format="json",
    )
    assert answer.status_code == 201
    assert answer.json()["secret"] == "my-own-secret-of-24-chars"
    subscription = WebhookSubscription.objects.get()

    changes = {"secret": "another-secret-of-24-char", "is_active": False}
    changed = admin_api.patch(f"{URL}{subscription.pk}/", changes, format="json")

    assert changed.status_code == 200
    assert "secret" not in changed.json() and changed.json()["is_active"] is False
    subscription.refresh_from_db()
    assert (subscription.secret, subscription.is_active) == ("another-secret-of-24-char", False)
    audit = AuditEntry.objects.get(action="webhook.changed")
    assert audit.old_values == {"is_active": True}
    assert audit.new_values == {"is_active": False, "secret": "changed"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.1:9000/", "events": ["points.stolen"]}, "events"),
        ({"url": "http://127.0.0.1:9000/", "events": ["points*"]}, "events"),
        ({"url": "http://127.0.0.1:9000/", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9000/", "events": "points.earned"}, "events"),
        ({"url": "ftp://127.0.0.1/", "events": ["*"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1:9000/", "events": ["*"]}, "url"),
        ({"url": "http://127.0.0.1:9000/", "events": ["*"], "secret": "short"}, "secret"),
        ({"events": ["*"]}, "url"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(admin_api, body, field):
    answer = admin_api.post(URL, body, format="json")
    assert answer.status_code == 400, answer.json()
    assert answer.json()["code"] == "invalid"
    assert list(answer.json()["errors"]) == [field]
    assert WebhookSubscription.objects.count() == 0


@pytest.mark.django_db
def test_a_subscription_is_deleted_with_an_audit_row(admin_api):
    body = {"url": "http://127.0.0.1:9000/", "events": ["*"]}
    subscription_id = admin_api.post(URL, body, format="json").json()["id"]
    assert admin_api.delete(f"{URL}{subscription_id}/").status_code == 204
    assert WebhookSubscription.objects.count() == 0
    assert AuditEntry.objects.filter(action="webhook.deleted", target_id=subscription_id).count() == 1
    assert admin_api.delete(f"{URL}{subscription_id}/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["clerk_api", "marketer_api", "app_client", "member"])
def test_only_admins_reach_the_webhooks(who, request, store_a):
    client = member_client(MemberFactory(home_store=store_a)) if who == "member" else request.getfixturevalue(who)
    subscription = WebhookSubscription.objects.create(url="http://127.0.0.1:9000/", events=["*"], secret="s" * 20)
    paths = [
        ("get", URL, None),
        ("post", URL, {"url": "http://127.0.0.1:9000/", "events": ["*"]}),
        ("get", f"{URL}{subscription.pk}/", None),
        ("patch", f"{URL}{subscription.pk}/", {"is_active": False}),
        ("delete", f"{URL}{subscription.pk}/", None),
        ("get", f"{URL}{subscription.pk}/deliveries/", None),
        ("post", f"{URL}{subscription.pk}/deliveries/1/resend/", None),
    ]
    for method, path, body in paths:
        answer = getattr(client, method)(path, body, format="json")
        assert answer.status_code == 403, (method, path)
        assert answer.json()["code"] == "permission_denied"
    subscription.refresh_from_db()
    assert subscription.is_active and WebhookSubscription.objects.count() == 1


@pytest.mark.django_db
def test_anonymous_callers_are_401(anonymous):
    assert anonymous.get(URL).status_code == 401


@pytest.mark.django_db
def test_resending_another_subscriptions_delivery_is_404(admin_api):
    first = WebhookSubscription.objects.create(url="http://127.0.0.1:9000/", events=["*"], secret="s" * 20)
    assert admin_api.post(f"{URL}{first.pk}/deliveries/12345/resend/").status_code == 404
    assert admin_api.get(f"{URL}999999/deliveries/").status_code == 404
