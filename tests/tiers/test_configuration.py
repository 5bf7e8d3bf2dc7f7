"""The ladder and the growth policy as marketers configure them in the admin, through tiers.services: the change is
saved with exactly one audit row of its old and new values (and the cached ladder and policies are forgotten); a
refused change shows on the form and writes nothing; a failure after the row is written leaves neither the row nor
the audit. Every test runs at a fixed instant (noon in the business time zone, the clock does not tick)."""

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from loyalty.models import AuditEntry
from tests.factories import MemberFactory, StaffUserFactory, TagFactory
from tiers import services
from tiers.models import GrowthPolicy, Tier

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
TIERS, POLICIES = "/admin/tiers/tier/", "/admin/tiers/growthpolicy/"


@pytest.fixture(autouse=True)
def fixed_clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


def config_audits():
    return list(
        AuditEntry.objects.filter(target_type__in=["tiers.tier", "tiers.growthpolicy"])
        .order_by("id")
        .values("actor", "action", "target_id", "old_values", "new_values")
    )


def configuration_state():
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in (Tier, GrowthPolicy, AuditEntry)}


def tier_form(tier=None, **overrides):
    data = {
        "code": "platinum",
        "name": "白金",
        "rank": "4",
        "entry_threshold": "50000",
        "retention_threshold": "40000",
        "hold_days": "365",
        "points_multiplier": "2.50",
        "birthday_bonus": "200",
        "discount_rate": "0.85",
        "free_shipping": "on",
        "benefits": "",
    }
    if tier is not None:
        data = {
            "code": tier.code,
            "name": tier.name,
            "rank": str(tier.rank),
            "entry_threshold": str(tier.entry_threshold),
            "retention_threshold": str(tier.retention_threshold),
            "hold_days": str(tier.hold_days),
            "points_multiplier": str(tier.points_multiplier),
            "birthday_bonus": str(tier.birthday_bonus),
            "discount_rate": str(tier.discount_rate),
            "benefits": tier.benefits,
        }
        if tier.free_shipping:
            data["free_shipping"] = "on"
    data.update(overrides)
    return data


def policy_form(valid_from, **overrides):
    local = timezone.localtime(valid_from)
    return {
        "name": "v2",
        "valid_from_0": local.strftime("%Y-%m-%d"),
        "valid_from_1": local.strftime("%H:%M:%S"),
        "tag": "",
        "priority": "0",
        "per_currency_unit": "1.00",
        "per_order": "10.00",
        "per_active_day": "2.00",
        "per_share": "1.00",
        "per_review": "1.00",
        "per_campaign": "5.00",
        "window_days": "365",
        **overrides,
    }


def form_errors(response):
    assert response.status_code == 200, response.status_code
    return {
        name: [str(error) for error in errors] for name, errors in response.context["adminform"].form.errors.items()
    }


# --- Tiers ------------------------------------------------------------------------------------------------------


def test_a_marketer_changes_a_tiers_threshold_and_multiplier_with_one_audit_row(marketer_client):
    silver = Tier.objects.get(code="silver")
    assert next(t for t in services.ladder() if t.code == "silver").entry_threshold == 1000  # cached now

    response = marketer_client.post(
        f"{TIERS}{silver.pk}/change/", tier_form(silver, entry_threshold="1200", points_multiplier="1.30")
    )

    assert response.status_code == 302, form_errors(response)
    silver.refresh_from_db()
    assert (silver.entry_threshold, silver.points_multiplier) == (1200, Decimal("1.30"))
    assert next(t for t in services.ladder() if t.code == "silver").entry_threshold == 1200
    assert config_audits() == [
        {
            "actor": "staff:marketing",
            "action": "tiers.tier.changed",
            "target_id": str(silver.pk),
            "old_values": {"entry_threshold": 1000, "points_multiplier": "1.20"},
            "new_values": {"entry_threshold": 1200, "points_multiplier": "1.30"},
        }
    ]


def test_the_admin_adds_a_tier_with_one_audit_row(admin_client):
    response = admin_client.post(f"{TIERS}add/", tier_form())

    assert response.status_code == 302, form_errors(response)
    platinum = Tier.objects.get(code="platinum")
    assert [t.code for t in services.ladder()] == ["regular", "silver", "gold", "diamond", "platinum"]
    assert config_audits() == [
        {
            "actor": "staff:boss",
            "action": "tiers.tier.added",
            "target_id": str(platinum.pk),
            "old_values": None,
            "new_values": {
                "code": "platinum",
                "name": "白金",
                "rank": 4,
                "entry_threshold": 50000,
                "retention_threshold": 40000,
                "hold_days": 365,
                "points_multiplier": "2.50",
                "birthday_bonus": 200,
                "discount_rate": "0.85",
                "free_shipping": True,
                "benefits": "",
            },
        }
    ]


def test_a_retention_above_the_entry_threshold_shows_on_the_form_and_writes_nothing(marketer_client):
    silver = Tier.objects.get(code="silver")
    before = configuration_state()

    response = marketer_client.post(f"{TIERS}{silver.pk}/change/", tier_form(silver, retention_threshold="1500"))

    assert form_errors(response) == {"__all__": ["Constraint “tier_retention_not_above_entry” is violated."]}
    assert configuration_state() == before


def test_a_rank_another_tier_has_shows_on_the_form_and_writes_nothing(admin_client):
    before = configuration_state()

    response = admin_client.post(f"{TIERS}add/", tier_form(rank="3"))

    assert form_errors(response) == {"rank": ["Tier with this Rank already exists."]}
    assert configuration_state() == before


# --- Growth policies --------------------------------------------------------------------------------------------


def test_a_growth_policy_version_is_audited_against_the_version_it_follows(marketer_client, store_a):
    follows = GrowthPolicy.objects.get()  # the migration's, from 2000-01-01
    member = MemberFactory(home_store=store_a)
    assert services.growth_policy_for(member.pk, NOW + timedelta(days=2)).pk == follows.pk  # cached now

    response = marketer_client.post(f"{POLICIES}add/", policy_form(NOW + timedelta(days=1), per_order="20.00"))

    assert response.status_code == 302, form_errors(response)
    policy = GrowthPolicy.objects.get(created_by="staff:marketing")
    assert services.growth_policy_for(member.pk, NOW + timedelta(days=2)).pk == policy.pk
    assert services.growth_policy_for(member.pk, NOW).pk == follows.pk
    assert config_audits() == [
        {
            "actor": "staff:marketing",
            "action": "tiers.growth_policy.added",
            "target_id": str(policy.pk),
            "old_values": {
                "id": follows.pk,
                "name": "Default (fixed weights)",
                "valid_from": "2000-01-01T08:00:00+08:00",
                "per_order": "10.00",
            },
            "new_values": {
                "id": policy.pk,
                "name": "v2",
                "valid_from": "2026-03-11T12:00:00+08:00",
                "per_order": "20.00",
            },
        }
    ]


def test_a_growth_policy_starting_in_the_past_shows_on_the_form_and_writes_nothing(marketer_client):
    before = configuration_state()

    response = marketer_client.post(f"{POLICIES}add/", policy_form(NOW - timedelta(days=1)))

    assert form_errors(response) == {
        "valid_from": ["A new version starts now or later; this valid_from is in the past."]
    }
    assert configuration_state() == before


def test_a_tags_second_policy_at_the_same_instant_is_refused_but_not_another_tags(marketer_client):
    students, staff = TagFactory(code="students"), TagFactory(code="staff")
    starts = NOW + timedelta(days=7)
    assert marketer_client.post(f"{POLICIES}add/", policy_form(starts, tag=str(students.pk))).status_code == 302
    assert marketer_client.post(f"{POLICIES}add/", policy_form(starts, tag=str(staff.pk))).status_code == 302
    before = configuration_state()

    response = marketer_client.post(f"{POLICIES}add/", policy_form(starts, tag=str(students.pk), per_order="30.00"))

    assert form_errors(response) == {
        "valid_from": ["Another version starts at the same instant: start this one at another time."]
    }
    assert configuration_state() == before


def test_saved_growth_policy_versions_are_only_viewed(admin_client):
    policy = GrowthPolicy.objects.get()

    assert admin_client.get(f"{POLICIES}{policy.pk}/change/").status_code == 200
    response = admin_client.post(f"{POLICIES}{policy.pk}/change/", policy_form(NOW, name="renamed"))

    assert response.status_code == 403
    policy.refresh_from_db()
    assert (policy.name, policy.created_by) == ("Default (fixed weights)", "migration")
    assert config_audits() == []


# --- Atomicity ----------------------------------------------------------------------------------------------------

WRITES = {
    "create_tier": lambda: services.create_tier(
        actor="staff:x",
        values={"code": "platinum", "name": "白金", "rank": 4, "entry_threshold": 50000, "retention_threshold": 40000},
    ),
    "change_tier": lambda: services.change_tier(
        actor="staff:x", tier_id=Tier.objects.get(code="silver").pk, changes={"entry_threshold": 1200}
    ),
    "add_growth_policy": lambda: services.add_growth_policy(
        actor="staff:x", values={"name": "v2", "per_order": Decimal("20")}
    ),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_failure_after_the_row_is_written_leaves_neither_the_row_nor_the_audit(write, monkeypatch):
    saved = []

    def record_audit(*, target, **kwargs):
        saved.append(target.pk)
        raise RuntimeError("the audit log is down")

    monkeypatch.setattr("loyalty.versions.record_audit", record_audit)
    before = configuration_state()

    with pytest.raises(RuntimeError, match="the audit log is down"):
        WRITES[write]()

    assert len(saved) == 1 and saved[0] is not None  # saved, then the audit failed
    assert configuration_state() == before
