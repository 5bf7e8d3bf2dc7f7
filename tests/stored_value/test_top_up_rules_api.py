"""/api/v1/stored-value/top-up-rules/: marketers' CRUD of versioned top-up rules, its validation, and the preview of
what a top-up would get."""

import pytest
import time_machine

from loyalty.models import AuditEntry
from stored_value.models import TopUpRule
from tests.stored_value.helpers import top_up

pytestmark = pytest.mark.django_db

URL = "/api/v1/stored-value/top-up-rules/"
TIERS = [{"amount": "500.00", "bonus": "80.00", "points": 200}, {"amount": "100.00", "bonus": "10.00"}]


def body(**extra):
    return {"name": "充100送10", "valid_from": "2026-03-01T00:00:00+08:00", "tiers": TIERS, **extra}


def test_a_marketer_creates_a_rule_its_tiers_sorted_in_decimal_strings_and_stored_in_cents(marketer_api):
    response = marketer_api.post(URL, body(bonus_valid_days=30), format="json")

    assert response.status_code == 201, response.json()
    answer = response.json()
    assert answer["tiers"] == [
        {"amount": "100.00", "bonus": "10.00", "points": 0, "growth": 0},
        {"amount": "500.00", "bonus": "80.00", "points": 200, "growth": 0},
    ]
    assert (answer["store"], answer["bonus_valid_days"], answer["is_active"]) == (None, 30, True)
    rule = TopUpRule.objects.get()
    assert rule.tiers == [
        {"amount": 10_000, "bonus": 1_000, "points": 0, "growth": 0},
        {"amount": 50_000, "bonus": 8_000, "points": 200, "growth": 0},
    ]
    assert AuditEntry.objects.filter(action="stored_value.top_up_rule.added").count() == 1
    assert marketer_api.get(f"{URL}{rule.pk}/").json() == answer


@pytest.mark.parametrize(
    ("tiers", "errors"),
    [
        ([], {"tiers.non_field_errors": ["This list may not be empty."]}),
        (
            [{"amount": "100.00", "bonus": "10.00"}, {"amount": "100.00", "bonus": "20.00"}],
            {"tiers": ["Two tiers have the same amount: each amount may appear once."]},
        ),
        (
            [{"amount": "0.00", "bonus": "10.00"}],
            {"tiers.0.amount": ["Ensure this value is greater than or equal to 0.01."]},
        ),
        (
            [{"amount": "-5.00", "bonus": "1.00"}],
            {"tiers.0.amount": ["Ensure this value is greater than or equal to 0.01."]},
        ),
        (
            [{"amount": "100.00", "bonus": "-1.00"}],
            {"tiers.0.bonus": ["Ensure this value is greater than or equal to 0."]},
        ),
        (
            [{"amount": "1.001", "bonus": "1.00"}],
            {"tiers.0.amount": ["Ensure that there are no more than 2 decimal places."]},
        ),
        (
            [{"amount": "9.00", "bonus": "1.00"}, {"amount": "100.00", "bonus": "1.00", "points": -1}],
            {"tiers.1.points": ["Ensure this value is greater than or equal to 0."]},
        ),
        ([{"bonus": "1.00"}], {"tiers.0.amount": ["This field is required."]}),
    ],
)
def test_bad_tiers_are_400_invalid_and_nothing_is_written(marketer_api, tiers, errors):
    response = marketer_api.post(URL, body(tiers=tiers), format="json")

    assert (response.status_code, response.json()["code"], response.json()["errors"]) == (400, "invalid", errors)
    assert TopUpRule.objects.count() == 0


def test_an_end_before_the_start_and_a_zero_validity_are_refused(marketer_api):
    ends_early = marketer_api.post(URL, body(valid_until="2026-02-01T00:00:00+08:00"), format="json")
    zero_days = marketer_api.post(URL, body(bonus_valid_days=0), format="json")

    assert (ends_early.status_code, ends_early.json()["code"]) == (400, "invalid")
    assert "valid_until" in ends_early.json()["errors"]
    assert (zero_days.status_code, list(zero_days.json()["errors"])) == (400, ["bonus_valid_days"])
    assert TopUpRule.objects.count() == 0


def test_two_active_versions_for_a_store_may_not_start_at_the_same_instant(marketer_api, store_a):
    assert marketer_api.post(URL, body(store="A001"), format="json").status_code == 201
    again = marketer_api.post(URL, body(store="A001"), format="json")
    other_store = marketer_api.post(URL, body(), format="json")

    assert (again.status_code, again.json()["code"]) == (409, "overlapping_version")
    assert other_store.status_code == 201
    assert TopUpRule.objects.count() == 2


def test_terms_change_only_by_a_new_version_and_the_newest_in_force_wins(marketer_api, member_a):
    with time_machine.travel("2026-02-20 10:00 +08:00", tick=False):
        rule = marketer_api.post(URL, body(), format="json").json()
        in_place = marketer_api.patch(f"{URL}{rule['id']}/", {"tiers": TIERS[:1]}, format="json")
        version = marketer_api.post(
            f"{URL}{rule['id']}/versions/",
            {"valid_from": "2026-04-01T00:00:00+08:00", "tiers": [{"amount": "100.00", "bonus": "15.00"}]},
            format="json",
        )
        ended = marketer_api.patch(f"{URL}{rule['id']}/", {"valid_until": "2026-05-01T00:00:00+08:00"}, format="json")

    assert (in_place.status_code, in_place.json()["code"]) == (400, "version_keeps_its_terms")
    assert version.status_code == 201
    assert version.json()["name"] == "充100送10"
    assert ended.json()["valid_until"] == "2026-05-01T00:00:00+08:00"
    with time_machine.travel("2026-03-15 10:00 +08:00", tick=False):
        assert top_up(member_a, 10_000)["bonus"] == "10.00"
    with time_machine.travel("2026-04-15 10:00 +08:00", tick=False):
        assert top_up(member_a, 10_000)["bonus"] == "15.00"
    listed = marketer_api.get(URL, {"is_active": "true"}).json()["results"]
    assert sorted(item["id"] for item in listed) == sorted([rule["id"], version.json()["id"]])


def test_only_marketers_and_admins_write_rules_and_client_apps_only_preview(clerk_api, pos_a, admin_api):
    assert clerk_api.post(URL, body(), format="json").status_code == 403
    assert pos_a.post(URL, body(), format="json").status_code == 403
    assert pos_a.get(URL).status_code == 403
    assert admin_api.post(URL, body(), format="json").status_code == 201
    assert clerk_api.get(URL).status_code == 200
    with time_machine.travel("2026-03-10 10:00 +08:00", tick=False):
        assert pos_a.get(f"{URL}preview/", {"amount": "100.00"}).status_code == 200


def test_the_preview_shows_the_tier_reached_its_bonus_and_when_it_would_expire_and_writes_nothing(
    marketer_api, store_a
):
    marketer_api.post(URL, body(bonus_valid_days=30), format="json")
    marketer_api.post(
        URL, body(store="A001", tiers=[{"amount": "100.00", "bonus": "12.00", "growth": 5}]), format="json"
    )

    with time_machine.travel("2026-03-10 10:00 +08:00", tick=False):
        general = marketer_api.get(f"{URL}preview/", {"amount": "499.99"})
        top = marketer_api.get(f"{URL}preview/", {"amount": "500.00"})
        at_store = marketer_api.get(f"{URL}preview/", {"amount": "800.00", "store": "A001"})
        below = marketer_api.get(f"{URL}preview/", {"amount": "99.99"})
        bad = marketer_api.get(f"{URL}preview/", {"amount": "0"})

    assert general.json() == {
        "amount": "499.99",
        "amount_cents": 49_999,
        "bonus": "10.00",
        "bonus_cents": 1_000,
        "bonus_points": 0,
        "bonus_growth": 0,
        "bonus_expires_at": "2026-04-09T00:00:00+08:00",
        "rule": str(TopUpRule.objects.get(store=None).pk),
        "tier": {"amount": "100.00", "bonus": "10.00", "points": 0, "growth": 0},
    }
    assert (top.json()["bonus"], top.json()["bonus_points"]) == ("80.00", 200)
    assert (at_store.json()["bonus"], at_store.json()["bonus_growth"], at_store.json()["bonus_expires_at"]) == (
        "12.00",
        5,
        None,
    )
    assert (below.json()["bonus"], below.json()["tier"], below.json()["bonus_expires_at"]) == ("0.00", None, None)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid")
    assert TopUpRule.objects.count() == 2
