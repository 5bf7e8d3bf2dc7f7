"""A loaded demo (load_demo_data) shows something on every main admin page: members and their purchases, points,
rewards and redemptions, coupons, stored value, campaigns, the nightly jobs' runs and (on PostgreSQL) RFM results,
WeChat identities, an adjustment waiting for approval and a merged duplicate."""

from datetime import datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from members.management.commands import load_demo_data
from reports import demo_data

SHANGHAI = ZoneInfo("Asia/Shanghai")

# Admin pages that stay empty after a demo load by design, each with its reason. Every other model registered in
# the admin site must show at least one row.
NEVER_POPULATED = {
    # django-celery-beat's schedules other than the crontabs the nightly jobs use: the project schedules none
    "django_celery_beat.clockedschedule": "no one-off task is scheduled",
    "django_celery_beat.solarschedule": "no task runs at sunrise or sunset",
    "django_celery_beat.intervalschedule": "the project's periodic tasks run on crontabs",
    # no group is made: the demo staff have their roles through loyalty.roles, not through Django groups
    "auth.group": "roles are given without Django groups",
}
POSTGRESQL_ONLY = {"members.rfmsnapshot": "the RFM job needs PostgreSQL (it says so on SQLite)"}


def changelists():
    from django.contrib import admin

    skip = set(NEVER_POPULATED) | (set() if connection.vendor == "postgresql" else set(POSTGRESQL_ONLY))
    labels = sorted(model._meta.label_lower for model in admin.site._registry)
    return [label.replace(".", "/") for label in labels if label not in skip]


@pytest.mark.slow
@pytest.mark.django_db
@time_machine.travel(datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI), tick=False)
def test_a_loaded_demo_fills_the_main_admin_pages(client, monkeypatch):
    monkeypatch.setattr(load_demo_data, "MEMBERS", 40)
    monkeypatch.setattr(demo_data, "HISTORY_DAYS", 210)  # reaches back past the top-ups, coupons and campaign
    out = StringIO()
    call_command("load_demo_data", stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    assert client.login(username="admin", password=password)

    empty = []
    for path in changelists():
        response = client.get(f"/admin/{path}/")
        assert response.status_code == 200, path
        if not response.context["cl"].result_list:
            empty.append(path)

    assert empty == []
    summary = out.getvalue()
    assert "coupons issued" in summary and "top-ups" in summary
    from campaigns.models_coupons import Coupon, CouponStatus
    from members.models import WechatIdentity
    from points.models import AdjustmentRequest
    from stored_value.models import Payment

    assert Coupon.objects.filter(status=CouponStatus.USED).exists()
    assert Coupon.objects.filter(template__reward_code="demo-coffee").exists()  # the free-coffee reward's coupon
    assert Payment.objects.exists()
    assert WechatIdentity.objects.count() == 10
    assert AdjustmentRequest.objects.filter(status="pending").count() == 1
    from members.models import Member, MemberMerge

    (merge,) = MemberMerge.objects.all()
    duplicate = Member.objects.get(pk=merge.duplicate_id)
    assert (duplicate.status, duplicate.merged_into_id) == ("merged", merge.survivor_id)

    # the operations step: each page above has these rows, made by the services
    from campaigns.models_coupons import CouponBatch
    from loyalty.models import Alert, ApiClient, OutboxEvent, WebhookDelivery, WebhookSubscription
    from reports.models_alerts import AlertSubscription
    from stored_value.models import StoredValuePolicy, Withdrawal

    (batch,) = CouponBatch.objects.all()
    assert (batch.status, batch.tag, batch.error) == ("done", "vip", "") and batch.issued > 0
    assert Coupon.objects.filter(source="bulk").count() == batch.issued
    (api_client,) = ApiClient.objects.all()
    assert (api_client.all_stores, api_client.stores.count(), api_client.is_active) == (False, 1, True)
    assert "lk_" not in summary  # the client's key is printed nowhere
    (subscription,) = WebhookSubscription.objects.all()
    assert subscription.url == "http://127.0.0.1:8765/demo-webhooks/"
    events = OutboxEvent.objects.count()
    deliveries = sorted(WebhookDelivery.objects.values_list("status", "attempts"))
    assert events == 3 and len(deliveries) == events  # the withdrawal and two top-ups
    assert deliveries[0] == ("failed", 2) and {status for status, _ in deliveries[1:]} == {"pending"}
    assert not Alert.objects.filter(rule="nightly_job_late").exists()  # not evaluated by the demo
    (alert,) = Alert.objects.filter(rule="webhook_delivery_failed")
    assert alert.detail["last_error"] == "ConnectionRefusedError: [Errno 111] Connection refused"
    (alert_subscription,) = AlertSubscription.objects.all()
    assert (alert_subscription.user.username, alert_subscription.rules) == ("admin", [])
    assert StoredValuePolicy.objects.count() == 1
    (withdrawal,) = Withdrawal.objects.all()
    assert withdrawal.principal_cents == 10000
    assert "Demo operations:" in summary
