"""The counter in the admin (SPEC §1 "Stores"): a clerk finds any member of the chain by exact phone or card number
and serves her at her own store, while lists stay limited to her stores' members; members she adds get her store;
the last 4 digits of a phone; one exact match opens the member; the member page's summary at the top."""

import re
import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.utils import timezone

from members.models import Member, Purchase, RfmSnapshot
from points import services as points_services
from points.models import Redemption, Reward
from tests.factories import MemberFactory, StaffUserFactory
from tests.stored_value.helpers import top_up
from tiers.models import MemberTier, Tier

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/members/member/"
ADD = "/admin/members/member/add/"


def change_url(member):
    return f"/admin/members/member/{member.pk}/change/"


def action_url(member, action):
    return f"/admin/members/member/{member.pk}/{action}/"


def listed(response):
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def give_points(member, points):
    points_services.adjust_points(
        actor="staff:seed",
        role="admin",
        scope="test",
        key=str(uuid.uuid4()),
        fingerprint="x",
        member_id=member.pk,
        points=points,
        reason="seed",
    )


def glance(response):
    """The summary at the top of the member page: {label: text}, tags stripped."""
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    start = html.index('id="member-glance"')
    block = html[start : html.index("</table>", html.index("<tbody>", start)) + len("</table>")]
    rows = re.findall(r'<tr><th scope="row">(.*?)</th><td>(.*?)</td></tr>', block, flags=re.S)
    return {label: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", value)).strip() for label, value in rows}


def counter_buttons(response):
    html = response.content.decode()
    start = html.index('<ul class="counter-actions">')
    actions = html[start : html.index("</ul>", start)]
    return re.findall(r'<a class="button" href="([^"]+)">([^<]+)</a>', actions)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


# --- Finding any member of the chain --------------------------------------------------------------------------


@pytest.mark.parametrize("term", ["139 0013 9000", "+86 139-0013-9000", "13900139000"])
def test_a_clerk_finds_another_stores_member_by_her_phone_and_opens_her(clerk_client, member_a, member_b, term):
    response = clerk_client.get(CHANGELIST, {"q": term})

    assert response.status_code == 302
    assert response["Location"] == change_url(member_b)
    page = clerk_client.get(change_url(member_b))
    assert page.status_code == 200
    assert member_b.member_no in page.content.decode()
    assert page.context["has_change_permission"] is False  # her profile is her store's to change
    assert [label for _url, label in counter_buttons(page)] == [
        "Record a purchase",
        "Refund an order",
        "Redeem a reward",
        "Adjust points",
        "Household",
    ]


def test_a_clerk_finds_another_stores_member_by_her_card_number(clerk_client, member_a, member_b):
    response = clerk_client.get(CHANGELIST, {"q": f" {member_b.member_no} "})

    assert response.status_code == 302
    assert response["Location"] == change_url(member_b)
    assert clerk_client.get(change_url(member_b)).status_code == 200


def test_only_other_stores_members_found_are_remembered_and_only_the_newest_50(clerk_client, member_a, store_b):
    others = [MemberFactory(home_store=store_b) for _ in range(51)]
    clerk_client.get(CHANGELIST, {"q": member_a.member_no})
    for other in others:
        clerk_client.get(CHANGELIST, {"q": other.member_no})

    remembered = clerk_client.session["members.found_by_exact_key"]
    assert remembered == [other.pk for other in reversed(others[1:])]
    assert clerk_client.get(change_url(others[0])).status_code == 302  # the oldest find is closed again
    assert clerk_client.get(change_url(others[1])).status_code == 200


def test_guessing_another_stores_member_id_still_finds_nothing(clerk_client, member_a, member_b, store_b):
    other = MemberFactory(home_store=store_b, phone="+8613700137000")
    clerk_client.get(CHANGELIST, {"q": member_b.member_no})  # found, and only she is open to the clerk

    guessed = clerk_client.get(change_url(other))

    assert guessed.status_code == 302
    assert guessed["Location"] == "/admin/"
    assert other.member_no.encode() not in guessed.content
    assert clerk_client.get(action_url(other, "record-purchase")).status_code == 404
    assert clerk_client.get(action_url(other, "redeem")).status_code == 404
    assert clerk_client.get(change_url(member_b)).status_code == 200


def test_lists_and_partial_searches_stay_limited_to_the_clerks_stores(clerk_client, member_a, member_b):
    Member.objects.filter(pk=member_b.pk).update(name="王芳")
    clerk_client.get(CHANGELIST, {"q": member_b.member_no})  # found her by card number

    assert listed(clerk_client.get(CHANGELIST)) == [member_a]
    assert listed(clerk_client.get(CHANGELIST, {"q": "王芳"})) == []
    assert listed(clerk_client.get(CHANGELIST, {"q": "9000"})) == []  # last 4 digits: her stores only


def test_a_clerk_cannot_change_the_profile_of_another_stores_member_she_found(clerk_client, member_b, store_a):
    clerk_client.get(CHANGELIST, {"q": member_b.member_no})

    response = clerk_client.post(change_url(member_b), {"name": "hijacked", "home_store": str(store_a.pk)})

    assert response.status_code == 403
    member_b.refresh_from_db()
    assert member_b.name != "hijacked"


def test_a_clerk_records_a_purchase_and_redeems_for_a_found_member_at_her_own_store(
    clerk_client, member_b, store_a, store_b
):
    give_points(member_b, 500)
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=5)
    clerk_client.get(CHANGELIST, {"q": "139 0013 9000"})

    form = clerk_client.get(action_url(member_b, "record-purchase")).context["form"]
    assert form["store"].value() == store_a.pk
    assert list(form.fields["store"].queryset) == [store_a]
    bought = clerk_client.post(
        action_url(member_b, "record-purchase"),
        {"order_no": "A-7", "amount": "88.00", "store": str(store_a.pk), "channel": "offline", "points_used": "0"},
    )
    assert bought.status_code == 302
    assert bought["Location"] == change_url(member_b)
    assert messages_of(bought) == ["Purchase A-7: 88 points pending (base 88)."]
    purchase = Purchase.objects.get(order_no="A-7")
    assert (purchase.member, purchase.store, purchase.source) == (member_b, store_a, "store:A001")

    key = str(clerk_client.get(action_url(member_b, "redeem")).context["form"]["key"].value())
    redeemed = clerk_client.post(action_url(member_b, "redeem"), {"reward": str(mug.pk), "quantity": "1", "key": key})
    assert redeemed.status_code == 302
    assert messages_of(redeemed) == ["Redeemed 1 × Mug for 100 points; balance 400."]
    redemption = Redemption.objects.get()
    assert (redemption.member, redemption.store) == (member_b, store_a)


def test_a_clerk_with_two_stores_chooses_where_she_redeems(client, member_b, store_a, store_b):
    from tests.factories import StoreFactory

    store_c = StoreFactory(code="C001", name="Store C")
    clerk = StaffUserFactory(username="clerk-ac", role="clerk", stores=[store_a, store_c])
    client.force_login(clerk)
    give_points(member_b, 500)
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100)
    client.get(CHANGELIST, {"q": member_b.member_no})
    form = client.get(action_url(member_b, "redeem")).context["form"]
    assert set(form.fields["store"].queryset) == {store_a, store_c}
    assert form["store"].value() is None  # her home store is none of the clerk's: she chooses

    response = client.post(
        action_url(member_b, "redeem"),
        {"reward": str(mug.pk), "quantity": "1", "store": str(store_c.pk), "key": str(form["key"].value())},
    )

    assert response.status_code == 302
    assert Redemption.objects.get().store == store_c


# --- Registering: the clerk's store ---------------------------------------------------------------------------


def new_member(**overrides):
    return {
        "phone": "13800138001",
        "external_id": "",
        "name": "张三",
        "gender": "female",
        "birthday": "",
        "email": "",
        "home_store": "",
        "channel": "store",
        "member_tags-TOTAL_FORMS": "0",
        "member_tags-INITIAL_FORMS": "0",
        "member_tags-MIN_NUM_FORMS": "0",
        "member_tags-MAX_NUM_FORMS": "1000",
        **overrides,
    }


def test_the_add_form_preselects_the_only_store_of_the_clerk(clerk_client, store_a, store_b):
    form = clerk_client.get(ADD).context["adminform"].form

    assert form["home_store"].value() == store_a.pk
    assert list(form.fields["home_store"].queryset) == [store_a]


def test_a_member_a_one_store_clerk_adds_without_a_store_gets_hers_and_she_opens_her(clerk_client, store_a):
    response = clerk_client.post(ADD, new_member())

    assert response.status_code == 302
    member = Member.objects.get()
    assert member.home_store == store_a
    page = clerk_client.get(change_url(member))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is True


def test_a_clerk_with_several_stores_chooses_one_of_hers(client, store_a, store_b):
    from tests.factories import StoreFactory

    store_c = StoreFactory(code="C001", name="Store C")
    client.force_login(StaffUserFactory(username="clerk-ac", role="clerk", stores=[store_a, store_c]))

    refused = client.post(ADD, new_member())
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["home_store"] == ["This field is required."]
    not_hers = client.post(ADD, new_member(home_store=str(store_b.pk)))
    assert "home_store" in not_hers.context["adminform"].form.errors
    assert Member.objects.count() == 0

    chosen = client.post(ADD, new_member(home_store=str(store_c.pk)))
    assert chosen.status_code == 302
    assert Member.objects.get().home_store == store_c


def test_an_admin_may_add_a_member_without_a_home_store(admin_client, db):
    response = admin_client.post(ADD, new_member())

    assert response.status_code == 302
    assert Member.objects.get().home_store is None


# --- The last 4 digits, and one exact match -------------------------------------------------------------------


def test_the_last_4_digits_find_the_clerks_stores_members_whose_phone_ends_with_them(
    clerk_client, member_a, store_a, store_b
):
    also_a = MemberFactory(home_store=store_a, phone="+8613700008000")
    MemberFactory(home_store=store_a, phone="+8613700080001")  # 8000 inside, not at the end
    MemberFactory(home_store=store_b, phone="+8615000008000")

    assert set(listed(clerk_client.get(CHANGELIST, {"q": "8000"}))) == {member_a, also_a}


def test_the_last_4_digits_find_every_store_for_an_admin(client, admin_user, member_a, store_b):
    at_b = MemberFactory(home_store=store_b, phone="+8615000008000")
    client.force_login(admin_user)

    assert set(listed(client.get(CHANGELIST, {"q": "8000"}))) == {member_a, at_b}


def test_one_member_by_her_last_4_digits_stays_on_the_list(clerk_client, member_a):
    assert listed(clerk_client.get(CHANGELIST, {"q": "8000"})) == [member_a]


def test_one_member_by_part_of_her_name_stays_on_the_list(clerk_client, member_a):
    Member.objects.filter(pk=member_a.pk).update(name="王小明")

    assert listed(clerk_client.get(CHANGELIST, {"q": "小明"})) == [member_a]


def test_an_external_id_opens_the_member(clerk_client, member_a):
    Member.objects.filter(pk=member_a.pk).update(external_id="CRM-42")

    response = clerk_client.get(CHANGELIST, {"q": "CRM-42"})

    assert response.status_code == 302
    assert response["Location"] == change_url(member_a)


def test_a_popup_search_stays_on_the_list(admin_client, member_a):
    response = admin_client.get(CHANGELIST, {"q": member_a.member_no, "_popup": "1", "_to_field": "id"})

    assert listed(response) == [member_a]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the expression index is PostgreSQL's")
@pytest.mark.parametrize("who", ["admin", "clerk"])
def test_the_last_4_digits_search_reads_the_reversed_phone_index_not_every_member(admin_user, clerk_a, member_a, who):
    """Every condition of a digits search is on an index (no name search: names have no digits), so PostgreSQL
    can answer it without a sequential scan of the members."""
    from django.contrib import admin
    from django.test import RequestFactory

    request = RequestFactory().get(CHANGELIST, {"q": "8000"})
    request.user, request.session = (admin_user if who == "admin" else clerk_a), {}
    model_admin = admin.site._registry[Member]
    queryset, _ = model_admin.get_search_results(request, model_admin.get_queryset(request), "8000")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = queryset.explain()

    if who == "admin":  # a clerk's search may as well start from her stores' members (the home store index)
        assert "member_phone_reversed_idx" in plan
    assert "Seq Scan on members_member" not in plan, plan
    assert list(queryset) == [member_a]


# --- The member page: at a glance -----------------------------------------------------------------------------


def test_the_member_page_starts_with_her_figures_and_the_counters_buttons(admin_client, member_a, store_a):
    points_services.record_purchase(
        actor="client:pos",
        source="store:A001",
        member_id=member_a.pk,
        order_no="A-1",
        amount=Decimal("120.50"),
        store=store_a,
        fingerprint="f",
    )
    give_points(member_a, 300)
    silver = Tier.objects.get(code="silver")
    MemberTier.objects.update_or_create(
        member=member_a, defaults={"tier": silver, "since": timezone.now(), "hold_until": date(2027, 3, 1)}
    )

    response = admin_client.get(change_url(member_a))

    html = response.content.decode()
    assert html.index('id="member-glance"') < html.index('name="phone"')  # before her profile's fields
    rows = glance(response)
    assert list(rows) == [
        "Available points",
        "Pending points",
        "Expiring next",
        "Tier",
        "Progress",
        "Retention",
        "Segment",
        "Lifecycle stage",
        "Last purchases",
    ]
    assert (rows["Available points"], rows["Pending points"]) == ("300", "120")
    assert re.fullmatch(r"300 on \d{4}-\d{2}-\d{2}", rows["Expiring next"])
    assert rows["Tier"] == "银卡"
    # The default growth policy: 1 per yuan (120) + 10 per order.
    assert rows["Progress"] == "130 of 5000 growth value for 金卡: 4870 to go."
    assert '<progress value="130" max="5000"></progress>' in html
    assert rows["Retention"] == "800 growth value keeps 银卡 (held until 2027-03-01)"
    assert rows["Segment"] == "not computed yet (the nightly RFM job has not run)"
    assert rows["Last purchases"].startswith("occurred at order number store amount refunded points")
    assert "A-1 Store A 120.50 120" in rows["Last purchases"]
    assert [label for _url, label in counter_buttons(response)] == [
        "Record a purchase",
        "Refund an order",
        "Redeem a reward",
        "Adjust points",
        "Household",
        "Merge a duplicate into this member",
    ]
    assert counter_buttons(response)[0][0] == action_url(member_a, "record-purchase")


def test_the_member_page_shows_the_stored_value_balance_when_she_has_an_account(admin_client, member_a):
    assert "Stored value" not in glance(admin_client.get(change_url(member_a)))
    top_up(member_a, 10000)

    rows = glance(admin_client.get(change_url(member_a)))

    assert rows["Stored value"] == "100.00 (principal 100.00 + bonus 0.00) Top up"


def test_the_member_page_shows_her_segment_and_lifecycle(admin_client, member_a):
    from loyalty.models import JobRun, JobStatus

    JobRun.objects.create(job="rfm", business_date=date(2026, 11, 30), status=JobStatus.DONE)
    RfmSnapshot.objects.create(
        member=member_a,
        as_of=date(2026, 11, 30),
        recency_days=3,
        frequency=9,
        monetary=Decimal("1200.00"),
        r_score=5,
        f_score=4,
        m_score=5,
        segment="important_value",
        lifecycle="active",
    )

    rows = glance(admin_client.get(change_url(member_a)))

    assert rows["Segment"] == "important value 重要价值 (R5 F4 M5, as of 2026-11-30)"
    assert rows["Lifecycle stage"] == "active"


def test_an_inactive_members_segment_shows_no_scores(admin_client, member_a):
    """An inactive member bought nothing in the RFM window: she has a segment but no R, F and M scores."""
    from loyalty.models import JobRun, JobStatus

    JobRun.objects.create(job="rfm", business_date=date(2026, 11, 30), status=JobStatus.DONE)
    RfmSnapshot.objects.create(
        member=member_a,
        as_of=date(2026, 11, 30),
        recency_days=None,
        frequency=0,
        monetary=Decimal("0.00"),
        r_score=None,
        f_score=None,
        m_score=None,
        segment="inactive",
        lifecycle="new",
    )

    rows = glance(admin_client.get(change_url(member_a)))

    assert rows["Segment"] == "inactive (as of 2026-11-30)"


def readonly_fields_shown(response):
    """The read-only fields of an admin change page: {field name: (label, rendered value)}."""
    assert response.status_code == 200, response.content[:500]
    return {
        field.field["name"]: (str(field.field["label"]), str(field.contents()))
        for fieldset in response.context["adminform"]
        for line in fieldset
        for field in line
        if field.is_readonly
    }


def test_another_stores_member_read_only_shows_her_consents_by_channel_in_chinese(clerk_client, member_b, settings):
    Member.objects.filter(pk=member_b.pk).update(consent_sms=True, consent_wechat=False, consent_email=True)
    clerk_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    clerk_client.get(CHANGELIST, {"q": member_b.member_no})

    shown = readonly_fields_shown(clerk_client.get(change_url(member_b)))

    assert "consents" not in shown
    assert shown["consents_shown"] == ("营销授权", "短信, 邮件")


def test_a_clerk_views_a_rule_based_tag_read_only(clerk_client):
    from members.models import Tag

    tag = Tag.objects.create(code="adults", name="Adults", kind="rule", rule={"age": {"min": 18}})

    response = clerk_client.get(f"/admin/members/tag/{tag.pk}/change/")

    shown = readonly_fields_shown(response)
    assert list(shown) == ["code", "name", "kind", "description", "is_active", "rule"]
    assert shown["code"][1] == "adults"
    assert "Rule match" not in response.content.decode()


def test_a_clerk_sees_the_points_buttons_but_not_the_merge(clerk_client, member_a):
    labels = [label for _url, label in counter_buttons(clerk_client.get(change_url(member_a)))]

    assert labels == ["Record a purchase", "Refund an order", "Redeem a reward", "Adjust points", "Household"]


# --- The redemption form says why nothing can be redeemed -----------------------------------------------------


def test_the_redemption_form_says_when_no_reward_is_available(clerk_client, member_a):
    Reward.objects.create(code="old", name="Old mug", kind="gift", cost_points=10, is_active=False)
    Reward.objects.create(code="gone", name="Gone mug", kind="gift", cost_points=10, stock=0)

    response = clerk_client.get(action_url(member_a, "redeem"))

    assert list(response.context["form"].fields["reward"].queryset) == []
    assert response.context["form"].notice == (
        "No reward can be redeemed now: none is active, within its dates and in stock (marketers add rewards "
        "under Points › Rewards)."
    )
    assert "No reward can be redeemed now" in response.content.decode()


def test_the_redemption_form_says_when_she_cannot_afford_any_reward(clerk_client, member_a):
    give_points(member_a, 50)
    Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100)
    Reward.objects.create(code="bag", name="Bag", kind="gift", cost_points=300)

    response = clerk_client.get(action_url(member_a, "redeem"))

    assert response.context["form"].notice == (
        "She cannot afford any reward: 50 points available, and the cheapest reward (Mug) costs 100."
    )


def test_the_redemption_form_says_nothing_when_she_can_redeem(clerk_client, member_a):
    give_points(member_a, 100)
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=3)

    form = clerk_client.get(action_url(member_a, "redeem")).context["form"]

    assert form.notice is None
    assert [label for _value, label in form.fields["reward"].choices][1:] == ["Mug — 100 points, 3 in stock"]
    assert list(form.fields["reward"].queryset) == [mug]
