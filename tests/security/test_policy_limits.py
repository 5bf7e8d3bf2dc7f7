"""Finding 3: a marketer raised her own adjustment limit by adding a points policy with a huge
marketer_adjustment_limit, then adjusted +1,000,000.

The role limits (clerk_adjustment_limit, marketer_adjustment_limit, transfer_daily_limit) are changed by an admin
only: the service refuses anyone else with 403 permission_denied and writes nothing, and the admin form shows them
to a marketer as fixed fields. Each has an operator ceiling (MAX_CLERK_ADJUSTMENT_LIMIT 5000,
MAX_MARKETER_ADJUSTMENT_LIMIT 50000, MAX_TRANSFER_DAILY_LIMIT 10000): a policy above it is refused for everyone
(400 invalid), and the limit in force is never above it, whatever a policy row says."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loyalty.errors import InvalidInput, PermissionDeniedError
from loyalty.models import AuditEntry
from members.services import link_household
from points import services
from points.models import LedgerEntry, PointsAccount, PointsPolicy
from tests.conftest import staff_client
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import adjust

pytestmark = pytest.mark.django_db

POLICIES = "/admin/points/pointspolicy/"
LIMITS = ["clerk_adjustment_limit", "marketer_adjustment_limit", "transfer_daily_limit"]


def split(value):
    local = timezone.localtime(value)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def policy_form(**overrides):
    now = timezone.now()
    form = {
        "valid_from_0": split(now)[0],
        "valid_from_1": split(now)[1],
        "expiry_mode": "rolling",
        "expiry_months": "12",
        "daily_cap": "5000",
        "cash_points_per_unit": "100",
        "cash_max_share": "0.50",
        "clerk_adjustment_limit": "500",
        "marketer_adjustment_limit": "5000",
        "clerk_daily_adjustment_total": "2000",
        "marketer_daily_adjustment_total": "20000",
        "member_daily_adjustment_total": "10000",
        "transfer_daily_limit": "1000",
    }
    return {**form, **{name: str(value) for name, value in overrides.items()}}


def balance(member):
    account = PointsAccount.objects.filter(member=member).first()
    return account.available if account else 0


def adjust_by_api(client, member, points, key):
    return client.post(
        f"/api/v1/members/{member.pk}/points/adjustments/",
        {"points": points, "reason": "goodwill"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def written():
    return PointsPolicy.objects.count(), AuditEntry.objects.filter(action="points.policy.added").count()


@pytest.fixture
def marketer():
    return StaffUserFactory(username="marketing", role="marketer")


@pytest.fixture
def marketer_admin(client, marketer):
    client.force_login(marketer)
    return client


# --- Through the admin, as a logged-in marketer ----------------------------------------------------------------


def test_a_marketer_cannot_raise_her_limit_in_the_admin_and_then_adjust_a_million(marketer_admin, marketer, member_a):
    response = marketer_admin.post(f"{POLICIES}add/", policy_form(marketer_adjustment_limit=10_000_000, daily_cap=6000))

    # The limits are fixed fields on her form: what she posts for them is ignored, the rest is saved.
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = PointsPolicy.objects.get(created_by="staff:marketing")
    assert (policy.daily_cap, policy.marketer_adjustment_limit, policy.clerk_adjustment_limit) == (6000, 5000, 500)
    adjusted = adjust_by_api(staff_client(marketer), member_a, 1_000_000, "million")
    assert adjusted.status_code == 403, adjusted.content
    assert (adjusted.json()["code"], adjusted.json()["limit"]) == ("adjustment_limit", 5000)
    assert balance(member_a) == 0
    assert not LedgerEntry.objects.filter(member=member_a).exists()


def test_the_limits_are_fixed_fields_on_a_marketers_form_and_keep_the_current_values(marketer_admin):
    PointsPolicy.objects.create(valid_from=timezone.now() - timedelta(days=1), clerk_adjustment_limit=300)
    form = marketer_admin.get(f"{POLICIES}add/").context["adminform"].form
    assert all(form.fields[name].disabled for name in LIMITS)
    assert form.initial["clerk_adjustment_limit"] == 300

    response = marketer_admin.post(
        f"{POLICIES}add/", policy_form(clerk_adjustment_limit=5000, transfer_daily_limit=9999, daily_cap=7000)
    )

    assert response.status_code == 302
    new = PointsPolicy.objects.order_by("-valid_from").first()
    assert (new.daily_cap, new.clerk_adjustment_limit, new.transfer_daily_limit) == (7000, 300, 1000)


def test_an_admin_changes_the_limits_in_the_admin_up_to_the_ceiling(client, admin_user):
    client.force_login(admin_user)
    form = client.get(f"{POLICIES}add/").context["adminform"].form
    assert not any(form.fields[name].disabled for name in LIMITS)

    before = written()
    over = client.post(f"{POLICIES}add/", policy_form(marketer_adjustment_limit=50_001))
    assert over.status_code == 200
    assert "marketer_adjustment_limit" in over.context["adminform"].form.errors
    assert written() == before

    response = client.post(f"{POLICIES}add/", policy_form(marketer_adjustment_limit=50_000))
    assert response.status_code == 302
    assert PointsPolicy.objects.get(created_by="staff:boss").marketer_adjustment_limit == 50_000


# --- Through the service -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketer", "clerk", None])
@pytest.mark.parametrize("field", LIMITS)
def test_the_service_refuses_a_limit_change_by_anyone_but_an_admin(role, field):
    before = written()
    with pytest.raises(PermissionDeniedError) as refused:
        services.add_points_policy(actor="staff:marketing", role=role, values={field: 2000})
    assert (refused.value.status, refused.value.code) == (403, "permission_denied")
    assert list(refused.value.extra["errors"]) == [field]
    assert written() == before


def test_the_service_lets_a_marketer_change_the_rest_and_keeps_the_limits_in_force():
    services.add_points_policy(
        actor="staff:boss", role="admin", values={"clerk_adjustment_limit": 300, "transfer_daily_limit": 200}
    )
    policy = services.add_points_policy(
        actor="staff:marketing",
        role="marketer",
        values={"valid_from": timezone.now() + timedelta(hours=1), "daily_cap": 3000},
    )
    assert (policy.daily_cap, policy.clerk_adjustment_limit, policy.transfer_daily_limit) == (3000, 300, 200)
    assert policy.marketer_adjustment_limit == 5000


@pytest.mark.parametrize(
    ("field", "ceiling"),
    [("clerk_adjustment_limit", 5000), ("marketer_adjustment_limit", 50_000), ("transfer_daily_limit", 10_000)],
)
def test_a_policy_above_the_ceiling_is_refused_even_for_an_admin(field, ceiling):
    before = written()
    with pytest.raises(InvalidInput) as refused:
        services.add_points_policy(actor="staff:boss", role="admin", values={field: ceiling + 1})
    assert list(refused.value.errors) == [field]
    assert written() == before
    assert getattr(services.add_points_policy(actor="staff:boss", role="admin", values={field: ceiling}), field) == (
        ceiling
    )


def test_the_ceiling_is_an_operator_setting(settings):
    settings.MAX_MARKETER_ADJUSTMENT_LIMIT = 100
    before = written()
    with pytest.raises(InvalidInput):
        services.add_points_policy(actor="staff:boss", role="admin", values={"marketer_adjustment_limit": 101})
    assert written() == before


# --- The limit in force ------------------------------------------------------------------------------------------


def test_the_adjustment_limit_in_force_is_never_above_the_ceiling(marketer, member_a, settings):
    PointsPolicy.objects.create(valid_from=timezone.now() - timedelta(days=1), marketer_adjustment_limit=10_000_000)
    api = staff_client(marketer)
    refused = adjust_by_api(api, member_a, 1_000_000, "million")
    assert refused.status_code == 403
    assert (refused.json()["code"], refused.json()["limit"]) == ("adjustment_limit", 50_000)
    settings.MAX_MARKETER_ADJUSTMENT_LIMIT = 100
    assert adjust_by_api(api, member_a, 101, "a101").status_code == 403
    assert adjust_by_api(api, member_a, 100, "a100").status_code == 201
    assert balance(member_a) == 100


def test_the_transfer_limit_in_force_is_never_above_the_ceiling(admin_api, store_a, settings):
    mother, daughter = MemberFactory(home_store=store_a), MemberFactory(home_store=store_a)
    link_household(actor="staff:clerk", member=mother, other=daughter)
    PointsPolicy.objects.create(
        valid_from=timezone.now() - timedelta(days=1), transfers_enabled=True, transfer_daily_limit=10_000_000
    )
    adjust(mother, 20_000)
    url = f"/api/v1/members/{mother.pk}/points/transfers/"
    body = {"to": str(daughter.pk), "points": 10_001}
    refused = admin_api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="t1")
    assert refused.status_code == 409, refused.content
    assert (refused.json()["code"], refused.json()["limit"]) == ("transfer_limit", 10_000)
    body["points"] = 10_000
    assert admin_api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="t2").status_code == 201
    assert (balance(mother), balance(daughter)) == (10_000, 10_000)
