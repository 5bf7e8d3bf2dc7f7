"""The alerts admin: a read-only list of the alerts apps raised, and acknowledging them (who and when, audited)
through loyalty.alerts."""

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from loyalty.alerts import raise_alert
from loyalty.models import Alert, AuditEntry
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

ALERTS = "/admin/loyalty/alert/"


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


def test_acknowledging_alerts_records_who_and_when_once_with_an_audit_row(marketer_client):
    alert = raise_alert(
        rule="campaign_budget_exhausted", metric="budget_used", value=100, threshold=100, subject="campaign:1", key="k1"
    )
    listing = marketer_client.get(ALERTS)
    assert [a.pk for a in listing.context["cl"].result_list] == [alert.pk]

    before = timezone.now()

    response = marketer_client.post(ALERTS, {"action": "acknowledge", "_selected_action": [alert.pk]})

    assert messages_of(response) == ["Acknowledged 1 alert(s)."]
    alert.refresh_from_db()
    assert alert.acknowledged_by == "staff:marketing"
    assert before <= alert.acknowledged_at <= timezone.now()
    audit = AuditEntry.objects.get()
    assert (audit.action, audit.actor, audit.target_type, audit.target_id, audit.old_values) == (
        "alert.acknowledged",
        "staff:marketing",
        "loyalty.alert",
        str(alert.pk),
        {"acknowledged_at": None},
    )
    assert audit.new_values == {
        "acknowledged_at": timezone.localtime(alert.acknowledged_at).isoformat(),
        "acknowledged_by": "staff:marketing",
    }
    marketer_client.get(ALERTS)  # shows (and so clears) the message

    response = marketer_client.post(ALERTS, {"action": "acknowledge", "_selected_action": [alert.pk]})

    assert messages_of(response) == ["Acknowledged 0 alert(s)."]
    assert AuditEntry.objects.count() == 1
    assert Alert.objects.filter(acknowledged_at__isnull=True).count() == 0
    assert marketer_client.get(f"{ALERTS}{alert.pk}/delete/").status_code == 403


def test_clerks_do_not_see_alerts(client, clerk_a):
    raise_alert(rule="r", metric="m", value=1, threshold=1)
    client.force_login(clerk_a)

    assert client.get(ALERTS).status_code == 403
