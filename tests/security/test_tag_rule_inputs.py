"""Low finding: the rule-tag language. `spent.min` took NaN and Infinity (a rule that silently matched nobody, or
failed the nightly job); now any amount that is not a finite number from 0 to the largest purchase amount is a
400 naming `spent.min`, through the API and the admin alike. And `not` around `joined_within_days` compiled to
`NOT a AND b` (NOT binds tighter than AND), so a member who joined after the run's business date was in neither the
rule nor its negation; every condition is one parenthesised term now."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.scheduling import run_inline
from members.models import MemberTag, Tag
from members.tag_rules import InvalidRule, compile_rule, validate_rule
from tests.factories import MemberFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
AS_OF = date(2026, 5, 15)  # the nightly run and "recompute" act for yesterday's business date
TODAY_NOON = datetime(2026, 5, 16, 12, 0, tzinfo=SHANGHAI)
TAGS = "/api/v1/tags/"
NOT_AN_AMOUNT = "spent.min must be a finite amount (not NaN or Infinity)."
OUT_OF_RANGE = "spent.min must be an amount from 0 to 999999999999.99."


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def tagged(code):
    return set(MemberTag.objects.filter(tag__code=code).values_list("member__name", flat=True))


def post_rule(api, code, rule):
    return api.post(TAGS, {"code": code, "name": code, "kind": "rule", "rule": rule}, format="json")


# --- spent.min ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "message"),
    [
        ("NaN", NOT_AN_AMOUNT),
        ("nan", NOT_AN_AMOUNT),
        ("sNaN", NOT_AN_AMOUNT),
        ("Infinity", NOT_AN_AMOUNT),
        ("-Infinity", NOT_AN_AMOUNT),
        ("inf", NOT_AN_AMOUNT),
        ("1e400", OUT_OF_RANGE),
        ("-1", OUT_OF_RANGE),
        ("lots", OUT_OF_RANGE),
        (True, OUT_OF_RANGE),
        ([1000], OUT_OF_RANGE),
    ],
)
def test_api_refuses_a_spent_min_that_is_not_a_finite_amount(marketer_api, minimum, message):
    response = post_rule(marketer_api, "big-spenders", {"spent": {"min": minimum, "days": 365}})

    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["errors"]) == ("invalid", {"rule": [message]})
    assert not Tag.objects.filter(code="big-spenders").exists()


def test_api_refuses_a_non_finite_spent_min_nested_in_not(marketer_api):
    response = post_rule(marketer_api, "small", {"any": [{"gender": "male"}, {"not": {"spent": {"min": "NaN"}}}]})

    assert (response.status_code, response.json()["errors"]) == (400, {"rule": [NOT_AN_AMOUNT]})
    assert Tag.objects.count() == 0


def test_api_refuses_a_bare_nan_literal_in_the_json_body(marketer_api):
    body = '{"code": "nan", "name": "nan", "kind": "rule", "rule": {"spent": {"min": NaN}}}'

    response = marketer_api.post(TAGS, body, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (400, "parse_error")
    assert Tag.objects.count() == 0


@pytest.mark.parametrize("minimum", ["1000", "1000.50", 1000, 1000.5, "0"])
def test_api_accepts_a_finite_spent_min(marketer_api, minimum):
    response = post_rule(marketer_api, "big-spenders", {"spent": {"min": minimum, "days": 365}})

    assert response.status_code == 201, response.content
    assert Tag.objects.get(code="big-spenders").rule == {"spent": {"min": minimum, "days": 365}}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_admin_refuses_a_non_finite_spent_min(client, literal):
    # The admin's JSON field parses with Python's json, which reads NaN and Infinity as floats.
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))

    response = client.post(
        "/admin/members/tag/add/",
        {"code": "nan", "name": "nan", "kind": "rule", "rule": f'{{"spent": {{"min": {literal}}}}}', "is_active": "on"},
    )

    assert response.status_code == 200  # the form again, with the error on the rule
    assert response.context["adminform"].form.errors["rule"] == [NOT_AN_AMOUNT]
    assert Tag.objects.count() == 0


def test_the_nightly_job_skips_a_stored_rule_with_a_non_finite_spent_min(store_a):
    # A rule saved before the check (or written to the table directly) is counted as invalid, never run.
    MemberFactory(name="anna", home_store=store_a)
    Tag.objects.create(code="nan", name="nan", kind="rule", rule={"spent": {"min": "NaN"}})

    run = run_inline("rule_tags", AS_OF)

    assert (run.status, run.counts["invalid_rules"], run.counts["added"]) == ("done", 1, 0)
    assert MemberTag.objects.count() == 0


@pytest.mark.parametrize("minimum", [float("nan"), float("inf"), float("-inf")])
def test_validate_rule_refuses_float_nan_and_infinity(minimum):
    with pytest.raises(InvalidRule) as refused:
        validate_rule({"spent": {"min": minimum}})

    assert str(refused.value) == NOT_AN_AMOUNT


# --- not joined_within_days -----------------------------------------------------------------------------------


@pytest.fixture
def joiners(store_a):
    """Women and a man who joined at different times around the business date AS_OF (15 May)."""
    return {
        name: MemberFactory(name=name, gender=gender, joined_at=joined_at, home_store=store_a)
        for name, gender, joined_at in [
            ("veteran", "female", local(2026, 3, 1, 10)),  # 76 days before AS_OF
            ("recent", "female", local(2026, 5, 5, 10)),  # within the 30 days up to AS_OF
            ("today", "female", local(2026, 5, 16, 9)),  # after AS_OF: joined this morning
            ("old-man", "male", local(2026, 3, 1, 10)),
        ]
    }


def test_not_joined_within_days_with_another_condition_selects_its_exact_complement(joiners):
    Tag.objects.create(
        code="new-women", name="new", kind="rule", rule={"all": [{"gender": "female"}, {"joined_within_days": 30}]}
    )
    Tag.objects.create(
        code="other-women",
        name="other",
        kind="rule",
        rule={"all": [{"gender": "female"}, {"not": {"joined_within_days": 30}}]},
    )

    with time_machine.travel(TODAY_NOON, tick=False):
        run = run_inline("rule_tags", AS_OF)

    assert run.status == "done"
    assert tagged("new-women") == {"recent"}
    # `today` did not join within the 30 days up to 15 May, so `not` holds for her. The old SQL,
    # `NOT joined_at >= start AND joined_at < end`, left her out of both tags.
    assert tagged("other-women") == {"veteran", "today"}


def test_not_joined_within_days_inside_any(joiners):
    Tag.objects.create(
        code="not-new-or-male",
        name="x",
        kind="rule",
        rule={"any": [{"gender": "male"}, {"not": {"joined_within_days": 30}}]},
    )

    with time_machine.travel(TODAY_NOON, tick=False):
        run_inline("rule_tags", AS_OF)

    assert tagged("not-new-or-male") == {"veteran", "today", "old-man"}


def test_not_applies_to_the_whole_condition_in_the_compiled_sql():
    sql, params = compile_rule({"not": {"joined_within_days": 30}}, as_of=AS_OF, rfm_date=None)

    assert sql == "(NOT (((m.joined_at >= %s AND m.joined_at < %s))))"
    assert params == [local(2026, 4, 16), local(2026, 5, 16)]
