"""The operations part of `manage.py load_demo_data` (a step after reports.demo_data's history): what staff and
client apps set up around the members, made through the same services as the API and the admin, so that the
operations pages of the admin are not empty:

- a coupon batch: the "15 off 100" template issued to the members tagged VIP, run to its end;
- a client app (a POS at the first store), created as `manage.py create_api_client` does; its key is not printed
  (create one with that command to call the API);
- a webhook subscription to a local receiver (http://127.0.0.1:8765/...), the outbox events of a few changes
  made after it (a stored-value withdrawal and two top-ups) and their deliveries as the dispatcher makes them. Nothing
  is sent during the load: the receiver "was down", so the first delivery failed on each attempt until its day
  of retries ran out (the delivery is failed, and the alert rule `webhook_delivery_failed` fired); the others
  wait, pending;
- an alert subscription of the admin (every rule, in the admin), and the points alert rules evaluated once;
- a stored-value policy (a daily limit, no PIN) and a withdrawal of part of a top-up's unspent principal.

Written once: when the demo client app exists, nothing is added."""

from contextlib import ExitStack
from datetime import timedelta
from unittest import mock

from django.test import override_settings
from django.utils import timezone

from campaigns.jobs import run_coupon_batch
from campaigns.models_coupons import CouponTemplate
from campaigns.services import coupons as coupon_services
from loyalty import webhooks
from loyalty.clock import business_tz
from loyalty.credentials import create_api_client
from loyalty.errors import DomainError
from loyalty.models import ApiClient, WebhookDelivery
from members.models import Member, StaffUser, Store
from reports.alert_rules import CAP_RULE, SPIKE_RULE, evaluate_rules
from reports.demo_data import ACTOR, MARKETER, DemoClock, at, quiet_logs
from reports.models_alerts import AlertSubscription
from stored_value.models import StoredValueLot, StoredValuePolicy
from stored_value.services import balances as stored_value
from stored_value.services import configuration as stored_value_configuration

CLIENT_NAME = "Demo POS 演示收银机"
WEBHOOK_URL = "http://127.0.0.1:8765/demo-webhooks/"
WEBHOOK_EVENTS = ["stored_value.*", "points.adjusted", "member.updated"]
RECEIVER_DOWN = (None, "ConnectionRefusedError: [Errno 111] Connection refused")
BATCH_TAG = "vip"


def load_operations(*, stdout, style):
    """The step load_demo_data runs after the history: the operations data, once."""
    if ApiClient.objects.filter(name=CLIENT_NAME).exists():
        stdout.write("Demo operations already loaded (the demo client app exists): nothing added.")
        return
    stores = list(Store.objects.order_by("code"))
    if not stores or not Member.objects.filter(external_id__startswith="DEMO-").exists():
        stdout.write("No demo members: no demo operations.")
        return
    counts = {}
    today = timezone.localdate(timezone.now(), business_tz())
    # No nudge after commit: a nudge would deliver the webhook events at once (to a receiver that is not there).
    with ExitStack() as stack:
        clock = stack.enter_context(DemoClock().running())
        stack.enter_context(quiet_logs())
        stack.enter_context(override_settings(WEBHOOKS_KICK_ON_COMMIT=False))
        clock.now = at(today - timedelta(days=3), 9)
        counts["issued by the batch"] = _coupon_batch()
        _api_client(stores[0])
        _alert_subscription()
        clock.now = at(today - timedelta(days=2), 9)
        subscription = _webhook_subscription()
        _stored_value_policy()
        clock.now = at(today - timedelta(days=2), 10)
        counts["withdrawn (CNY)"] = _withdrawal()
        clock.now = at(today - timedelta(days=2), 10, 30)
        _top_ups(stores[0])
        webhooks.dispatch_events(now=clock.now)
        counts["webhook deliveries"] = WebhookDelivery.objects.filter(subscription=subscription).count()
        _fail_one_delivery(
            clock, subscription, first=clock.now + timedelta(minutes=1), last=at(today - timedelta(days=1), 11)
        )
        clock.now = at(today - timedelta(days=1), 20)
        # The points rules, as the periodic evaluation would. Not nightly_job_late: the demo history runs only the
        # nightly jobs its pages need, and the others would each fire "not started".
        counts["points alerts"] = sum(evaluate_rules(now=clock.now, codes=[SPIKE_RULE, CAP_RULE]).values())
    stdout.write(
        style.SUCCESS(
            "Demo operations: a coupon batch, a client app, a webhook subscription with its deliveries, an alert "
            "subscription, a stored-value policy and a withdrawal ("
            + ", ".join(f"{name}: {value}" for name, value in counts.items())
            + ")."
        )
    )


def _coupon_batch():
    template = CouponTemplate.objects.filter(reward_code="", name__contains="15 off 100").order_by("id").first()
    if template is None:
        return 0
    try:
        outcome = coupon_services.start_batch(
            actor=MARKETER,
            scope="demo",
            key="demo-coupon-batch",
            fingerprint="demo-coupon-batch",
            template_id=template.pk,
            tag=BATCH_TAG,
        )
    except DomainError:
        return 0
    # The workers would run it after the commit; the demo runs it here (a worker that gets it too finds it done).
    return run_coupon_batch(int(outcome.result["id"]))["issued"]


def _api_client(store):
    # As `manage.py create_api_client "Demo POS" --store <code> --scopes ...`; the key is shown nowhere.
    create_api_client(
        name=CLIENT_NAME,
        stores=[store],
        scopes=["members:read", "members:write", "purchases:write", "points:read", "rewards:read", "coupons:read"],
    )


def _alert_subscription():
    admin = StaffUser.objects.filter(username="admin").first()
    if admin is not None:
        AlertSubscription.objects.get_or_create(
            user=admin, defaults={"by_email": False, "in_admin": True, "updated_by": ACTOR}
        )


def _webhook_subscription():
    subscription, _secret = webhooks.create_subscription(
        actor="staff:admin",
        values={
            "url": WEBHOOK_URL,
            "events": WEBHOOK_EVENTS,
            "description": "Demo CRM receiver 演示接收端 (not running)",
        },
    )
    return subscription


def _stored_value_policy():
    if StoredValuePolicy.objects.exists():
        return
    stored_value_configuration.add_stored_value_policy(
        actor="staff:admin",
        role="admin",
        values={"daily_limit_cents": 200000, "pin_required": False, "pin_max_attempts": 5},
    )


def _withdrawal():
    """A member asks for part of her unspent top-up back; the manager pays it out (its bonus is forfeited in
    proportion)."""
    lot = (
        StoredValueLot.objects.filter(top_up__isnull=False, principal_remaining__gte=10000)
        .select_related("top_up")
        .order_by("id")
        .first()
    )
    if lot is None:
        return 0
    try:
        stored_value.withdraw(
            actor="staff:manager",
            role="manager",
            scope="demo",
            key="demo-withdrawal",
            fingerprint="demo-withdrawal",
            top_up_id=lot.top_up_id,
            amount_cents=10000,
            reason="Moving away, asked for 100 back 搬家，退回100元",
        )
    except DomainError:
        return 0
    return 100


def _top_ups(store):
    """Two members top up after the subscription: their events wait in the outbox for the receiver."""
    for number, member in enumerate(Member.objects.filter(external_id__startswith="DEMO-").order_by("id")[:2], 1):
        try:
            stored_value.top_up(
                actor=ACTOR,
                member_id=member.pk,
                amount_cents=20000,
                payment_method="wechat_pay",
                payment_ref=f"DEMO-OPS-TOPUP-{number}",
                fingerprint=f"demo-ops-top-up-{number}",
                store=store,
            )
        except DomainError:
            continue


def _fail_one_delivery(clock, subscription, *, first, last):
    """The first delivery, attempted when it was due and again when its retries ran out, against a receiver that
    refused the connection (recorded as the sender records it, without connecting)."""
    delivery = WebhookDelivery.objects.filter(subscription=subscription).order_by("id").first()
    if delivery is None:
        return
    with mock.patch.object(webhooks, "_send", return_value=RECEIVER_DOWN):
        for clock.now in (first, last):
            webhooks.attempt(delivery.pk, now=clock.now)


def register():
    from members.extensions import demo_data_steps

    demo_data_steps.register(load_operations)
