"""The alert rules and subscriptions in the admin (saved through reports.alert_notices: checked, audited), and the
in-admin note a subscriber finds once on the alerts page."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages

from loyalty.alerts import raise_alert
from loyalty.models import AuditEntry, Message
from reports.alert_notices import notify_subscribers, save_alert_subscription
from reports.alert_rules import CAP_RULE, SPIKE_RULE
from reports.models_alerts import AlertRule, AlertSubscription
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db
RULES = "/admin/reports/alertrule/"
SUBSCRIPTIONS = "/admin/reports/alertsubscription/"


def staff_user(username, role, email=""):
    return StaffUserFactory(username=username, role=role, email=email, password=None)


@pytest.fixture
def boss(db):
    return staff_user("boss", "admin", "boss@example.com")


@pytest.fixture
def boss_client(client, boss):
    client.force_login(boss)
    return client


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_an_admin_sets_a_rules_threshold_and_floor_audited_and_a_bad_one_is_refused_on_the_form(boss_client):
    spike = AlertRule.objects.get(code=SPIKE_RULE)
    page = boss_client.get(f"{RULES}{spike.pk}/change/")
    assert page.status_code == 200
    assert "times the 7-day average" in page.content.decode()
    refused = boss_client.post(f"{RULES}{spike.pk}/change/", {"is_active": "on", "threshold": "0", "floor": "0"})
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors == {"threshold": ["Give a threshold above 0."]}
    saved = boss_client.post(f"{RULES}{spike.pk}/change/", {"is_active": "on", "threshold": "2.5", "floor": "1000"})
    assert saved.status_code == 302
    spike.refresh_from_db()
    assert (spike.threshold, spike.floor, spike.updated_by) == (Decimal("2.5"), Decimal(1000), "staff:boss")
    [entry] = AuditEntry.objects.filter(action="alert_rule.changed")
    assert (entry.old_values, entry.new_values) == (
        {"threshold": "3.0000", "floor": "0.0000"},
        {"threshold": "2.5", "floor": "1000"},
    )
    assert boss_client.get(f"{RULES}add/").status_code == 403
    assert boss_client.get(f"{RULES}{spike.pk}/delete/").status_code == 403


def test_an_admin_subscribes_a_marketer_and_clerks_are_not_offered(boss, boss_client):
    marketer = staff_user("marketing", "marketer", "mkt@example.com")
    clerk = staff_user("clerk", "clerk", "clerk@example.com")
    form = boss_client.get(f"{SUBSCRIPTIONS}add/").context["adminform"].form
    assert set(form.fields["user"].queryset) == {boss, marketer}
    assert clerk.is_active
    response = boss_client.post(
        f"{SUBSCRIPTIONS}add/",
        {"user": marketer.pk, "rules": [CAP_RULE, SPIKE_RULE], "by_email": "on", "is_active": "on"},
    )
    assert response.status_code == 302
    subscription = AlertSubscription.objects.get()
    assert (subscription.user, subscription.rules, subscription.by_email, subscription.in_admin) == (
        marketer,
        [CAP_RULE, SPIKE_RULE],
        True,
        False,
    )
    assert AuditEntry.objects.filter(action="alert_subscription.added", actor="staff:boss").count() == 1


def test_marketers_see_alerts_but_do_not_edit_rules_or_subscriptions(client):
    client.force_login(staff_user("marketing", "marketer"))
    assert client.get("/admin/loyalty/alert/").status_code == 200
    assert client.get(RULES).status_code == 403
    assert client.get(SUBSCRIPTIONS).status_code == 403


def test_a_subscribers_in_admin_note_shows_once_on_the_alerts_page(
    boss, boss_client, django_capture_on_commit_callbacks
):
    save_alert_subscription(actor="staff:root", values={"user": boss, "by_email": False})
    other = staff_user("other", "admin")
    raise_alert(rule=CAP_RULE, metric="points_earned_today", value=100, threshold=100, subject="member M1", key="c1")
    with django_capture_on_commit_callbacks(execute=True):
        notify_subscribers()
    assert Message.objects.get().recipient == "staff:boss"
    first = boss_client.get("/admin/loyalty/alert/")
    assert messages_of(first) == ["1 new alert: A member reached the daily points cap"]
    assert messages_of(boss_client.get("/admin/loyalty/alert/")) == []
    assert Message.objects.get().read_at is not None
    boss_client.force_login(other)
    assert messages_of(boss_client.get("/admin/loyalty/alert/")) == []
