"""The points admin at the counter: the member page with balances and ledger, recording a purchase, redeeming a
reward and adjusting points through the services, and the read-only and marketer screens."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.utils import timezone

from loyalty.models import AuditEntry
from members.models import Purchase
from members.services import freeze_member
from points import services
from points.models import (
    EarningRule,
    EntryKind,
    LedgerEntry,
    PointsAccount,
    PointsPolicy,
    Redemption,
    RedemptionStatus,
    Reward,
)
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

LEDGER = "/admin/points/ledgerentry/"
REDEMPTIONS = "/admin/points/redemption/"
RULES = "/admin/points/earningrule/"
POLICIES = "/admin/points/pointspolicy/"


def change_url(member):
    return f"/admin/members/member/{member.pk}/change/"


def action_url(member, action):
    return f"/admin/members/member/{member.pk}/{action}/"


def readonly_values(response):
    """The read-only fields of an admin change page, as rendered: {field name: html}."""
    assert response.status_code == 200, response.content[:500]
    return {
        field.field["name"]: str(field.contents())
        for fieldset in response.context["adminform"]
        for line in fieldset
        for field in line
        if field.is_readonly
    }


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def form_key(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return str(response.context["form"]["key"].value())


def account(member):
    return PointsAccount.objects.get(member=member)


def give_points(member, points):
    """Available points at once, as an admin's adjustment (no pending period)."""
    services.adjust_points(
        actor="staff:seed",
        role="admin",
        scope="test",
        key=str(uuid.uuid4()),
        fingerprint="x",
        member_id=member.pk,
        points=points,
        reason="seed",
    )


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="points", codename__in=codenames))


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


@pytest.fixture
def gift():
    return Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=5)


# --- The member page ------------------------------------------------------------------------------------------


def test_member_page_shows_balances_and_the_ledger_newest_first(admin_client, member_a, store_a):
    services.record_purchase(
        actor="client:pos",
        source="store:A001",
        member_id=member_a.pk,
        order_no="A-1",
        amount=Decimal("120.50"),
        store=store_a,
        fingerprint="f",
    )
    give_points(member_a, 300)

    response = admin_client.get(change_url(member_a))

    values = readonly_values(response)
    assert values["points_available"] == "300"
    assert values["points_pending"] == "120"
    assert values["lifetime_earned"] == "420"
    assert values["lifetime_spent"] == "0"
    assert values["lifetime_expired"] == "0"
    expiring = services.expires_at_for(services.current_policy(), timezone.now())
    last_day = timezone.localtime(expiring - timedelta(microseconds=1)).date().isoformat()
    assert values["points_expiring"] == f"300 on {last_day}"  # pending points do not expire yet
    ledger = values["ledger_table"]
    assert ledger.count("<tr>") == 3  # header + two entries
    adjust_row, earn_row = ledger.index("<td>+300</td>"), ledger.index("<td>+120</td>")
    assert adjust_row < earn_row  # newest first
    assert "<td>A-1</td>" in ledger and "<td>client:pos</td>" in ledger and "<td>staff:seed</td>" in ledger
    assert "<td>300</td>" in ledger  # balance after the adjustment
    assert values["redemptions_table"] == "No redemptions yet."
    for action in ("record-purchase", "redeem", "adjust"):
        assert f'href="{action_url(member_a, action)}"'.encode() in response.content


def test_member_page_shows_only_the_newest_50_entries_and_her_redemptions(admin_client, member_a, gift):
    for _ in range(55):
        give_points(member_a, 10)
    services.redeem_reward(
        actor="staff:seed",
        scope="test",
        key="r1",
        fingerprint="x",
        member_id=member_a.pk,
        reward_id=gift.pk,
        quantity=2,
    )

    values = readonly_values(admin_client.get(change_url(member_a)))

    assert values["ledger_table"].count("<tr>") == 51
    assert values["ledger_table"].index("<td>-200</td>") < values["ledger_table"].index("<td>+10</td>")
    redemptions = values["redemptions_table"]
    assert "<td>Mug</td><td>2</td><td>200</td><td>completed</td><td></td>" in redemptions


def test_member_page_costs_a_bounded_number_of_queries(admin_client, member_a, gift, django_assert_max_num_queries):
    for _ in range(60):
        give_points(member_a, 10)
    for n in range(3):
        services.redeem_reward(
            actor="staff:seed", scope="test", key=f"r{n}", fingerprint="x", member_id=member_a.pk, reward_id=gift.pk
        )

    with django_assert_max_num_queries(25):
        assert admin_client.get(change_url(member_a)).status_code == 200


def test_member_page_without_points_shows_zeros(admin_client, member_a):
    values = readonly_values(admin_client.get(change_url(member_a)))

    assert (values["points_available"], values["points_pending"], values["points_expiring"]) == ("0", "0", "—")
    assert values["ledger_table"] == "No entries yet."


# --- Recording a purchase -------------------------------------------------------------------------------------


def purchase_form(store, **overrides):
    return {
        "order_no": "A-100",
        "amount": "123.45",
        "store": str(store.pk),
        "channel": "offline",
        "points_used": "0",
        **overrides,
    }


def test_the_purchase_form_defaults_to_the_clerks_only_store(clerk_client, member_a, store_a, store_b):
    form = clerk_client.get(action_url(member_a, "record-purchase")).context["form"]

    assert form["store"].value() == store_a.pk
    assert list(form.fields["store"].queryset) == [store_a]


def test_recording_a_purchase_awards_its_points_pending(clerk_client, member_a, store_a):
    response = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a))

    assert response.status_code == 302, response.content[:1000]
    assert response["Location"] == change_url(member_a)
    purchase = Purchase.objects.get()
    assert (purchase.order_no, purchase.member, purchase.store, purchase.source) == (
        "A-100",
        member_a,
        store_a,
        "store:A001",
    )
    assert (purchase.amount, purchase.points_awarded) == (Decimal("123.45"), 123)
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.points, entry.pending_delta, entry.available_delta, entry.actor) == (
        EntryKind.EARN,
        123,
        123,
        0,
        "staff:clerk-a",
    )
    assert messages_of(response) == ["Purchase A-100: 123 points pending (base 123)."]
    values = readonly_values(clerk_client.get(change_url(member_a)))
    assert (values["points_pending"], values["points_available"]) == ("123", "0")


def test_submitting_the_same_purchase_twice_records_it_once(clerk_client, member_a, store_a):
    first = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a))
    second = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a))

    assert (first.status_code, second.status_code) == (302, 302)
    assert Purchase.objects.count() == 1
    assert LedgerEntry.objects.count() == 1
    assert account(member_a).pending == 123
    assert messages_of(second)[-1].startswith("Already recorded, nothing changed.")


def test_the_same_order_number_with_another_amount_is_refused(clerk_client, member_a, store_a):
    clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a))

    response = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a, amount="99.00"))

    assert response.status_code == 200
    assert "idempotency_conflict" in response.content.decode()
    assert Purchase.objects.get().amount == Decimal("123.45")
    assert LedgerEntry.objects.count() == 1


def test_a_refusal_names_its_figures_in_the_admins_language(clerk_client, member_a, store_a, settings):
    """In Chinese the figures that explain a refusal are named in Chinese, with Chinese punctuation."""
    clerk_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    response = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a, points_used="100"))

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == ["insufficient_points: 可用积分不足。（可用：0，所需：100）"]
    assert Purchase.objects.count() == 0


def test_the_member_pages_expiring_points_read_in_chinese(clerk_client, member_a, settings):
    give_points(member_a, 300)
    clerk_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    values = readonly_values(clerk_client.get(change_url(member_a)))

    expiring = services.expires_at_for(services.current_policy(), timezone.now())
    last_day = timezone.localtime(expiring - timedelta(microseconds=1)).date().isoformat()
    assert values["points_expiring"] == f"{last_day} 到期 300"


def test_points_used_beyond_the_balance_show_the_error_and_record_nothing(clerk_client, member_a, store_a):
    response = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a, points_used="100"))

    assert response.status_code == 200
    assert "insufficient_points: Not enough available points. (available: 0, required: 100)" in (
        response.content.decode()
    )
    assert Purchase.objects.count() == 0
    assert LedgerEntry.objects.count() == 0


def test_a_clerk_cannot_record_a_purchase_for_another_store(clerk_client, member_a, store_a, store_b):
    response = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_b))

    assert response.status_code == 200
    assert response.context["form"].errors["store"]
    assert Purchase.objects.count() == 0


def test_a_frozen_member_earns_nothing_and_the_clerk_sees_why(clerk_client, member_a, store_a):
    freeze_member(actor="staff:boss", member=member_a, reason="fraud check", role="admin")

    response = clerk_client.post(action_url(member_a, "record-purchase"), purchase_form(store_a))

    assert response.status_code == 200
    assert "member_frozen" in response.content.decode()
    assert Purchase.objects.count() == 0


# --- Redeeming a reward ---------------------------------------------------------------------------------------


def test_redeeming_spends_the_points_once_even_when_posted_twice(clerk_client, member_a, store_a, gift):
    give_points(member_a, 300)
    url = action_url(member_a, "redeem")
    data = {"reward": str(gift.pk), "quantity": "2", "key": form_key(clerk_client, url)}

    first = clerk_client.post(url, data)
    second = clerk_client.post(url, data)

    assert (first.status_code, second.status_code) == (302, 302)
    assert account(member_a).available == 100
    gift.refresh_from_db()
    assert gift.stock == 3
    redemption = Redemption.objects.get()
    assert (redemption.quantity, redemption.points_spent, redemption.actor, redemption.store) == (
        2,
        200,
        "staff:clerk-a",
        store_a,
    )
    assert LedgerEntry.objects.filter(kind=EntryKind.REDEEM).count() == 1
    assert messages_of(first) == ["Redeemed 2 × Mug for 200 points; balance 100."]
    assert messages_of(second)[-1].startswith("This form was already submitted, nothing changed.")


def test_each_shown_redeem_form_carries_a_new_key(clerk_client, member_a):
    url = action_url(member_a, "redeem")

    assert form_key(clerk_client, url) != form_key(clerk_client, url)


def test_redeeming_without_enough_points_shows_the_error_and_spends_nothing(clerk_client, member_a, gift):
    give_points(member_a, 50)
    url = action_url(member_a, "redeem")

    response = clerk_client.post(url, {"reward": str(gift.pk), "quantity": "1", "key": form_key(clerk_client, url)})

    assert response.status_code == 200
    assert "insufficient_points" in response.content.decode()
    assert account(member_a).available == 50
    gift.refresh_from_db()
    assert gift.stock == 5
    assert Redemption.objects.count() == 0
    assert LedgerEntry.objects.count() == 1


def test_reusing_a_redeem_key_for_other_values_is_refused_and_the_form_gets_a_new_key(clerk_client, member_a, gift):
    give_points(member_a, 500)
    url = action_url(member_a, "redeem")
    key = form_key(clerk_client, url)
    clerk_client.post(url, {"reward": str(gift.pk), "quantity": "1", "key": key})

    response = clerk_client.post(url, {"reward": str(gift.pk), "quantity": "2", "key": key})

    assert response.status_code == 200
    assert "idempotency_conflict" in response.content.decode()
    assert str(response.context["form"]["key"].value()) != key
    assert account(member_a).available == 400


def test_an_out_of_stock_reward_shows_the_error(clerk_client, member_a, gift):
    give_points(member_a, 1000)
    Reward.objects.filter(pk=gift.pk).update(stock=1)
    url = action_url(member_a, "redeem")

    response = clerk_client.post(url, {"reward": str(gift.pk), "quantity": "2", "key": form_key(clerk_client, url)})

    assert response.status_code == 200
    assert "out_of_stock" in response.content.decode()
    assert account(member_a).available == 1000


# --- Adjusting points -----------------------------------------------------------------------------------------


def test_a_clerk_adjustment_over_her_limit_is_refused(clerk_client, member_a):
    url = action_url(member_a, "adjust")

    response = clerk_client.post(url, {"points": "600", "reason": "goodwill", "key": form_key(clerk_client, url)})

    assert response.status_code == 200
    assert "adjustment_limit" in response.content.decode()
    assert "limit: 500" in response.content.decode()
    assert LedgerEntry.objects.count() == 0
    assert AuditEntry.objects.filter(action="points.adjusted").count() == 0


def test_a_clerk_adjustment_within_her_limit_is_in_the_ledger_and_the_audit_log(clerk_client, member_a):
    url = action_url(member_a, "adjust")
    data = {"points": "300", "reason": "goodwill", "key": form_key(clerk_client, url)}

    response = clerk_client.post(url, data)
    again = clerk_client.post(url, data)

    assert (response.status_code, again.status_code) == (302, 302)
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.points, entry.balance_after, entry.reason, entry.actor) == (
        EntryKind.ADJUST,
        300,
        300,
        "goodwill",
        "staff:clerk-a",
    )
    audit = AuditEntry.objects.get(action="points.adjusted")
    assert (audit.actor, audit.target_id, audit.new_values["points"]) == ("staff:clerk-a", str(member_a.pk), 300)
    assert account(member_a).available == 300
    assert messages_of(response) == ["Adjusted +300 points; balance 300."]


def test_an_admin_may_adjust_beyond_the_clerk_limit(admin_client, member_a):
    url = action_url(member_a, "adjust")

    response = admin_client.post(url, {"points": "6000", "reason": "migration", "key": form_key(admin_client, url)})

    assert response.status_code == 302
    assert account(member_a).available == 6000


def test_an_adjustment_needs_a_reason_and_is_not_zero(clerk_client, member_a):
    url = action_url(member_a, "adjust")

    response = clerk_client.post(url, {"points": "0", "reason": "", "key": form_key(clerk_client, url)})

    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"points", "reason"}
    assert LedgerEntry.objects.count() == 0


def test_taking_more_points_than_available_is_refused(clerk_client, member_a):
    give_points(member_a, 100)
    url = action_url(member_a, "adjust")

    response = clerk_client.post(url, {"points": "-150", "reason": "wrong scan", "key": form_key(clerk_client, url)})

    assert response.status_code == 200
    assert "insufficient_points" in response.content.decode()
    assert account(member_a).available == 100


# --- Who may act on whom --------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["record-purchase", "redeem", "adjust"])
def test_a_clerk_gets_404_for_members_of_other_stores(clerk_client, member_b, store_a, action):
    give_points(member_b, 500)

    assert clerk_client.get(action_url(member_b, action)).status_code == 404
    response = clerk_client.post(
        action_url(member_b, action),
        {**purchase_form(store_a), "points": "100", "reason": "x", "key": str(uuid.uuid4())},
    )
    assert response.status_code == 404
    assert LedgerEntry.objects.count() == 1
    assert Purchase.objects.count() == 0


@pytest.mark.parametrize("action", ["record-purchase", "redeem", "adjust"])
def test_staff_without_a_role_or_without_change_member_get_403(client, member_a, action):
    no_role = StaffUserFactory(username="no-role")
    no_role.user_permissions.add(Permission.objects.get(codename="change_member"))
    client.force_login(no_role)
    assert client.get(action_url(member_a, action)).status_code == 403

    viewer = StaffUserFactory(username="viewer", role="viewer")  # a group that is no staff role
    client.force_login(viewer)
    assert client.get(action_url(member_a, action)).status_code == 403


def test_a_role_without_change_member_gets_403_and_sees_no_action_links(client, member_a, clerk_a):
    clerk_a.groups.get().permissions.remove(Permission.objects.get(codename="change_member"))
    client.force_login(clerk_a)

    assert client.get(action_url(member_a, "adjust")).status_code == 403
    page = client.get(change_url(member_a))
    assert page.status_code == 200
    assert action_url(member_a, "adjust").encode() not in page.content


def test_the_action_pages_need_a_login(client, member_a):
    response = client.get(action_url(member_a, "adjust"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_overlong_member_id_never_reaches_the_database(admin_client):
    # Not an id: the admin's catch-all sends it to the change view, which finds no member.
    response = admin_client.get("/admin/members/member/1234567890123456789012/adjust/", follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/admin/"


# --- Ledger, redemption and account lists ---------------------------------------------------------------------


def test_the_ledger_admin_lists_entries_and_has_no_add_change_or_delete(admin_client, member_a):
    give_points(member_a, 100)
    entry = LedgerEntry.objects.get()

    listing = admin_client.get(LEDGER)
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [entry]
    assert admin_client.get(f"{LEDGER}add/").status_code == 403
    assert admin_client.get(f"{LEDGER}{entry.pk}/delete/").status_code == 403
    assert admin_client.post(f"{LEDGER}{entry.pk}/change/", {"points": "999"}).status_code == 403
    assert admin_client.get(f"{LEDGER}{entry.pk}/change/").status_code == 200  # view only
    assert listing.context["action_form"] is None  # not even "delete selected"
    entry.refresh_from_db()
    assert entry.points == 100


def test_the_ledger_search_finds_a_phone_card_number_or_reference(admin_client, member_a, member_b, store_a):
    give_points(member_a, 10)
    give_points(member_b, 20)
    services.record_purchase(
        actor="x",
        source="store:A001",
        member_id=member_b.pk,
        order_no="ORD-7",
        amount=Decimal("50"),
        store=store_a,
        fingerprint="f",
    )

    def found(term):
        return sorted(e.points for e in admin_client.get(LEDGER, {"q": term}).context["cl"].result_list)

    assert found("138 0013 8000") == [10]
    assert found(member_b.member_no) == [20, 50]
    assert found("ORD-7") == [50]
    assert found("nothing") == []


def test_the_member_page_links_to_her_whole_ledger(admin_client, member_a, member_b):
    give_points(member_a, 10)
    give_points(member_b, 20)
    values = readonly_values(admin_client.get(change_url(member_a)))
    link = f"{LEDGER}?member__id__exact={member_a.pk}"
    assert f'href="{link}"' in values["ledger_table"]

    listing = admin_client.get(link)

    assert [e.points for e in listing.context["cl"].result_list] == [10]


def test_the_ledger_list_counts_at_most_its_cap(admin_client, member_a, monkeypatch):
    from points.admin import CappedCountPaginator, LedgerEntryAdmin

    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    monkeypatch.setattr(LedgerEntryAdmin, "list_per_page", 2)
    for _ in range(5):
        give_points(member_a, 1)

    cl = admin_client.get(LEDGER).context["cl"]

    assert (cl.result_count, len(cl.result_list), cl.paginator.num_pages) == (4, 2, 2)


def test_a_clerk_sees_only_the_ledger_of_her_stores_members(client, clerk_a, member_a, member_b):
    grant(clerk_a, "view_ledgerentry")
    client.force_login(clerk_a)
    give_points(member_a, 10)
    give_points(member_b, 20)

    listing = client.get(LEDGER)

    assert [e.points for e in listing.context["cl"].result_list] == [10]


def test_cancelling_a_redemption_through_the_admin_action_returns_the_points(admin_client, member_a, gift):
    give_points(member_a, 300)
    services.redeem_reward(
        actor="staff:seed",
        scope="test",
        key="r1",
        fingerprint="x",
        member_id=member_a.pk,
        reward_id=gift.pk,
        quantity=2,
    )
    redemption = Redemption.objects.get()
    assert account(member_a).available == 100

    response = admin_client.post(REDEMPTIONS, {"action": "cancel_redemptions", "_selected_action": [redemption.pk]})

    assert response.status_code == 302
    redemption.refresh_from_db()
    assert redemption.status == RedemptionStatus.CANCELLED
    assert account(member_a).available == 300
    gift.refresh_from_db()
    assert gift.stock == 5
    cancel = LedgerEntry.objects.get(kind=EntryKind.CANCEL)
    assert (cancel.points, cancel.actor) == (200, "staff:boss")
    assert messages_of(response) == ["Cancelled 1 redemption(s); their points and stock are back."]

    again = admin_client.post(REDEMPTIONS, {"action": "cancel_redemptions", "_selected_action": [redemption.pk]})

    assert messages_of(again)[-1] == (f"#{redemption.pk}: already_cancelled: The redemption was already cancelled.")
    assert account(member_a).available == 300


def test_a_clerk_cancels_only_her_stores_redemptions(clerk_client, member_a, member_b, gift):
    for member in (member_a, member_b):
        give_points(member, 100)
        services.redeem_reward(
            actor="x", scope="test", key=f"r{member.pk}", fingerprint="x", member_id=member.pk, reward_id=gift.pk
        )
    mine, theirs = Redemption.objects.get(member=member_a), Redemption.objects.get(member=member_b)
    assert list(clerk_client.get(REDEMPTIONS).context["cl"].result_list) == [mine]

    clerk_client.post(REDEMPTIONS, {"action": "cancel_redemptions", "_selected_action": [mine.pk, theirs.pk]})

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == (RedemptionStatus.CANCELLED, RedemptionStatus.COMPLETED)
    assert (account(member_a).available, account(member_b).available) == (100, 0)


def test_without_change_redemption_there_is_no_cancel_action(client, clerk_a, member_a, gift):
    give_points(member_a, 100)
    services.redeem_reward(actor="x", scope="test", key="r1", fingerprint="x", member_id=member_a.pk, reward_id=gift.pk)
    clerk_a.groups.get().permissions.remove(Permission.objects.get(codename="change_redemption"))
    client.force_login(clerk_a)

    listing = client.get(REDEMPTIONS)
    response = client.post(
        REDEMPTIONS, {"action": "cancel_redemptions", "_selected_action": [Redemption.objects.get().pk]}
    )

    assert listing.status_code == 200
    assert listing.context["action_form"] is None
    assert response.status_code == 200  # "no action selected": nothing happens
    assert Redemption.objects.get().status == RedemptionStatus.COMPLETED


def test_the_account_list_is_read_only_and_searchable(admin_client, member_a, member_b):
    give_points(member_a, 10)
    give_points(member_b, 20)

    listing = admin_client.get("/admin/points/pointsaccount/", {"q": member_b.member_no})

    assert [a.available for a in listing.context["cl"].result_list] == [20]
    assert admin_client.get("/admin/points/pointsaccount/add/").status_code == 403


# --- The marketer's screens -----------------------------------------------------------------------------------


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


def split(value):
    local = timezone.localtime(value)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def rule_form(rule, **overrides):
    valid_from, valid_until = split(rule.valid_from), split(rule.valid_until) if rule.valid_until else ("", "")
    data = {
        "channel": rule.channel,
        "event_type": rule.event_type,
        "name": rule.name,
        "store": str(rule.store_id or ""),
        "valid_from_0": valid_from[0],
        "valid_from_1": valid_from[1],
        "valid_until_0": valid_until[0],
        "valid_until_1": valid_until[1],
        "points": str(rule.points),
        "points_per_unit": str(rule.points_per_unit),
        "min_amount": str(rule.min_amount),
        "excluded_categories": "[]",
        "pending_days": str(rule.pending_days),
        "daily_limit": "",
        "streak_days": "",
        "streak_bonus": str(rule.streak_bonus),
        "_save": "Save",
        # What a browser posts back for fields with a callable default (Django compares against these).
        "initial-valid_from_0": valid_from[0],
        "initial-valid_from_1": valid_from[1],
        "initial-excluded_categories": "[]",
    }
    if rule.is_active:
        data["is_active"] = "on"
    data.update(overrides)
    return data


@pytest.fixture
def rule(db):
    return EarningRule.objects.create(
        channel="purchase",
        name="Base",
        points_per_unit=Decimal("1.00"),
        pending_days=7,
        valid_from=timezone.now() - timedelta(days=30),
    )


def test_an_existing_rules_earning_fields_cannot_be_changed_in_place(admin_client, rule):
    response = admin_client.post(f"{RULES}{rule.pk}/change/", rule_form(rule, points_per_unit="3"))

    assert response.status_code == 200
    assert "Save as new version" in str(response.context["adminform"].form.errors["points_per_unit"])
    rule.refresh_from_db()
    assert rule.points_per_unit == Decimal("1.00")


def test_an_existing_rule_may_be_ended_in_place_with_an_audit_row(admin_client, rule):
    ends = timezone.now() + timedelta(days=3)

    response = admin_client.post(
        f"{RULES}{rule.pk}/change/", rule_form(rule, valid_until_0=split(ends)[0], valid_until_1=split(ends)[1])
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert rule.valid_until == ends.replace(microsecond=0)
    audit = AuditEntry.objects.get(action="points.earning_rule.changed")
    assert (audit.actor, audit.old_values, list(audit.new_values)) == (
        "staff:boss",
        {"valid_until": None},
        ["valid_until"],
    )


def test_save_as_new_version_adds_a_rule_and_keeps_the_old_one(admin_client, rule, member_a, store_a):
    starts = timezone.now() - timedelta(minutes=1)
    page = admin_client.get(f"{RULES}{rule.pk}/change/")
    assert b'value="Save as new version" name="_saveasnew"' in page.content

    response = admin_client.post(
        f"{RULES}{rule.pk}/change/",
        rule_form(
            rule,
            points_per_unit="2",
            valid_from_0=split(starts)[0],
            valid_from_1=split(starts)[1],
            _saveasnew="Save as new version",
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    new = EarningRule.objects.get(created_by="staff:boss")
    assert (new.points_per_unit, new.pending_days, new.created_by) == (Decimal("2.00"), 7, "staff:boss")
    rule.refresh_from_db()
    assert rule.points_per_unit == Decimal("1.00")
    outcome = services.record_purchase(
        actor="x",
        source="store:A001",
        member_id=member_a.pk,
        order_no="N-1",
        amount=Decimal("10"),
        store=store_a,
        fingerprint="f",
    )
    assert outcome.result["points"]["awarded"] == 20  # the new version is in force


def test_a_rules_page_links_to_the_purchase_preview(client, rule):
    """So a marketer who saved a new version tries it from there (the rules' list links it too)."""
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))

    html = client.get(f"{RULES}{rule.pk}/change/").content.decode()

    assert 'href="/admin/points/earningrule/preview/" class="viewlink" id="preview-purchase-link"' in html


def test_a_marketer_adds_a_policy_version_starting_from_the_current_values(client, admin_user):
    PointsPolicy.objects.create(
        valid_from=timezone.now() - timedelta(days=1), clerk_adjustment_limit=300, expiry_months=24
    )
    client.force_login(admin_user)

    form = client.get(f"{POLICIES}add/").context["adminform"].form

    assert (form.initial["clerk_adjustment_limit"], form.initial["expiry_months"]) == (300, 24)


def test_saved_policy_versions_are_read_only(admin_client):
    policy = PointsPolicy.objects.create(clerk_adjustment_limit=300)

    response = admin_client.post(f"{POLICIES}{policy.pk}/change/", {"clerk_adjustment_limit": "9999"})

    assert response.status_code == 403
    policy.refresh_from_db()
    assert policy.clerk_adjustment_limit == 300
    assert admin_client.get(f"{POLICIES}{policy.pk}/delete/").status_code == 403


def test_a_new_policy_version_records_who_made_it(admin_client):
    now = timezone.now()
    response = admin_client.post(
        f"{POLICIES}add/",
        {
            "valid_from_0": split(now)[0],
            "valid_from_1": split(now)[1],
            "expiry_mode": "rolling",
            "expiry_months": "12",
            "daily_cap": "5000",
            "cash_points_per_unit": "100",
            "cash_max_share": "0.50",
            "clerk_adjustment_limit": "200",
            "marketer_adjustment_limit": "5000",
            "clerk_daily_adjustment_total": "2000",
            "marketer_daily_adjustment_total": "20000",
            "member_daily_adjustment_total": "10000",
            "transfer_daily_limit": "1000",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = PointsPolicy.objects.get(created_by="staff:boss")
    assert (policy.clerk_adjustment_limit, policy.created_by) == (200, "staff:boss")
    assert AuditEntry.objects.filter(action="points.policy.added", target_id=str(policy.pk)).count() == 1


def test_editing_a_reward_does_not_overwrite_stock_that_redemptions_moved(admin_client, member_a, gift):
    page = admin_client.get(f"/admin/points/reward/{gift.pk}/change/")
    assert page.status_code == 200
    give_points(member_a, 100)
    services.redeem_reward(
        actor="x", scope="test", key="r1", fingerprint="x", member_id=member_a.pk, reward_id=gift.pk
    )  # stock 5 → 4 while the marketer's form is open

    response = admin_client.post(
        f"/admin/points/reward/{gift.pk}/change/",
        {
            "code": "mug",
            "name": "Big mug",
            "kind": "gift",
            "description": "",
            "cost_points": "100",
            "stock": "5",
            "per_member_limit": "",
            "eligible_tiers": "[]",
            "voucher_amount": "",
            "valid_from_0": "",
            "valid_from_1": "",
            "valid_until_0": "",
            "valid_until_1": "",
            "is_active": "on",
            "initial-stock": "5",
            "initial-eligible_tiers": "[]",
        },
    )  # as the form showed them

    assert response.status_code == 302, response.context["adminform"].form.errors
    gift.refresh_from_db()
    assert (gift.name, gift.stock) == ("Big mug", 4)
    audit = AuditEntry.objects.get(action="points.reward.changed")
    assert (audit.old_values, audit.new_values) == ({"name": "Mug"}, {"name": "Big mug"})


def test_a_marketer_adds_rewards_and_a_clerk_only_sees_them(marketer_client, client, clerk_a, gift):
    response = marketer_client.post(
        "/admin/points/reward/add/",
        {
            "code": "tea",
            "name": "Tea",
            "kind": "coupon",
            "description": "",
            "cost_points": "300",
            "stock": "",
            "per_member_limit": "1",
            "eligible_tiers": "[]",
            "voucher_amount": "",
            "valid_from_0": "",
            "valid_from_1": "",
            "valid_until_0": "",
            "valid_until_1": "",
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    tea = Reward.objects.get(code="tea")
    assert (tea.cost_points, tea.stock, tea.per_member_limit) == (300, None, 1)
    assert AuditEntry.objects.get(action="points.reward.added").actor == "staff:marketing"
    client.force_login(clerk_a)
    assert client.get("/admin/points/reward/").status_code == 200
    assert client.get("/admin/points/reward/add/").status_code == 403


def test_a_clerk_opens_a_reward_read_only(client, clerk_a, gift):
    """A clerk may view a reward (her form has no fields: all are read-only), and the page shows its stock."""
    client.force_login(clerk_a)

    shown = readonly_values(client.get(f"/admin/points/reward/{gift.pk}/change/"))

    assert (shown["code"], shown["name"], shown["cost_points"], shown["stock"]) == ("mug", "Mug", "100", "5")


def test_a_forged_initial_value_does_not_let_an_earning_field_change_in_place(admin_client, rule):
    later = timezone.now() + timedelta(days=1)
    date_part, time_part = split(later)

    response = admin_client.post(
        f"{RULES}{rule.pk}/change/",
        rule_form(
            rule,
            valid_from_0=date_part,
            valid_from_1=time_part,
            **{"initial-valid_from_0": date_part, "initial-valid_from_1": time_part},
        ),
    )

    assert response.status_code == 200
    assert "valid_from" in response.context["adminform"].form.errors
    rule.refresh_from_db()
    assert rule.valid_from < timezone.now()


def test_the_member_admin_is_the_points_one_and_keeps_the_members_behaviour(clerk_client, member_a, member_b):
    from django.contrib import admin

    from members.admin import MemberAdmin
    from members.models import Member
    from points.admin import PointsMemberAdmin

    assert type(admin.site._registry[Member]) is PointsMemberAdmin
    assert issubclass(PointsMemberAdmin, MemberAdmin)
    assert list(clerk_client.get("/admin/members/member/").context["cl"].result_list) == [member_a]


def test_breakdown_lines_are_named_in_the_admins_language(db):
    """The sources of a purchase's points as the admin's messages and preview show them: words for base, streak
    and the daily cap; a tier line by the tier's name (the default ladder's silver is 银卡); a campaign's by its
    name; an unknown source as it is."""
    from django.utils import translation

    from points.admin import breakdown_source, breakdown_text

    lines = [
        {"source": "base", "points": 95},
        {"source": "tier:silver", "points": 19},
        {"source": "tier:silver:birthday", "points": 20},
        {"source": "campaign:3", "campaign_name": "Double Tuesdays", "points": 95},
        {"source": "tier:nosuch", "points": 1},
        {"source": "something:new", "points": 2},
    ]
    with translation.override("en"):
        assert breakdown_text(lines) == (
            "base 95 + tier 银卡 19 + tier 银卡, birthday 20 + campaign Double Tuesdays 95 + tier nosuch 1 "
            "+ something:new 2"
        )
    with translation.override("zh-hans"):
        assert [breakdown_source(line) for line in lines] == [
            "基础",
            "等级 银卡",
            "等级 银卡（生日）",
            "活动 Double Tuesdays",
            "等级 nosuch",
            "something:new",
        ]


def test_the_purchase_preview_reads_in_chinese(client, member_a, settings):
    """The preview's line names the lot status and the breakdown's sources in Chinese."""
    client.force_login(StaffUserFactory(username="mkt", role="marketer"))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    response = client.post(
        "/admin/points/earningrule/preview/",
        {"member": member_a.member_no, "amount": "120.00", "channel": "offline", "lines": ""},
    )

    result = response.context["result"]
    assert result["breakdown"] == [{"source": "基础", "points": 120}]
    assert result["text"].startswith("120 积分")
    assert "pending" not in result["text"] and "available" not in result["text"]


def test_a_ledger_entrys_page_shows_its_reason_and_breakdown_in_the_admins_language(
    clerk_client, member_a, store_a, settings
):
    services.record_purchase(
        actor="client:pos",
        source="store:A001",
        member_id=member_a.pk,
        order_no="A-7",
        amount=Decimal("120.00"),
        store=store_a,
        fingerprint="f",
    )
    entry = LedgerEntry.objects.get(reference="A-7")
    clerk_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    shown = readonly_values(clerk_client.get(f"{LEDGER}{entry.pk}/change/"))

    assert "reason" not in shown and "breakdown" not in shown
    assert (shown["shown_reason"], shown["shown_breakdown"]) == ("消费", "基础 120")
