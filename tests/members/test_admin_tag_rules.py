"""A rule-based tag's rule in form fields instead of JSON: the fields build the rule members.tag_rules runs, an
existing rule fills them in, a rule they cannot say stays editable as JSON, and mistakes show on the form."""

import pytest

from members.models import Tag
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/members/tag/add/"


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


def tag_form(**changes):
    return {"code": "young", "name": "Young", "kind": "rule", "description": "", "is_active": "on", **changes}


def form_of(response):
    return response.context["adminform"].form


def test_the_fields_build_the_rule(marketer_client, store_a):
    response = marketer_client.post(
        ADD,
        tag_form(
            rule_match="any",
            rule_age_min="18",
            rule_age_max="30",
            rule_gender="female",
            rule_bought_category=" coffee ",
            rule_bought_days="30",
            rule_spent_min="500",
            rule_segments=["important_value"],
            rule_stores=["A001"],
            rule_birthday_month="current",
        ),
    )

    assert response.status_code == 302, form_of(response).errors
    assert Tag.objects.get(code="young").rule == {
        "any": [
            {"age": {"min": 18, "max": 30}},
            {"gender": "female"},
            {"birthday_month": "current"},
            {"bought_category": "coffee", "days": 30},
            {"spent": {"min": "500.00"}},
            {"segment": ["important_value"]},
            {"store": ["A001"]},
        ]
    }


def test_one_condition_is_the_rule_itself(marketer_client):
    response = marketer_client.post(ADD, tag_form(rule_birthday_month="3"))

    assert response.status_code == 302, form_of(response).errors
    assert Tag.objects.get().rule == {"birthday_month": 3}


def test_a_saved_rule_fills_the_fields(marketer_client):
    tag = Tag.objects.create(
        code="coffee",
        name="Coffee",
        kind="rule",
        rule={"all": [{"bought_category": "coffee", "days": 90}, {"lifecycle": ["active", "new"]}]},
    )

    form = form_of(marketer_client.get(f"/admin/members/tag/{tag.pk}/change/"))

    assert {name: form[name].value() for name in ("rule_match", "rule_bought_category", "rule_bought_days")} == {
        "rule_match": "all",
        "rule_bought_category": "coffee",
        "rule_bought_days": 90,
    }
    assert form["rule_lifecycles"].value() == ["active", "new"]


def test_changing_a_field_of_a_saved_rule_changes_the_rule(marketer_client):
    tag = Tag.objects.create(code="coffee", name="Coffee", kind="rule", rule={"bought_category": "coffee"})
    url = f"/admin/members/tag/{tag.pk}/change/"

    response = marketer_client.post(
        url,
        tag_form(
            code="coffee",
            name="Coffee",
            rule_match="all",
            rule_bought_category="tea",
            rule='{"bought_category": "coffee"}',
            **{"initial-rule": '{"bought_category": "coffee"}'},
        ),
    )

    assert response.status_code == 302, form_of(response).errors
    tag.refresh_from_db()
    assert tag.rule == {"bought_category": "tea"}


def test_a_rule_the_fields_cannot_say_is_edited_as_json(marketer_client):
    nested = {"all": [{"gender": "male"}, {"not": {"segment": ["general_winback"]}}]}
    tag = Tag.objects.create(code="men", name="Men", kind="rule", rule=nested)
    url = f"/admin/members/tag/{tag.pk}/change/"

    form = form_of(marketer_client.get(url))
    assert form.fields["rule_gender"].disabled is True
    assert str(form.fields["rule_gender"].help_text) == "This rule is edited as JSON below."

    response = marketer_client.post(url, tag_form(code="men", name="Men", rule='{"not": {"gender": "male"}}'))

    assert response.status_code == 302, form_of(response).errors
    tag.refresh_from_db()
    assert tag.rule == {"not": {"gender": "male"}}


def test_mistakes_show_on_the_form(marketer_client):
    ages = form_of(marketer_client.post(ADD, tag_form(rule_age_min="40", rule_age_max="30")))
    nothing = form_of(marketer_client.post(ADD, tag_form()))
    days_only = form_of(marketer_client.post(ADD, tag_form(rule_spent_days="30")))
    both = form_of(marketer_client.post(ADD, tag_form(rule_gender="male", rule='{"gender": "female"}')))
    manual = form_of(marketer_client.post(ADD, tag_form(kind="manual", rule_gender="male")))
    bad_json = form_of(marketer_client.post(ADD, tag_form(rule='{"gender": "robot"}')))

    assert ages.errors == {"rule_age_max": ["The upper age is below the lower one."]}
    assert nothing.errors == {"rule": ["A rule-based tag needs a rule: fill in at least one condition."]}
    assert days_only.errors["rule_spent_min"] == ["Give the amount to spend within these days."]
    assert both.errors == {"rule": ["Change the rule either with the fields above or as JSON, not both."]}
    assert manual.errors == {"rule": ["Manual tags have no rule."]}
    assert bad_json.errors == {"rule": ["gender is one of male, female, unknown."]}
    assert not Tag.objects.exists()
