"""Who may see and change which member: credentials, roles, stores, scopes."""

import pytest

from members.models import Member
from tests.conftest import member_client, staff_client
from tests.factories import StaffUserFactory, TagFactory

URL = "/api/v1/members/"


@pytest.mark.parametrize(
    "path", [URL, f"{URL}1/", "/api/v1/tags/", "/api/v1/messages/", "/api/v1/me/", "/api/v1/stores/"]
)
def test_no_credentials_is_401_not_authenticated(anonymous, db, path):
    response = anonymous.get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"]


def test_clerk_sees_only_her_stores_members(clerk_api, member_a, member_b):
    listed = clerk_api.get(URL).json()["results"]
    assert [row["id"] for row in listed] == [str(member_a.pk)]
    assert clerk_api.get(f"{URL}{member_a.pk}/").status_code == 200
    hidden = clerk_api.get(f"{URL}{member_b.pk}/")
    missing = clerk_api.get(f"{URL}999999/")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json() == {"code": "not_found", "detail": hidden.json()["detail"]}
    assert clerk_api.get(URL, {"phone": member_b.phone}).json()["results"] == []


def test_clerk_cannot_change_or_tag_another_stores_member(clerk_api, member_b):
    TagFactory(code="vip")
    assert clerk_api.patch(f"{URL}{member_b.pk}/", {"name": "x"}, format="json").status_code == 404
    assert clerk_api.post(f"{URL}{member_b.pk}/tags/", {"tag": "vip"}, format="json").status_code == 404
    assert member_b.member_tags.count() == 0


def test_clerk_cannot_register_into_or_move_a_member_to_another_store(clerk_api, member_a, store_b):
    response = clerk_api.post(URL, {"phone": "13700137000", "store": "B001"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    moved = clerk_api.patch(f"{URL}{member_a.pk}/", {"store": "B001"}, format="json")
    assert moved.status_code == 403
    member_a.refresh_from_db()
    assert member_a.home_store.code == "A001"
    assert Member.objects.count() == 1


def test_api_key_bound_to_store_a_cannot_register_into_store_b(pos_a, store_b):
    response = pos_a.post(URL, {"phone": "13800138000", "store": "B001"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Member.objects.count() == 0
    ok = pos_a.post(URL, {"phone": "13800138000", "store": "A001"}, format="json")
    assert ok.status_code == 201
    assert ok.json()["store"] == "A001"


def test_api_key_bound_to_store_a_sees_only_store_a(pos_a, member_a, member_b):
    assert [row["id"] for row in pos_a.get(URL).json()["results"]] == [str(member_a.pk)]
    assert pos_a.get(f"{URL}{member_b.pk}/").status_code == 404


def test_unbound_client_app_sees_every_store(app_client, member_a, member_b):
    assert len(app_client.get(URL).json()["results"]) == 2


def test_member_token_reaches_only_me(member_a, member_b):
    api = member_client(member_a)
    me = api.get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["id"] == str(member_a.pk)
    for path in (URL, f"{URL}{member_a.pk}/", f"{URL}{member_b.pk}/", "/api/v1/messages/", "/api/v1/tags/"):
        response = api.get(path)
        assert response.status_code == 403, path
        assert response.json()["code"] == "permission_denied"
    assert api.patch(f"{URL}{member_b.pk}/", {"name": "hacked"}, format="json").status_code == 403
    member_b.refresh_from_db()
    assert member_b.name != "hacked"


def test_staff_and_client_apps_have_no_me(admin_api, pos_a):
    assert admin_api.get("/api/v1/me/").status_code == 403
    assert pos_a.get("/api/v1/me/").status_code == 403


def test_staff_without_a_role_is_refused(db, member_a):
    api = staff_client(StaffUserFactory(username="nobody"))
    response = api.get(URL)
    assert response.status_code == 403


def test_only_marketers_and_admins_write_tags(clerk_api, marketer_api, admin_api):
    denied = clerk_api.post("/api/v1/tags/", {"code": "vip", "name": "VIP"}, format="json")
    assert denied.status_code == 403
    created = marketer_api.post("/api/v1/tags/", {"code": "vip", "name": "VIP"}, format="json")
    assert created.status_code == 201
    assert created.json()["kind"] == "manual"
    assert clerk_api.get("/api/v1/tags/").json()["results"][0]["code"] == "vip"
    assert admin_api.delete("/api/v1/tags/vip/").status_code == 204


def test_only_admins_freeze_members(clerk_api, admin_api, member_a):
    assert clerk_api.post(f"{URL}{member_a.pk}/freeze/", {"reason": "fraud"}, format="json").status_code == 403
    response = admin_api.post(f"{URL}{member_a.pk}/freeze/", {"reason": "fraud"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "frozen"
    assert admin_api.post(f"{URL}{member_a.pk}/unfreeze/", {"reason": "ok"}, format="json").json()["status"] == "active"


def test_message_log_is_staff_only_and_store_scoped(clerk_api, admin_api, pos_a, member_a, member_b):
    from loyalty.messaging import send_message

    send_message(channel="sms", kind="notice", recipient=member_a.phone, member=member_a, body="hello a")
    send_message(channel="sms", kind="notice", recipient=member_b.phone, member=member_b, body="hello b")
    assert [m["body"] for m in clerk_api.get("/api/v1/messages/").json()["results"]] == ["hello a"]
    assert len(admin_api.get("/api/v1/messages/").json()["results"]) == 2
    by_member = admin_api.get("/api/v1/messages/", {"recipient": str(member_b.pk)}).json()["results"]
    assert [m["body"] for m in by_member] == ["hello b"]
    assert pos_a.get("/api/v1/messages/").status_code == 403


def test_ids_too_long_for_the_database_are_404_not_500(admin_api, db):
    response = admin_api.get(f"{URL}99999999999999999999999/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_members_of_a_store_are_visible_to_a_clerk_of_two_stores(store_a, store_b, member_a, member_b):
    api = staff_client(StaffUserFactory(username="both", role="clerk", stores=[store_a, store_b]))
    assert len(api.get(URL).json()["results"]) == 2
    response = api.post(URL, {"phone": "13700137000"}, format="json")
    assert response.status_code == 400  # which of her two stores? she must say
