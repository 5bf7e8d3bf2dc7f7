"""Adjustments over a clerk's limit wait for a manager (SPEC §2): `request_approval` makes a pending request that
moves nothing; another manager whose own limit covers the points approves it once (the adjustment goes through
the ledger then) or rejects it; every step is audited. Exact balances, status and error codes."""

import threading
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from loyalty.errors import PermissionDeniedError
from loyalty.models import AuditEntry
from points import services
from points.models import AdjustmentRequest, IdempotencyRecord, LedgerEntry, PointsAccount, PointsPolicy
from tests.conftest import member_client, staff_client
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import adjust, assert_ledger_consistent

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
REQUESTS = "/api/v1/adjustment-requests/"
REQUEST_FIELDS = {
    "id",
    "member",
    "points",
    "reason",
    "status",
    "requested_by",
    "requested_at",
    "decided_by",
    "decided_at",
    "decision_note",
    "entry",
}


@pytest.fixture(autouse=True)
def fixed_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def adjustments_url(member):
    return f"/api/v1/members/{member.pk}/points/adjustments/"


def post(client, path, body=None, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(path, body or {}, format="json", **headers)


def assert_error(response, status, code):
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    return body


def available(member):
    account = PointsAccount.objects.filter(member=member).first()
    return account.available if account else 0


def ask(client, member, points, key="ask-1", reason="lost receipt"):
    response = post(
        client, adjustments_url(member), {"points": points, "reason": reason, "request_approval": True}, key=key
    )
    assert response.status_code == 202, response.content
    return response.json()


def audit_actions():
    return list(
        AuditEntry.objects.filter(action__startswith="points.adjustment_").order_by("id").values_list("action", "actor")
    )


@pytest.fixture
def clerk_a2(store_a):
    return StaffUserFactory(username="clerk-a2", role="clerk", stores=[store_a])


@pytest.fixture
def marketer(db):
    return StaffUserFactory(username="marketing", role="marketer")


# --- Asking ---------------------------------------------------------------------------------------------------


def test_over_the_limit_without_asking_is_still_403_adjustment_limit(clerk_api, member_a):
    body = assert_error(
        post(clerk_api, adjustments_url(member_a), {"points": 800, "reason": "x"}, key="k"), 403, "adjustment_limit"
    )
    assert body["limit"] == 500
    assert "request_approval" in body["detail"]
    assert (LedgerEntry.objects.count(), AdjustmentRequest.objects.count()) == (0, 0)


def test_asking_answers_202_with_a_pending_request_and_moves_nothing(clerk_api, member_a):
    adjust(member_a, 100)

    body = ask(clerk_api, member_a, 800)

    assert set(body) == REQUEST_FIELDS
    assert (body["member"], body["points"], body["reason"], body["status"], body["requested_by"]) == (
        str(member_a.pk),
        800,
        "lost receipt",
        "pending",
        "staff:clerk-a",
    )
    assert (body["decided_by"], body["decided_at"], body["entry"], body["decision_note"]) == (None, None, None, "")
    assert body["requested_at"] == "2026-03-10T12:00:00+08:00"
    assert available(member_a) == 100
    assert LedgerEntry.objects.count() == 1  # the seed only
    request = AdjustmentRequest.objects.get()
    assert (request.status, request.points, request.requested_by.username) == ("pending", 800, "clerk-a")
    assert audit_actions() == [("points.adjustment_requested", "staff:clerk-a")]
    assert AuditEntry.objects.get(action="points.adjustment_requested").new_values == {
        "request": request.pk,
        "points": 800,
        "reason": "lost receipt",
    }


def test_asking_again_with_the_same_key_replays_the_same_request(clerk_api, member_a):
    first = ask(clerk_api, member_a, 800)
    again = post(
        clerk_api,
        adjustments_url(member_a),
        {"points": 800, "reason": "lost receipt", "request_approval": True},
        key="ask-1",
    )
    assert again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first
    assert AdjustmentRequest.objects.count() == 1
    # The same key for a direct adjustment is another request: refused.
    assert_error(
        post(clerk_api, adjustments_url(member_a), {"points": 800, "reason": "lost receipt"}, key="ask-1"),
        409,
        "idempotency_conflict",
    )


@pytest.mark.parametrize("value", ["true", 1, None, "yes"])
def test_request_approval_must_be_a_json_boolean(clerk_api, member_a, value):
    response = post(
        clerk_api, adjustments_url(member_a), {"points": 800, "reason": "x", "request_approval": value}, key="k"
    )
    body = assert_error(response, 400, "invalid")
    assert "request_approval" in body["errors"]
    assert (AdjustmentRequest.objects.count(), IdempotencyRecord.objects.count()) == (0, 0)


def test_request_approval_false_is_a_direct_adjustment(clerk_api, member_a):
    response = post(
        clerk_api, adjustments_url(member_a), {"points": 300, "reason": "x", "request_approval": False}, key="k"
    )
    assert response.status_code == 201
    assert (available(member_a), AdjustmentRequest.objects.count()) == (300, 0)


def test_a_clerk_cannot_ask_for_another_stores_member(clerk_api, member_b):
    assert_error(
        post(clerk_api, adjustments_url(member_b), {"points": 800, "reason": "x", "request_approval": True}, key="k"),
        404,
        "not_found",
    )
    assert AdjustmentRequest.objects.count() == 0


# --- Approving ------------------------------------------------------------------------------------------------


def test_a_marketer_approves_and_the_points_arrive_once(clerk_api, marketer, member_a):
    adjust(member_a, 100)
    request_id = ask(clerk_api, member_a, 800)["id"]
    manager = staff_client(marketer)

    response = post(manager, f"{REQUESTS}{request_id}/approve/", {"note": "receipt checked"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["decided_by"], body["decided_at"], body["decision_note"]) == (
        "approved",
        "staff:marketing",
        "2026-03-10T12:00:00+08:00",
        "receipt checked",
    )
    entry = body["entry"]
    assert (entry["kind"], entry["points"], entry["balance_after"], entry["reason"], entry["reference"]) == (
        "adjust",
        800,
        900,
        "lost receipt",
        f"adjustment-request:{request_id}",
    )
    assert available(member_a) == 900
    ledger_entry = LedgerEntry.objects.get(pk=entry["id"])
    assert ledger_entry.actor == "staff:marketing"
    assert AdjustmentRequest.objects.get().entry == ledger_entry
    assert audit_actions() == [
        ("points.adjustment_requested", "staff:clerk-a"),
        ("points.adjustment_approved", "staff:marketing"),
    ]
    approved = AuditEntry.objects.get(action="points.adjustment_approved")
    assert (approved.target_id, approved.old_values, approved.new_values) == (
        str(member_a.pk),
        {"status": "pending"},
        {
            "request": int(request_id),
            "status": "approved",
            "points": 800,
            "requested_by": "staff:clerk-a",
            "entry": ledger_entry.pk,
            "note": "receipt checked",
        },
    )

    again = assert_error(post(manager, f"{REQUESTS}{request_id}/approve/"), 409, "already_decided")
    assert again["request_status"] == "approved"
    assert available(member_a) == 900
    assert LedgerEntry.objects.count() == 2
    assert AuditEntry.objects.filter(action="points.adjustment_approved").count() == 1


def test_an_approved_deduction_takes_the_points_and_one_the_balance_no_longer_covers_stays_pending(
    clerk_a, clerk_api, admin_api, member_a
):
    adjust(member_a, 1000)
    first = ask(clerk_api, member_a, -700, key="a1")["id"]
    second = ask(clerk_api, member_a, -600, key="a2")["id"]

    assert post(admin_api, f"{REQUESTS}{first}/approve/").status_code == 200
    assert available(member_a) == 300
    assert_error(post(admin_api, f"{REQUESTS}{second}/approve/"), 409, "insufficient_points")

    assert available(member_a) == 300
    assert AdjustmentRequest.objects.get(pk=second).status == "pending"
    assert AuditEntry.objects.filter(action="points.adjustment_approved").count() == 1


def test_approving_a_rejected_request_is_409_already_decided(clerk_api, admin_api, member_a):
    request_id = ask(clerk_api, member_a, 800)["id"]

    rejected = post(admin_api, f"{REQUESTS}{request_id}/reject/", {"note": "no receipt"})

    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["decided_by"], rejected.json()["entry"]) == (
        "rejected",
        "staff:boss",
        None,
    )
    body = assert_error(post(admin_api, f"{REQUESTS}{request_id}/approve/"), 409, "already_decided")
    assert body["request_status"] == "rejected"
    assert_error(post(admin_api, f"{REQUESTS}{request_id}/reject/"), 409, "already_decided")
    assert (available(member_a), LedgerEntry.objects.count()) == (0, 0)
    assert audit_actions() == [
        ("points.adjustment_requested", "staff:clerk-a"),
        ("points.adjustment_rejected", "staff:boss"),
    ]
    assert AuditEntry.objects.get(action="points.adjustment_rejected").new_values["note"] == "no receipt"


def test_nobody_approves_her_own_request_but_she_may_withdraw_it(admin_user, admin_api, member_a):
    request_id = ask(admin_api, member_a, 800)["id"]

    assert_error(post(admin_api, f"{REQUESTS}{request_id}/approve/"), 403, "own_request")
    assert available(member_a) == 0
    withdrawn = post(admin_api, f"{REQUESTS}{request_id}/reject/", {"note": "typo"})

    assert withdrawn.status_code == 200
    assert (withdrawn.json()["status"], withdrawn.json()["decided_by"]) == ("rejected", "staff:boss")
    assert available(member_a) == 0


def test_a_marketer_approves_only_within_the_marketer_limit(clerk_api, marketer, admin_api, member_a):
    PointsPolicy.objects.create(valid_from=datetime(2026, 1, 1, tzinfo=SHANGHAI), marketer_adjustment_limit=2000)
    request_id = ask(clerk_api, member_a, 2001)["id"]

    body = assert_error(post(staff_client(marketer), f"{REQUESTS}{request_id}/approve/"), 403, "approval_limit")
    assert body["limit"] == 2000
    assert_error(post(staff_client(marketer), f"{REQUESTS}{request_id}/reject/"), 403, "approval_limit")
    assert (available(member_a), AdjustmentRequest.objects.get().status) == (0, "pending")

    assert post(admin_api, f"{REQUESTS}{request_id}/approve/").status_code == 200  # admins: any amount
    assert available(member_a) == 2001


def test_a_clerk_approves_within_her_limit_for_her_own_stores_members_only(
    clerk_a, clerk_a2, member_a, member_b, store_b
):
    small = ask(staff_client(clerk_a), member_a, 300, key="small")["id"]
    big = ask(staff_client(clerk_a), member_a, 501, key="big")["id"]
    clerk_b = StaffUserFactory(username="clerk-b", role="clerk", stores=[store_b])
    other_store = services.request_adjustment(
        requester=clerk_b, scope="s", key="k", fingerprint="f", member_id=member_b.pk, points=100, reason="x"
    ).result["id"]
    colleague = staff_client(clerk_a2)

    assert_error(post(colleague, f"{REQUESTS}{big}/approve/"), 403, "approval_limit")
    assert_error(post(colleague, f"{REQUESTS}{other_store}/approve/"), 404, "not_found")
    with pytest.raises(PermissionDeniedError):  # the rule itself, not only what the API shows her
        services.approve_adjustment(approver=clerk_a2, request_id=int(other_store))
    response = post(colleague, f"{REQUESTS}{small}/approve/")

    assert response.status_code == 200
    assert (available(member_a), available(member_b)) == (300, 0)


def test_staff_without_a_role_cannot_approve(clerk_api, member_a):
    request_id = ask(clerk_api, member_a, 800)["id"]
    nobody = StaffUserFactory(username="no-role")
    with pytest.raises(PermissionDeniedError):
        services.approve_adjustment(approver=nobody, request_id=int(request_id))
    assert AdjustmentRequest.objects.get().status == "pending"


def test_an_unknown_request_is_404(admin_api):
    assert_error(post(admin_api, f"{REQUESTS}999999/approve/"), 404, "not_found")
    assert_error(post(admin_api, f"{REQUESTS}999999/reject/"), 404, "not_found")
    assert_error(admin_api.get(f"{REQUESTS}999999/"), 404, "not_found")


def test_a_note_longer_than_200_characters_is_400(clerk_api, admin_api, member_a):
    request_id = ask(clerk_api, member_a, 800)["id"]
    body = assert_error(post(admin_api, f"{REQUESTS}{request_id}/approve/", {"note": "x" * 201}), 400, "invalid")
    assert "note" in body["errors"]
    assert AdjustmentRequest.objects.get().status == "pending"


# --- Listing ----------------------------------------------------------------------------------------------------


def test_the_list_filters_by_status_and_a_clerk_sees_her_stores_members_only(
    clerk_a, clerk_api, admin_api, member_a, member_b, store_b
):
    mine = ask(clerk_api, member_a, 800, key="k1")["id"]
    decided = ask(clerk_api, member_a, 900, key="k2")["id"]
    post(admin_api, f"{REQUESTS}{decided}/reject/")
    clerk_b = StaffUserFactory(username="clerk-b", role="clerk", stores=[store_b])
    theirs = services.request_adjustment(
        requester=clerk_b, scope="s", key="k", fingerprint="f", member_id=member_b.pk, points=100, reason="x"
    ).result["id"]

    everything = admin_api.get(REQUESTS).json()
    pending = admin_api.get(f"{REQUESTS}?status=pending").json()
    for_clerk = clerk_api.get(f"{REQUESTS}?status=pending").json()

    assert [r["id"] for r in everything["results"]] == [theirs, decided, mine]
    assert all(set(r) == REQUEST_FIELDS for r in everything["results"])
    assert [r["id"] for r in pending["results"]] == [theirs, mine]
    assert [r["id"] for r in for_clerk["results"]] == [mine]
    assert [r["id"] for r in admin_api.get(f"{REQUESTS}?member={member_b.pk}").json()["results"]] == [theirs]
    assert clerk_api.get(f"{REQUESTS}{mine}/").json()["points"] == 800
    assert_error(clerk_api.get(f"{REQUESTS}{theirs}/"), 404, "not_found")
    assert_error(admin_api.get(f"{REQUESTS}?status=bogus"), 400, "invalid")


def test_client_apps_and_members_cannot_see_or_decide_requests(clerk_api, pos_a, member_a):
    request_id = ask(clerk_api, member_a, 800)["id"]
    for client in (pos_a, member_client(member_a)):
        assert_error(client.get(REQUESTS), 403, "permission_denied")
        assert_error(post(client, f"{REQUESTS}{request_id}/approve/"), 403, "permission_denied")
    assert (AdjustmentRequest.objects.get().status, available(member_a)) == ("pending", 0)


def test_the_schema_describes_asking_and_deciding(tmp_path, db):
    import yaml

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    paths = yaml.safe_load(target.read_text())["paths"]
    adjustments = paths["/api/v1/members/{id}/points/adjustments/"]["post"]["responses"]
    assert {"201", "202", "403", "409"} <= set(adjustments)
    assert (
        "request_approval" in adjustments["403"]["description"]
        or "request_approval" in paths["/api/v1/members/{id}/points/adjustments/"]["post"]["description"]
    )
    for path, method in [
        (REQUESTS, "get"),
        (f"{REQUESTS}{{id}}/", "get"),
        (f"{REQUESTS}{{id}}/approve/", "post"),
        (f"{REQUESTS}{{id}}/reject/", "post"),
    ]:
        assert method in paths[path], path
    assert {"200", "403", "404", "409"} <= set(paths[f"{REQUESTS}{{id}}/approve/"]["post"]["responses"])


# --- Concurrency (PostgreSQL) -------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_managers_approving_at_once_make_one_adjustment(store_a):
    member = MemberFactory(home_store=store_a)
    adjust(member, 100)
    clerk = StaffUserFactory(username="asker", role="clerk", stores=[store_a])
    request_id = services.request_adjustment(
        requester=clerk, scope="s", key="k", fingerprint="f", member_id=member.pk, points=800, reason="x"
    ).result["id"]
    managers = [staff_client(StaffUserFactory(username=f"manager-{i}", role="admin")) for i in range(10)]
    barrier, responses = threading.Barrier(len(managers)), [None] * len(managers)

    def approve(index):
        try:
            barrier.wait()
            responses[index] = post(managers[index], f"{REQUESTS}{request_id}/approve/")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(len(managers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    outcomes = Counter(r.status_code if r.status_code < 400 else r.json()["code"] for r in responses)
    assert outcomes == {200: 1, "already_decided": 9}
    assert PointsAccount.objects.get(member=member).available == 900
    assert LedgerEntry.objects.filter(member=member, kind="adjust").count() == 2
    assert AuditEntry.objects.filter(action="points.adjustment_approved").count() == 1
    assert AdjustmentRequest.objects.get().status == "approved"
    assert_ledger_consistent()
