"""The admin at the counter: a clerk tops up a member's stored value and reads her account and ledger, only for
her stores' members; marketers keep top-up rules as versions; only admins add a stored-value policy."""

import pytest

from stored_value.models import StoredValuePolicy, TopUp, TopUpRule
from tests.factories import MemberFactory, StaffUserFactory
from tests.stored_value.helpers import balances, rule, top_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


def test_a_clerk_tops_up_at_the_counter_and_sees_the_account(clerk_client, member_a, store_a):
    rule([{"amount": 10_000, "bonus": 1_000}])
    form = clerk_client.get(f"/admin/stored_value/topup/add/?member={member_a.member_no}")
    assert form.status_code == 200

    body = {
        "member": member_a.member_no,
        "amount": "100.00",
        "payment_method": "cash",
        "payment_ref": "R-001",
        "store": store_a.pk,
    }
    response = clerk_client.post("/admin/stored_value/topup/add/", body)
    again = clerk_client.post("/admin/stored_value/topup/add/", body)  # a double click: the same top-up

    assert response.status_code == 302 and again.status_code == 302
    assert response["Location"] == f"/admin/stored_value/storedvalueaccount/{member_a.pk}/change/"
    assert TopUp.objects.count() == 1 and balances(member_a) == (10_000, 1_000)
    page = clerk_client.get(response["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert "110.00" in text and text.count("<td>cash:R-001</td>") == 2  # the top-up and its bonus entries


def test_a_clerk_sees_only_her_stores_members_accounts(clerk_client, store_b):
    other = MemberFactory(home_store=store_b)
    top_up(other, 500)

    assert clerk_client.get("/admin/stored_value/storedvalueaccount/").content.decode().count(other.member_no) == 0
    assert clerk_client.get(f"/admin/stored_value/storedvalueaccount/{other.pk}/change/").status_code == 302


def test_a_clerk_tops_up_only_at_her_own_stores(clerk_client, member_a, store_b):
    body = {
        "member": member_a.member_no,
        "amount": "10.00",
        "payment_method": "cash",
        "payment_ref": "R-9",
        "store": store_b.pk,
    }
    response = clerk_client.post("/admin/stored_value/topup/add/", body)
    assert response.status_code == 200 and "store" in response.context["form"].errors
    assert TopUp.objects.count() == 0


def test_a_marketer_adds_a_top_up_rule_and_a_change_of_terms_is_a_new_version(client):
    client.force_login(StaffUserFactory(username="mk", role="marketer"))
    body = {
        "name": "充100送10",
        "tiers": '[{"amount": 10000, "bonus": 1000}]',
        "valid_from_0": "2030-01-01",
        "valid_from_1": "00:00:00",
        "is_active": "on",
    }

    created = client.post("/admin/stored_value/topuprule/add/", body)
    bad = client.post(
        "/admin/stored_value/topuprule/add/",
        {**body, "name": "bad", "valid_from_0": "2030-02-01", "tiers": '[{"amount": 0, "bonus": 1}]'},
    )

    assert created.status_code == 302
    assert bad.status_code == 200 and "tiers" in bad.context["adminform"].form.errors
    first = TopUpRule.objects.get()
    changed = client.post(
        f"/admin/stored_value/topuprule/{first.pk}/change/", {**body, "tiers": '[{"amount": 10000, "bonus": 1500}]'}
    )
    assert changed.status_code == 200  # refused in place: the terms stay
    assert TopUpRule.objects.get().tiers == [{"amount": 10000, "bonus": 1000}]


def test_a_marketer_types_a_top_up_rules_tiers_as_lines_in_yuan(client, settings):
    """The tiers are lines "amount, bonus[, points[, growth]]" in yuan, not JSON; the saved rule shows them the
    same way, an untouched field is no change, and a line that cannot be read is named (in Chinese here)."""
    client.force_login(StaffUserFactory(username="mk", role="marketer"))
    body = {
        "name": "充500送50",
        "tiers": "100, 10\n500.00，50.00， 100, 20",
        "valid_from_0": "2030-01-01",
        "valid_from_1": "00:00:00",
        "is_active": "on",
    }

    created = client.post("/admin/stored_value/topuprule/add/", body)

    assert created.status_code == 302, created.context["adminform"].form.errors
    rule = TopUpRule.objects.get()
    assert rule.tiers == [
        {"amount": 10000, "bonus": 1000},
        {"amount": 50000, "bonus": 5000, "points": 100, "growth": 20},
    ]
    page = client.get(f"/admin/stored_value/topuprule/{rule.pk}/change/")
    assert ">\n100.00, 10.00\n500.00, 50.00, 100, 20</textarea>" in page.content.decode()
    shown = "100.00, 10.00\n500.00, 50.00, 100, 20"
    switched = client.post(
        f"/admin/stored_value/topuprule/{rule.pk}/change/", {**body, "tiers": shown, "is_active": ""}
    )
    assert switched.status_code == 302  # only the switch changed: allowed in place
    rule.refresh_from_db()
    assert (rule.is_active, rule.tiers[0]) == (False, {"amount": 10000, "bonus": 1000})

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    bad = client.post(
        "/admin/stored_value/topuprule/add/", {**body, "valid_from_0": "2030-02-01", "tiers": "100, 10\n五百, 50"}
    )
    assert bad.status_code == 200
    assert bad.context["adminform"].form.errors["tiers"] == [
        "第 2 行：请先写充值金额和赠送金（元），再可选写赠送积分和成长值，用逗号分隔（如“500.00, 50.00, 100”）。"
    ]


def test_only_an_admin_adds_a_stored_value_policy(client, admin_user):
    client.force_login(StaffUserFactory(username="mk", role="marketer"))
    assert client.get("/admin/stored_value/storedvaluepolicy/add/").status_code == 403
    client.force_login(admin_user)
    body = {
        "valid_from_0": "2030-01-01",
        "valid_from_1": "00:00:00",
        "daily_limit_cents": "50000",
        "pin_max_attempts": "5",
    }
    assert client.post("/admin/stored_value/storedvaluepolicy/add/", body).status_code == 302
    assert StoredValuePolicy.objects.get().daily_limit_cents == 50_000


def test_an_entrys_page_gives_its_reason_in_chinese(clerk_client, member_a):
    """Issue 15: the page of a payment's entry read "order DEMO-…" as stored; it reads as the ledger list does."""
    from stored_value.models import StoredValueEntry
    from tests.stored_value.helpers import pay

    top_up(member_a, 10_000)
    pay(member_a, 2_500, order_no="DEMO-0042")
    entry = StoredValueEntry.objects.get(reason="order DEMO-0042")

    page = clerk_client.get(f"/admin/stored_value/storedvalueentry/{entry.pk}/change/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert page.status_code == 200
    text = page.content.decode()
    assert '<div class="readonly">订单 DEMO-0042</div>' in text
    assert "order DEMO-0042" not in text


def test_a_top_up_rule_read_only_shows_its_tiers_as_yuan_lines(clerk_client):
    """Issue 15: staff who may only view a rule read its tiers as the lines the form takes, not as JSON."""
    shown = rule([{"amount": 10_000, "bonus": 1_000}, {"amount": 50_000, "bonus": 5_000, "points": 100, "growth": 20}])

    page = clerk_client.get(f"/admin/stored_value/topuprule/{shown.pk}/change/", HTTP_ACCEPT_LANGUAGE="zh-hans")

    assert page.status_code == 200
    text = page.content.decode()
    assert '<div class="readonly">100.00, 10.00<br>500.00, 50.00, 100, 20</div>' in text
    assert "&quot;amount&quot;" not in text and '"amount"' not in text
