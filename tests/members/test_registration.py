"""Registering and updating members through the API: validation, normalisation, duplicates."""

import threading

import pytest
from django.db import connection

from loyalty.models import AuditEntry
from members.models import Member
from members.services.membership import anonymise_member, is_valid_member_no
from tests.factories import MemberFactory, TagFactory

URL = "/api/v1/members/"


def register(api, **body):
    return api.post(URL, body, format="json")


def test_register_returns_the_member_representation(admin_api, store_a):
    response = register(
        admin_api,
        phone="13800138000",
        name="王芳",
        gender="female",
        birthday="1990-05-17",
        email="fang@example.com",
        store="A001",
        channel="mini_program",
        consents={"sms": True, "wechat": False, "email": True},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    member = Member.objects.get()
    assert body["id"] == str(member.pk)
    assert body["phone"] == "+8613800138000"
    assert body["name"] == "王芳"
    assert body["gender"] == "female"
    assert body["birthday"] == "1990-05-17"
    assert body["store"] == "A001"
    assert body["channel"] == "mini_program"
    assert body["status"] == "active"
    assert body["consents"] == {"sms": True, "wechat": False, "email": True}
    assert body["tier"] == {"code": "regular", "name": "普通会员"}
    assert body["points"] == {"available": 0, "pending": 0}
    assert body["growth_value"] == 0
    assert body["tags"] == []
    assert body["rfm"] is None
    assert is_valid_member_no(body["member_no"])
    assert len(body["referral_code"]) == 8
    assert AuditEntry.objects.filter(action="member.registered", target_id=str(member.pk)).count() == 1


@pytest.mark.parametrize("spelling", ["138 0013 8000", "+86 13800138000", "+86-138-0013-8000", "8613800138000"])
def test_phone_spellings_are_the_same_member(admin_api, store_a, spelling):
    first = register(admin_api, phone="13800138000", store="A001")
    assert first.status_code == 201
    again = register(admin_api, phone=spelling, store="A001")
    assert again.status_code == 409
    assert again.json()["code"] == "member_exists"
    assert again.json()["id"] == first.json()["id"]
    assert Member.objects.count() == 1


def test_duplicate_external_id_is_409_with_the_existing_id(admin_api, store_a):
    first = register(admin_api, external_id="ERP-1", store="A001")
    again = register(admin_api, external_id="ERP-1", phone="13900139000", store="A001")
    assert again.status_code == 409
    assert again.json() == {
        "code": "member_exists",
        "detail": again.json()["detail"],
        "id": first.json()["id"],
        "member_no": first.json()["member_no"],
    }
    assert Member.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone": "12345"}, "phone"),
        ({"phone": "not a phone"}, "phone"),
        ({"phone": "1380013800099999"}, "phone"),
        ({"phone": "13800138000", "birthday": "1990-02-30"}, "birthday"),
        ({"phone": "13800138000", "birthday": "17/05/1990"}, "birthday"),
        ({"phone": "13800138000", "birthday": "2999-01-01"}, "birthday"),
        ({"phone": "13800138000", "gender": "robot"}, "gender"),
        ({"phone": "13800138000", "email": "nope"}, "email"),
        ({"phone": "13800138000", "store": "NOPE"}, "store"),
        ({"phone": "13800138000", "channel": "import"}, "channel"),
        ({"phone": "13800138000", "consents": {"sms": "yes"}}, "consents.sms"),
        ({"phone": "13800138000", "referral_code": "ZZZZZZZZ"}, "referral_code"),
        ({"name": "no identity"}, "phone"),
        ({"phone": 13800138000.5}, "phone"),
    ],
)
def test_invalid_registration_is_400_naming_the_field_and_writes_nothing(admin_api, store_a, body, field):
    response = register(admin_api, **body)
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert Member.objects.count() == 0
    assert AuditEntry.objects.count() == 0


def test_referral_code_links_the_referrer(admin_api, store_a):
    referrer = MemberFactory(home_store=store_a)
    response = register(admin_api, phone="13800138000", store="A001", referral_code=referrer.referral_code.lower())
    assert response.status_code == 201
    assert response.json()["referrer"] == str(referrer.pk)


def test_clerk_registers_into_her_only_store_by_default(clerk_api, store_a):
    response = register(clerk_api, phone="13800138000")
    assert response.status_code == 201
    assert response.json()["store"] == "A001"


def test_patch_updates_profile_and_consents_with_an_audit_row(admin_api, member_a):
    response = admin_api.patch(
        f"{URL}{member_a.pk}/",
        {"name": "新名字", "consents": {"wechat": True}, "phone": "139 0013 9001"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    member_a.refresh_from_db()
    assert member_a.name == "新名字"
    assert member_a.phone == "+8613900139001"
    assert member_a.consent_wechat is True
    entry = AuditEntry.objects.get(action="member.updated")
    assert entry.new_values["phone"] == "+8613900139001"
    assert entry.old_values["phone"] == "+8613800138000"


def test_patch_to_a_taken_phone_is_409_and_changes_nothing(admin_api, member_a, member_b):
    response = admin_api.patch(f"{URL}{member_a.pk}/", {"phone": member_b.phone, "name": "x"}, format="json")
    assert response.status_code == 409
    assert response.json()["id"] == str(member_b.pk)
    member_a.refresh_from_db()
    assert member_a.phone == "+8613800138000"
    assert member_a.name != "x"


def test_an_anonymised_members_erased_data_cannot_be_written_back(admin_api, member_a):
    anonymise_member(actor="staff:boss", member=member_a, reason="her request", role="admin")
    response = admin_api.patch(f"{URL}{member_a.pk}/", {"phone": "139 0013 9001", "name": "王芳"}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "member_anonymised")
    member_a.refresh_from_db()
    assert (member_a.phone, member_a.name, member_a.status) == (None, "", "anonymised")
    assert not AuditEntry.objects.filter(action="member.updated").exists()


def test_put_and_delete_are_not_offered(admin_api, member_a):
    assert admin_api.put(f"{URL}{member_a.pk}/", {}, format="json").status_code == 405
    response = admin_api.delete(f"{URL}{member_a.pk}/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_tags_add_and_remove_idempotently(admin_api, member_a):
    TagFactory(code="vip")
    added = admin_api.post(f"{URL}{member_a.pk}/tags/", {"tag": "vip"}, format="json")
    assert added.status_code == 201
    assert added.json()["tags"] == ["vip"]
    again = admin_api.post(f"{URL}{member_a.pk}/tags/", {"tag": "vip"}, format="json")
    assert again.status_code == 200
    assert member_a.member_tags.count() == 1
    assert admin_api.delete(f"{URL}{member_a.pk}/tags/vip/").status_code == 204
    assert admin_api.delete(f"{URL}{member_a.pk}/tags/vip/").status_code == 204
    assert member_a.member_tags.count() == 0
    assert admin_api.delete(f"{URL}{member_a.pk}/tags/unknown/").status_code == 404
    assert admin_api.post(f"{URL}{member_a.pk}/tags/", {"tag": "unknown"}, format="json").status_code == 400
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["member.tag_added", "member.tag_removed"]


def test_rule_tags_cannot_be_added_by_hand(admin_api, member_a):
    TagFactory(code="rfm-vip", kind="rule")
    response = admin_api.post(f"{URL}{member_a.pk}/tags/", {"tag": "rfm-vip"}, format="json")
    assert response.status_code == 400
    assert "tag" in response.json()["errors"]


def test_list_filters(admin_api, store_a, store_b):
    vip = TagFactory(code="vip")
    alice = MemberFactory(home_store=store_a, phone="+8613800138000", name="Alice Wang", external_id="E-1")
    bob = MemberFactory(home_store=store_b, phone="+8613900139000", name="Bob Li")
    alice.member_tags.create(tag=vip)

    def ids(**params):
        response = admin_api.get(URL, params)
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids(phone="138 0013 8000") == [str(alice.pk)]
    assert ids(external_id="E-1") == [str(alice.pk)]
    assert ids(member_no=bob.member_no) == [str(bob.pk)]
    assert ids(store="B001") == [str(bob.pk)]
    assert ids(tag="vip") == [str(alice.pk)]
    assert ids(q="alice") == [str(alice.pk)]
    assert ids(q="13900139000") == [str(bob.pk)]
    assert ids(tier="gold") == []
    assert ids() == [str(bob.pk), str(alice.pk)]
    bad = admin_api.get(URL, {"phone": "abc"})
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"phone": ["Enter a valid phone number."]}
    assert admin_api.get(URL, {"joined_after": "yesterday"}).status_code == 400


def test_cursor_pagination_walks_every_member_once(admin_api, store_a):
    MemberFactory.create_batch(7, home_store=store_a)
    seen, url = [], URL + "?page_size=3"
    while url:
        page = admin_api.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == 7 == len(set(seen))
    assert admin_api.get(URL, {"page_size": 501}).status_code == 400
    assert admin_api.get(URL, {"cursor": "garbage"}).json()["code"] == "invalid"


def test_member_list_queries_do_not_grow_with_the_page(admin_api, store_a, django_assert_max_num_queries):
    for member in MemberFactory.create_batch(30, home_store=store_a):
        member.member_tags.create(tag=TagFactory(code=f"t{member.pk}"))
    with django_assert_max_num_queries(6):
        response = admin_api.get(URL, {"page_size": 30})
    assert len(response.json()["results"]) == 30


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_of_one_phone_make_one_member(store_a):
    from members.services import MemberExists, register_member

    outcomes, barrier = [], threading.Barrier(8)

    def attempt():
        barrier.wait()
        try:
            member = register_member(actor="test", phone="+8613800138000", store=store_a)
            outcomes.append(("created", member.pk))
        except MemberExists as error:
            outcomes.append(("exists", error.extra["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    member = Member.objects.get()
    assert sorted(kind for kind, _ in outcomes) == ["created"] + ["exists"] * 7
    assert {str(pk) for _, pk in outcomes} == {str(member.pk)}


def test_anonymise_erases_personal_data_and_keeps_the_books(admin_api, clerk_api, member_a):
    from loyalty.messaging import send_message
    from tests.conftest import member_client
    from tests.points.helpers import purchase

    purchase(member_a, "100.00")
    send_message(channel="sms", kind="notice", recipient=member_a.phone, member=member_a, body="hello")
    token_client = member_client(member_a)
    assert clerk_api.post(f"{URL}{member_a.pk}/anonymise/", {"reason": "x"}, format="json").status_code == 403
    response = admin_api.post(f"{URL}{member_a.pk}/anonymise/", {"reason": "her request"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["phone"], body["name"], body["birthday"], body["email"]) == (
        "anonymised",
        None,
        "",
        None,
        "",
    )
    assert body["member_no"] == member_a.member_no
    assert body["points"] == {"available": 0, "pending": 100}
    from loyalty.models import Message

    assert list(Message.objects.values_list("recipient", "body")) == [("anonymised", "")]
    assert token_client.get("/api/v1/me/").status_code == 401
    again = admin_api.post(f"{URL}{member_a.pk}/anonymise/", {"reason": "twice"}, format="json")
    assert again.status_code == 200
    assert AuditEntry.objects.filter(action="member.anonymised").count() == 1
    assert (
        admin_api.post(f"{URL}{member_a.pk}/freeze/", {"reason": "x"}, format="json").json()["code"]
        == "member_anonymised"
    )
