"""The Django admin at the counter: finding, registering and tagging members, client apps, role permissions."""

import hashlib
import re

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from rest_framework.test import APIClient

from loyalty.models import ApiClient, AuditEntry
from members.models import Member, MemberTag
from members.services.membership import is_valid_member_no
from tests.factories import MemberFactory, StaffUserFactory, TagFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/members/member/"
ADD = "/admin/members/member/add/"
KEY_RE = re.compile(r"lk_[0-9a-f]{8}\.[A-Za-z0-9_\-]+")


def change_url(member):
    return f"/admin/members/member/{member.pk}/change/"


def listed(response):
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def opened(response):
    """The member a search opened directly (one exact match), or None when it stayed on the list."""
    if response.status_code != 302:
        assert response.status_code == 200, response.content[:500]
        return None
    match = re.fullmatch(r"/admin/members/member/(\d+)/change/", response["Location"])
    assert match, response["Location"]
    return Member.objects.get(pk=int(match[1]))


def inline_management(total=0, initial=0):
    return {
        "member_tags-TOTAL_FORMS": str(total),
        "member_tags-INITIAL_FORMS": str(initial),
        "member_tags-MIN_NUM_FORMS": "0",
        "member_tags-MAX_NUM_FORMS": "1000",
    }


def member_form_data(member, **overrides):
    """The change form of a member as the browser would post it back unchanged."""
    data = {
        "phone": member.phone or "",
        "external_id": member.external_id or "",
        "name": member.name,
        "gender": member.gender,
        "birthday": member.birthday.isoformat() if member.birthday else "",
        "email": member.email,
        "home_store": str(member.home_store_id or ""),
        "channel": member.channel,
        "consents": [channel for channel, on in member.consents.items() if on],
        **inline_management(),
    }
    data.update(overrides)
    return data


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


# --- Roles ----------------------------------------------------------------------------------------------------


def test_role_groups_get_their_model_permissions_on_migrate(db):
    def codenames(name):
        return set(Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename"))

    clerk, marketer, admin = codenames("clerk"), codenames("marketer"), codenames("admin")
    assert {
        ("members", "view_member"),
        ("members", "add_member"),
        ("members", "change_member"),
        ("members", "add_membertag"),
        ("members", "delete_membertag"),
        ("loyalty", "view_message"),
    } <= clerk
    assert ("members", "delete_member") not in clerk
    assert ("members", "add_tag") not in clerk
    assert ("loyalty", "add_apiclient") not in clerk
    assert clerk < marketer
    assert {("members", "add_tag"), ("members", "change_tag"), ("loyalty", "view_auditentry")} <= marketer
    assert ("loyalty", "add_apiclient") not in marketer
    assert {("loyalty", "add_apiclient"), ("members", "change_member"), ("members", "add_tag")} <= admin
    assert not any(codename.endswith(("stafftoken", "otpchallenge")) for _, codename in admin)


def test_clerk_user_has_the_clerk_permissions_through_her_group(clerk_a):
    assert clerk_a.has_perm("members.add_member")
    assert clerk_a.has_perm("members.add_membertag")
    assert not clerk_a.has_perm("members.delete_member")
    assert not clerk_a.has_perm("members.add_apiclient")


# --- Login page and member lists ------------------------------------------------------------------------------


def test_admin_login_page_renders(client, db):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert b'name="username"' in response.content


def test_admin_requires_a_login(client, db):
    response = client.get(CHANGELIST)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("term", ["138 0013 8000", "+86 138 0013 8000", "8613800138000", "13800138000"])
def test_member_search_finds_a_phone_in_any_format(admin_client, member_a, member_b, term):
    assert opened(admin_client.get(CHANGELIST, {"q": term})) == member_a


def test_member_search_finds_a_card_number(admin_client, member_a, member_b):
    assert opened(admin_client.get(CHANGELIST, {"q": member_b.member_no})) == member_b


def test_member_search_finds_part_of_a_name(admin_client, member_a, member_b):
    Member.objects.filter(pk=member_a.pk).update(name="王小明")
    Member.objects.filter(pk=member_b.pk).update(name="李娜")

    assert listed(admin_client.get(CHANGELIST, {"q": "小明"})) == [member_a]
    assert listed(admin_client.get(CHANGELIST, {"q": "nobody-has-this"})) == []


def test_member_changelist_filters_by_home_store(admin_client, member_a, member_b, store_b):
    assert listed(admin_client.get(CHANGELIST, {"home_store__id__exact": store_b.pk})) == [member_b]


def test_member_changelist_filters_by_tag(admin_client, member_a, member_b):
    vip = TagFactory(code="vip", name="VIP")
    MemberTag.objects.create(member=member_b, tag=vip)

    assert listed(admin_client.get(CHANGELIST, {"tags__id__exact": vip.pk})) == [member_b]


def test_clerk_sees_only_the_members_of_her_stores(clerk_client, member_a, member_b):
    assert listed(clerk_client.get(CHANGELIST)) == [member_a]
    assert listed(clerk_client.get(CHANGELIST, {"q": member_b.name})) == []


def test_clerk_cannot_open_a_member_of_another_store(clerk_client, member_a, member_b):
    assert clerk_client.get(change_url(member_a)).status_code == 200

    response = clerk_client.get(change_url(member_b))

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert member_b.phone.encode() not in response.content
    assert member_b.member_no.encode() not in response.content


def test_clerk_cannot_post_changes_to_a_member_of_another_store(clerk_client, member_b, store_a):
    response = clerk_client.post(
        change_url(member_b), member_form_data(member_b, name="hijacked", home_store=str(store_a.pk))
    )

    assert response.status_code == 302
    member_b.refresh_from_db()
    assert member_b.name != "hijacked"
    assert AuditEntry.objects.count() == 0


# --- Registering a member -------------------------------------------------------------------------------------


def new_member_data(store, **overrides):
    data = {
        "phone": "13800138001",
        "external_id": "",
        "name": "张三",
        "gender": "female",
        "birthday": "",
        "email": "",
        "home_store": str(store.pk),
        "channel": "store",
        "consents": ["sms"],
        **inline_management(),
    }
    data.update(overrides)
    return data


def test_clerk_registers_a_member_through_the_add_form(clerk_client, store_a):
    response = clerk_client.post(ADD, new_member_data(store_a))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    member = Member.objects.get()
    assert member.phone == "+8613800138001"
    assert member.name == "张三"
    assert member.gender == "female"
    assert member.home_store == store_a
    assert member.channel == "store"
    assert len(member.member_no) == 12 and member.member_no.isdigit()
    assert is_valid_member_no(member.member_no)
    assert (member.consent_sms, member.consent_wechat, member.consent_email) == (True, False, False)
    audit = AuditEntry.objects.get()
    assert (audit.action, audit.actor, audit.target_id) == ("member.registered", "staff:clerk-a", str(member.pk))


def test_admin_registers_a_member_through_the_add_form(admin_client, store_b):
    response = admin_client.post(ADD, new_member_data(store_b))

    assert response.status_code == 302
    member = Member.objects.get(phone="+8613800138001")
    assert member.home_store == store_b
    assert AuditEntry.objects.filter(action="member.registered", target_id=str(member.pk)).count() == 1


def test_clerk_cannot_register_a_member_for_another_store(clerk_client, store_a, store_b):
    response = clerk_client.post(ADD, new_member_data(store_b))

    assert response.status_code == 200
    assert "home_store" in response.context["adminform"].form.errors
    assert Member.objects.count() == 0


def test_registering_a_duplicate_phone_shows_a_form_error_and_creates_nothing(clerk_client, store_a, member_a):
    response = clerk_client.post(ADD, new_member_data(store_a, phone="138 0013 8000"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["phone"]
    assert member_a.member_no in errors["phone"][0]
    assert Member.objects.count() == 1
    assert AuditEntry.objects.count() == 0


def test_registering_an_invalid_phone_shows_a_form_error(clerk_client, store_a):
    response = clerk_client.post(ADD, new_member_data(store_a, phone="12345"))

    assert response.status_code == 200
    assert "phone" in response.context["adminform"].form.errors
    assert Member.objects.count() == 0


# --- Tags on the change page ----------------------------------------------------------------------------------


def test_member_change_page_shows_her_tags(admin_client, member_a):
    vip = TagFactory(code="vip", name="VIP member")
    MemberTag.objects.create(member=member_a, tag=vip, added_by="staff:boss")

    response = admin_client.get(change_url(member_a))

    assert response.status_code == 200
    (formset,) = [inline.formset for inline in response.context["inline_admin_formsets"]]
    assert formset.prefix == "member_tags"
    assert [row.tag for row in formset.queryset] == [vip]
    assert "VIP member" in response.content.decode()


@pytest.mark.parametrize("who", ["clerk", "admin"])
def test_adding_a_tag_through_the_inline_creates_it_with_an_audit_entry(client, clerk_a, admin_user, member_a, who):
    user = clerk_a if who == "clerk" else admin_user
    client.force_login(user)
    vip = TagFactory(code="vip", name="VIP")
    data = member_form_data(member_a, **inline_management(total=1))
    data.update({"member_tags-0-id": "", "member_tags-0-member": str(member_a.pk), "member_tags-0-tag": str(vip.pk)})

    response = client.post(change_url(member_a), data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    member_tag = MemberTag.objects.get()
    assert (member_tag.member, member_tag.tag, member_tag.added_by) == (member_a, vip, f"staff:{user.username}")
    audit = AuditEntry.objects.get()
    assert (audit.action, audit.target_id, audit.new_values) == ("member.tag_added", str(member_a.pk), {"tag": "vip"})


def test_deleting_a_tag_through_the_inline_removes_it_with_an_audit_entry(admin_client, member_a):
    vip = TagFactory(code="vip", name="VIP")
    existing = MemberTag.objects.create(member=member_a, tag=vip)
    data = member_form_data(member_a, **inline_management(total=1, initial=1))
    data.update(
        {
            "member_tags-0-id": str(existing.pk),
            "member_tags-0-member": str(member_a.pk),
            "member_tags-0-tag": str(vip.pk),
            "member_tags-0-DELETE": "on",
        }
    )

    response = admin_client.post(change_url(member_a), data)

    assert response.status_code == 302
    assert MemberTag.objects.count() == 0
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["member.tag_removed"]


def test_changing_a_member_in_the_admin_records_one_update(admin_client, member_a):
    response = admin_client.post(change_url(member_a), member_form_data(member_a, name="新名字", consents=["email"]))

    assert response.status_code == 302
    member_a.refresh_from_db()
    assert (member_a.name, member_a.consent_email) == ("新名字", True)
    audit = AuditEntry.objects.get()
    assert audit.action == "member.updated"
    assert audit.new_values == {"name": "新名字", "consent_email": True}


def test_changing_a_phone_to_another_members_shows_a_form_error(admin_client, member_a, member_b):
    response = admin_client.post(change_url(member_a), member_form_data(member_a, phone="139 0013 9000"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["phone"]
    member_a.refresh_from_db()
    assert member_a.phone == "+8613800138000"


# --- Client apps ----------------------------------------------------------------------------------------------


def test_creating_an_api_client_in_the_admin_shows_the_key_once_and_stores_its_hash(admin_client, member_a):
    response = admin_client.post(
        "/admin/loyalty/apiclient/add/",
        {"name": "E-shop", "scopes": ["members:read", "members:write"], "all_stores": "on", "is_active": "on"},
        follow=True,
    )

    assert response.status_code == 200
    texts = [str(message) for message in response.context["messages"]]
    keys = [key for text in texts for key in KEY_RE.findall(text)]
    assert len(keys) == 1, texts
    key = keys[0]
    client = ApiClient.objects.get(name="E-shop")
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert client.prefix == key[3:11]
    assert client.scopes == ["members:read", "members:write"]
    assert key not in client.key_hash

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    listing = api.get("/api/v1/members/")
    assert listing.status_code == 200
    assert [row["id"] for row in listing.json()["results"]] == [str(member_a.pk)]

    # Shown once: the client's change page does not show the key again.
    again = admin_client.get(f"/admin/loyalty/apiclient/{client.pk}/change/")
    assert again.status_code == 200
    assert key not in again.content.decode()
    assert not list(get_messages(again.wsgi_request))


def add_api_client(admin_client, **data):
    response = admin_client.post("/admin/loyalty/apiclient/add/", data, follow=True)
    assert response.status_code == 200
    keys = [key for message in response.context["messages"] for key in KEY_RE.findall(str(message))]
    assert len(keys) == 1
    return ApiClient.objects.get(name=data["name"]), keys[0]


def test_api_client_created_in_the_admin_for_a_store_sees_only_that_stores_members(
    admin_client, store_a, member_a, member_b
):
    client, key = add_api_client(
        admin_client, name="POS A", scopes=["members:read"], stores=[str(store_a.pk)], is_active="on"
    )

    assert list(client.stores.all()) == [store_a]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    listing = api.get("/api/v1/members/")
    assert listing.status_code == 200
    assert [row["id"] for row in listing.json()["results"]] == [str(member_a.pk)]
    write = api.post("/api/v1/members/", {"phone": "13800138009"}, format="json")
    assert write.status_code == 403
    assert write.json()["code"] == "permission_denied"


def test_api_client_added_inactive_in_the_admin_is_inactive(admin_client, member_a):
    client, key = add_api_client(admin_client, name="Not yet", scopes=["members:read"], all_stores="on")

    assert client.is_active is False
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert api.get("/api/v1/members/").status_code == 401


def test_an_api_clients_scopes_are_labelled_in_chinese(admin_client):
    """Issue 15: the form's scopes field was labelled "Scopes" on the Chinese admin."""
    form = admin_client.get("/admin/loyalty/apiclient/add/", HTTP_ACCEPT_LANGUAGE="zh-hans").context["adminform"].form

    assert str(form["scopes"].label) == "权限范围"


def test_clerk_cannot_create_api_clients(clerk_client):
    response = clerk_client.get("/admin/loyalty/apiclient/add/")

    assert response.status_code == 403


# --- No deletion ----------------------------------------------------------------------------------------------


def test_members_admin_offers_no_delete(admin_client, member_a):
    response = admin_client.get(f"/admin/members/member/{member_a.pk}/delete/")

    assert response.status_code == 403
    assert Member.objects.filter(pk=member_a.pk).exists()
    change = admin_client.get(change_url(member_a))
    assert change.context["has_delete_permission"] is False
    assert f"/admin/members/member/{member_a.pk}/delete/".encode() not in change.content


def test_members_admin_offers_no_bulk_delete_action(admin_client, member_a):
    response = admin_client.get(CHANGELIST)

    actions = [name for name, _ in response.context["action_form"].fields["action"].choices if name]
    assert "delete_selected" not in actions
    assert set(actions) == {"freeze_members", "unfreeze_members"}


def test_extra_members_are_not_listed_for_the_wrong_clerk(client, member_a, store_b):
    clerk_b = StaffUserFactory(username="clerk-b", role="clerk", stores=[store_b])
    other = MemberFactory(home_store=store_b)
    client.force_login(clerk_b)

    assert listed(client.get(CHANGELIST)) == [other]
