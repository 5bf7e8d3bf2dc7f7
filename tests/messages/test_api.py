"""The member's inbox (GET /api/v1/me/messages/ with read and unread, POST .../{id}/read/), the staff message log
(GET /api/v1/messages/), and WeChat identities: bound through the API, found by openid or unionid, moved by a
merge, erased with the member."""

import pytest

from loyalty.messaging import notify
from loyalty.models import AuditEntry, Message
from members.models import WechatIdentity
from members.services import anonymise_member, merge_members
from tests.conftest import member_client
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db
TIER_DOWN = {"tier": "Silver", "previous_tier": "Gold"}


def tell(member, key):
    notify(member_id=member.pk, kind="tier_down", dedupe_key=key, variables=TIER_DOWN)


def test_the_inbox_lists_her_delivered_messages_newest_first_with_read_and_unread(noon, member_a, member_b):
    tell(member_a, "t1")
    tell(member_a, "t2")
    tell(member_b, "t3")
    notify(member_id=member_a.pk, kind="win_back", dedupe_key="w", variables={"lifecycle": "dormant"})
    Message.objects.create(member=member_a, channel="inbox", kind="tier_down", body="skipped", status="skipped")
    api = member_client(member_a)
    mine = Message.objects.filter(member=member_a, channel="inbox", status="sent").order_by("-id")
    ids = [str(pk) for pk in mine.values_list("id", flat=True)]

    listing = api.get("/api/v1/me/messages/")

    assert listing.status_code == 200
    assert [item["id"] for item in listing.json()["results"]] == ids
    assert listing.json()["results"][1] == {
        "id": ids[1],
        "kind": "tier_down",
        "subject": "",
        "body": f"{member_a.name}, your tier is now Silver (it was Gold). Every purchase brings you closer to "
        "moving up again.",
        "created_at": "2026-06-10T12:00:00+08:00",
        "read": False,
        "read_at": None,
    }
    marked = api.post(f"/api/v1/me/messages/{ids[1]}/read/")
    assert marked.status_code == 200
    assert (marked.json()["read"], marked.json()["read_at"]) == (True, "2026-06-10T12:00:00+08:00")
    assert api.post(f"/api/v1/me/messages/{ids[1]}/read/").json()["read_at"] == "2026-06-10T12:00:00+08:00"
    unread = api.get("/api/v1/me/messages/?read=false").json()["results"]
    assert [item["id"] for item in unread] == [ids[0], ids[2]]
    assert [item["id"] for item in api.get("/api/v1/me/messages/?read=true").json()["results"]] == [ids[1]]
    for word in ("perhaps", "1", "yes", ""):
        refused = api.get(f"/api/v1/me/messages/?read={word}")
        if word == "":  # an empty filter is no filter
            assert [item["id"] for item in refused.json()["results"]] == ids
            continue
        assert refused.status_code == 400, word
        assert refused.json()["code"] == "invalid"


def test_a_member_cannot_read_or_mark_anothers_messages(noon, member_a, member_b):
    tell(member_b, "t")
    hers = Message.objects.get(member=member_b, channel="inbox")
    sms = Message.objects.get(member=member_b, channel="sms")
    api = member_client(member_a)
    assert api.get("/api/v1/me/messages/").json()["results"] == []
    for message in (hers, sms):
        refused = api.post(f"/api/v1/me/messages/{message.pk}/read/")
        assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    assert Message.objects.get(pk=hers.pk).read_at is None
    assert member_client(member_b).post(f"/api/v1/me/messages/{sms.pk}/read/").status_code == 404  # not inbox
    assert member_client(member_b).post("/api/v1/me/messages/99999999999999999999/read/").status_code == 404


def test_the_staff_message_log_shows_status_reason_key_and_attempts(noon, admin_api, member_a):
    member_a.consent_sms = False
    member_a.save()
    notify(member_id=member_a.pk, kind="win_back", dedupe_key="rfm:2026-06-09", variables={"lifecycle": "dormant"})
    response = admin_api.get(f"/api/v1/messages/?recipient={member_a.pk}&kind=win_back&status=skipped")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert {key: row[key] for key in ("channel", "status", "status_reason", "dedupe_key", "attempts")} == {
        "channel": "sms",
        "status": "skipped",
        "status_reason": "no consent for sms",
        "dedupe_key": "rfm:2026-06-09",
        "attempts": 0,
    }


# --- WeChat identities ------------------------------------------------------------------------------------------


def test_a_client_app_binds_an_openid_and_finds_the_member_by_it(pos_a, member_a, member_b):
    url = f"/api/v1/members/{member_a.pk}/wechat-identities/"
    body = {"app_id": "wx-mini", "openid": "o-abc", "unionid": "u-1"}
    created = pos_a.post(url, body, format="json")
    assert created.status_code == 201, created.content
    assert {k: created.json()[k] for k in ("app_id", "openid", "unionid")} == body
    assert pos_a.post(url, body, format="json").status_code == 200  # bound already: no change
    assert AuditEntry.objects.filter(action="member.wechat_identity_added").count() == 1
    taken = pos_a.post(f"/api/v1/members/{member_b.pk}/wechat-identities/", body, format="json")
    assert (taken.status_code, taken.json()["code"]) == (404, "not_found")  # member_b is not at POS A's store
    assert [row["openid"] for row in pos_a.get(url).json()] == ["o-abc"]

    def found(query):
        return [row["id"] for row in pos_a.get(f"/api/v1/members/?{query}").json()["results"]]

    assert found("wechat_openid=o-abc&wechat_app_id=wx-mini") == [str(member_a.pk)]
    assert found("wechat_openid=o-abc&wechat_app_id=wx-other") == []
    assert found("wechat_openid=o-abc") == [str(member_a.pk)]
    assert found("unionid=u-1") == [str(member_a.pk)]
    assert found("unionid=u-2") == []


def test_an_openid_belongs_to_one_member(admin_api, member_a, member_b):
    body = {"app_id": "wx-mini", "openid": "o-abc"}
    assert admin_api.post(f"/api/v1/members/{member_a.pk}/wechat-identities/", body, format="json").status_code == 201
    taken = admin_api.post(f"/api/v1/members/{member_b.pk}/wechat-identities/", body, format="json")
    assert (taken.status_code, taken.json()["code"]) == (409, "wechat_identity_taken")
    invalid = admin_api.post(f"/api/v1/members/{member_b.pk}/wechat-identities/", {"app_id": "x"}, format="json")
    assert (invalid.status_code, list(invalid.json()["errors"])) == (400, ["openid"])
    assert WechatIdentity.objects.get().member_id == member_a.pk


def test_a_merge_moves_the_duplicates_openids_and_an_erasure_deletes_them(store_a):
    survivor = MemberFactory(home_store=store_a)
    duplicate = MemberFactory(home_store=store_a)
    WechatIdentity.objects.create(member=duplicate, app_id="wx-mini", openid="o-dup", unionid="u-dup")
    outcome = merge_members(actor="test", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason="same person")
    assert outcome.result["moved"]["wechat_identities"] == 1
    assert list(WechatIdentity.objects.values_list("member_id", "openid")) == [(survivor.pk, "o-dup")]
    anonymise_member(actor="test", member=survivor, reason="her request", role="admin")
    assert not WechatIdentity.objects.exists()


def test_the_member_page_in_the_admin_shows_her_wechat_identities(client, admin_user, member_a):
    WechatIdentity.objects.create(member=member_a, app_id="wx-mini", openid="o-abc", unionid="u-1")
    client.force_login(admin_user)
    page = client.get(f"/admin/members/member/{member_a.pk}/change/")
    assert page.status_code == 200
    assert "wx-mini: o-abc u-1" in page.content.decode()
