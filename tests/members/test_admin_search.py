"""The member search box at the counter finds a member by what she shows: her WeChat openid (from her WeChat
membership card), a scanned member code (her card number, bare or inside a link), and a coupon code opens the
coupon counter with it (and with its owner when the clerk may serve her)."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.db.models import Q

from campaigns.coupon_codes import new_code
from campaigns.models_coupons import Coupon
from members.admin import scanned_card_number, wechat_member_ids
from members.models import WechatIdentity
from tests.coupons.helpers import issue, template
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/members/member/"
COUNTER = "/admin/campaigns/coupon/counter/"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def change_url(member):
    return f"/admin/members/member/{member.pk}/change/"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


# --- WeChat openid ---------------------------------------------------------------------------------------------


def test_an_openid_opens_her_page_whatever_her_store(clerk_client, member_a, member_b):
    WechatIdentity.objects.create(member=member_b, app_id="wx-mini", openid=OPENID, unionid="")

    response = clerk_client.get(CHANGELIST, {"q": f"  {OPENID} "})

    assert response.status_code == 302
    assert response["Location"] == change_url(member_b)
    assert clerk_client.get(change_url(member_b)).status_code == 200  # found, so open to her at the counter


def test_a_unionid_finds_her_too(admin_client, member_a):
    WechatIdentity.objects.create(
        member=member_a, app_id="wx-oa", openid=OPENID, unionid="o6_bmasdasdsad6_2sgVt7hMZOPfL"
    )

    response = admin_client.get(CHANGELIST, {"q": "o6_bmasdasdsad6_2sgVt7hMZOPfL"})

    assert response["Location"] == change_url(member_a)


def test_an_unknown_openid_finds_nobody(admin_client, member_a):
    WechatIdentity.objects.create(member=member_a, app_id="wx-mini", openid=OPENID, unionid="")

    response = admin_client.get(CHANGELIST, {"q": OPENID[:-1] + "X"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


# --- A scanned member code ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["{no}", "member:{no}", "https://m.example.cn/card/{no}", "MC{no}"])
def test_a_scanned_member_code_opens_her_page(clerk_client, member_a, member_b, shape):
    response = clerk_client.get(CHANGELIST, {"q": shape.format(no=member_b.member_no)})

    assert response.status_code == 302
    assert response["Location"] == change_url(member_b)


def test_a_member_code_with_a_wrong_check_digit_is_no_card_number(member_a):
    wrong = member_a.member_no[:-1] + str((int(member_a.member_no[-1]) + 1) % 10)

    assert scanned_card_number(f"member:{member_a.member_no}") == member_a.member_no
    assert scanned_card_number(f"member:{wrong}") is None
    assert scanned_card_number(f"x{member_a.member_no}1") is None  # 13 digits: not a card number


# --- A coupon code -----------------------------------------------------------------------------------------------


def coupon_of(member):
    (coupon,) = issue(template(), member)
    return Coupon.objects.get(pk=coupon.pk)


def redirect_query(response):
    assert response.status_code == 302, response.content[:500]
    url = urlsplit(response["Location"])
    return url.path, {key: values[0] for key, values in parse_qs(url.query).items()}


def test_a_coupon_code_opens_the_coupon_counter_with_it_and_its_owner(clerk_client, member_a):
    coupon = coupon_of(member_a)
    typed = f"{coupon.code[:4]}-{coupon.code[4:8]}-{coupon.code[8:]}".lower()

    path, query = redirect_query(clerk_client.get(CHANGELIST, {"q": typed}))

    assert (path, query) == (COUNTER, {"code": coupon.code, "member": str(member_a.pk)})
    counter = clerk_client.get(COUNTER, query)
    assert counter.status_code == 200
    assert counter.context["member"] == member_a
    assert counter.context["form"]["code"].value() == coupon.code


def test_the_coupon_of_another_stores_member_opens_the_counter_without_her(clerk_client, member_b):
    coupon = coupon_of(member_b)

    path, query = redirect_query(clerk_client.get(CHANGELIST, {"q": coupon.code}))

    assert (path, query) == (COUNTER, {"code": coupon.code})


def test_a_well_formed_code_no_coupon_has_is_searched_as_usual(admin_client):
    MemberFactory(name="Someone")
    code = new_code()

    response = admin_client.get(CHANGELIST, {"q": code})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []


def test_a_members_card_number_wins_over_the_coupon_shortcut(admin_client, member_a):
    response = admin_client.get(CHANGELIST, {"q": member_a.member_no})

    assert response["Location"] == change_url(member_a)


def test_the_search_box_says_what_it_finds(admin_client):
    response = admin_client.get(CHANGELIST)

    assert response.context["cl"].search_help_text == (
        "Card number or scanned member code, phone (any format), WeChat openid, external id, part of a name, or a "
        "coupon code."
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plan is PostgreSQL's")
def test_the_openid_search_reads_the_openid_index_not_every_identity(member_a):
    WechatIdentity.objects.create(member=member_a, app_id="wx-mini", openid=OPENID, unionid="")
    found = WechatIdentity.objects.filter(Q(openid=OPENID) | Q(unionid=OPENID)).values_list("member_id", flat=True)

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = found.explain()

    assert "wechat_openid_idx" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert wechat_member_ids(OPENID) == [member_a.pk]
