"""Rule-based tags: the rule language, the nightly recomputation, and recompute on demand."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.models import JobRun
from loyalty.scheduling import run_inline
from members.models import MemberTag, Tag
from members.tag_rules import InvalidRule, validate_rule
from tests.factories import MemberFactory
from tests.points.helpers import purchase

SHANGHAI = ZoneInfo("Asia/Shanghai")
AS_OF = date(2026, 5, 15)
pytestmark = pytest.mark.django_db


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def tagged(code):
    return set(MemberTag.objects.filter(tag__code=code).values_list("member__name", flat=True))


@pytest.fixture
def people(store_a, store_b):
    return {
        "young": MemberFactory(name="young", birthday=date(2000, 5, 16), gender="female", home_store=store_a),
        "eighteen": MemberFactory(name="eighteen", birthday=date(2008, 5, 15), gender="male", home_store=store_a),
        "thirty": MemberFactory(name="thirty", birthday=date(1995, 5, 16), gender="female", home_store=store_b),
        "older": MemberFactory(name="older", birthday=date(1995, 5, 15), gender="female", home_store=store_b),
        "nobirthday": MemberFactory(name="nobirthday", birthday=None, home_store=store_a),
    }


def make_rule_tag(code, rule):
    return Tag.objects.create(code=code, name=code, kind="rule", rule=rule)


def test_age_birthday_gender_and_store_rules(people):
    make_rule_tag("age-18-30", {"age": {"min": 18, "max": 30}})
    make_rule_tag("may-birthdays", {"birthday_month": "current"})
    make_rule_tag("women-at-b", {"all": [{"gender": "female"}, {"store": ["B001"]}]})
    make_rule_tag("not-women", {"not": {"gender": "female"}})
    run = run_inline("rule_tags", AS_OF)
    assert run.status == "done"
    # On 2026-05-15: born 2008-05-15 is 18 today; born 1995-05-16 is still 30; born 1995-05-15 is 31 today.
    assert tagged("age-18-30") == {"young", "eighteen", "thirty"}
    assert tagged("may-birthdays") == {"young", "eighteen", "thirty", "older"}
    assert tagged("women-at-b") == {"thirty", "older"}
    assert tagged("not-women") == {"eighteen", "nobirthday"}
    assert set(MemberTag.objects.values_list("added_by", flat=True)) == {"rule"}


def test_bought_category_in_days_and_spent(people):
    with time_machine.travel(local(2026, 5, 15, 12), tick=False):
        purchase(
            people["young"],
            "30",
            occurred_at=local(2026, 4, 1, 10),
            lines=[{"sku": "L1", "category": "coffee", "quantity": Decimal("1"), "unit_price": Decimal("30")}],
        )
        purchase(
            people["older"],
            "30",
            occurred_at=local(2026, 1, 1, 10),
            lines=[{"sku": "L1", "category": "coffee", "quantity": Decimal("1"), "unit_price": Decimal("30")}],
        )
        purchase(people["thirty"], "1500", occurred_at=local(2026, 3, 1, 10))
    make_rule_tag("coffee-90d", {"bought_category": "coffee", "days": 90})
    make_rule_tag("big-spenders", {"spent": {"min": "1000", "days": 365}})
    run_inline("rule_tags", AS_OF)
    assert tagged("coffee-90d") == {"young"}  # 1 April is within 90 days of 15 May; 1 January is not
    assert tagged("big-spenders") == {"thirty"}


def test_members_who_stop_matching_lose_the_tag_and_switched_off_tags_are_cleared(people):
    tag = make_rule_tag("women", {"gender": "female"})
    run_inline("rule_tags", AS_OF)
    assert tagged("women") == {"young", "thirty", "older"}
    people["young"].gender = "male"
    people["young"].save()
    result = run_inline("rule_tags", date(2026, 5, 16))
    assert tagged("women") == {"thirty", "older"}
    assert result.counts["removed"] == 1
    tag.is_active = False
    tag.save()
    run_inline("rule_tags", date(2026, 5, 17))
    assert tagged("women") == set()


def test_rules_are_validated_with_a_clear_reason():
    for rule, message in [
        ({"age": {"min": "x"}}, "age min"),
        ({"shoe_size": 42}, "Unknown condition"),
        ({"all": []}, "non-empty list"),
        ({"segment": ["vip"]}, "Unknown segment"),
        ("female", "A rule is an object"),
        ({"birthday_month": 13}, "birthday_month"),
    ]:
        with pytest.raises(InvalidRule, match=message):
            validate_rule(rule)


def test_rule_tags_through_the_api(people, marketer_api, clerk_api, django_capture_on_commit_callbacks):
    bad = marketer_api.post(
        "/api/v1/tags/", {"code": "bad", "name": "Bad", "kind": "rule", "rule": {"shoe_size": 42}}, format="json"
    )
    assert (bad.status_code, list(bad.json()["errors"])) == (400, ["rule"])
    created = marketer_api.post(
        "/api/v1/tags/", {"code": "women", "name": "Women", "kind": "rule", "rule": {"gender": "female"}}, format="json"
    )
    assert created.status_code == 201
    assert clerk_api.post("/api/v1/tags/women/recompute/").status_code == 403
    with (
        time_machine.travel(local(2026, 5, 15, 12), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):  # chunks are sent once the plan is committed
        response = marketer_api.post("/api/v1/tags/women/recompute/")
    assert response.status_code == 202
    run = JobRun.objects.get(pk=response.json()["id"])
    assert (run.job, run.params, run.status, run.counts["added"]) == ("rule_tags", {"tags": ["women"]}, "done", 3)
    assert tagged("women") == {"young", "thirty", "older"}
    manual = marketer_api.post(f"/api/v1/members/{people['young'].pk}/tags/", {"tag": "women"}, format="json")
    assert manual.status_code == 400  # a rule tag is not added by hand
