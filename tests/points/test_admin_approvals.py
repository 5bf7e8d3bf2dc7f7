"""The admin for adjustment approvals and households: asking for approval from the adjust form, deciding on the
member page and from the list of requests, linking a household and transferring points within it — each through
the same services as the API."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from loyalty.models import AuditEntry
from members.models import Member
from members.services import link_household
from points import services
from points.models import AdjustmentRequest, LedgerEntry, PointsAccount, PointsPolicy, PointsTransfer
from tests.factories import MemberFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

REQUESTS = "/admin/points/adjustmentrequest/"


def action_url(member, action):
    return f"/admin/members/member/{member.pk}/{action}/"


def decide_url(member, request_id):
    return f"/admin/members/member/{member.pk}/adjustment-requests/{request_id}/"


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def form_key(client, url):
    response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return str(response.context["form"]["key"].value())


def available(member):
    account = PointsAccount.objects.filter(member=member).first()
    return account.available if account else 0


def give_points(member, points):
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


def ask(requester, member, points):
    return services.request_adjustment(
        requester=requester,
        scope="test",
        key=str(uuid.uuid4()),
        fingerprint="x",
        member_id=member.pk,
        points=points,
        reason="lost receipt",
    ).result


def login(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def clerk_a2(store_a):
    return StaffUserFactory(username="clerk-a2", role="clerk", stores=[store_a])


# --- Asking from the adjust form ----------------------------------------------------------------------------------


def test_a_clerk_asks_for_approval_of_an_adjustment_over_her_limit(client, clerk_a, member_a):
    login(client, clerk_a)
    url = action_url(member_a, "adjust")
    data = {"points": "800", "reason": "lost receipt", "request_approval": "on", "key": form_key(client, url)}

    response = client.post(url, data)
    again = client.post(url, data)

    assert (response.status_code, again.status_code) == (302, 302)
    request = AdjustmentRequest.objects.get()
    assert (request.points, request.status, request.requested_by, request.member) == (800, "pending", clerk_a, member_a)
    assert messages_of(response) == [
        f"Sent for approval: request {request.pk}, +800 points. Nothing changes until a manager approves it."
    ]
    assert (available(member_a), LedgerEntry.objects.count()) == (0, 0)
    assert AuditEntry.objects.filter(action="points.adjustment_requested").count() == 1


def test_after_adjustment_limit_the_same_form_may_be_sent_for_approval(client, clerk_a, member_a):
    login(client, clerk_a)
    url = action_url(member_a, "adjust")
    data = {"points": "800", "reason": "lost receipt", "key": form_key(client, url)}

    refused = client.post(url, data)
    asked = client.post(url, {**data, "request_approval": "on"})

    assert refused.status_code == 200
    assert "adjustment_limit" in refused.content.decode()
    assert asked.status_code == 302
    assert AdjustmentRequest.objects.get().points == 800
    assert available(member_a) == 0


# --- Deciding on the member page ----------------------------------------------------------------------------------


def test_the_member_page_lists_pending_requests_and_another_clerk_approves_one(client, clerk_a, clerk_a2, member_a):
    give_points(member_a, 100)
    request_id = ask(clerk_a, member_a, 400)["id"]
    login(client, clerk_a2)

    page = client.get(f"/admin/members/member/{member_a.pk}/change/")
    assert decide_url(member_a, request_id).encode() in page.content
    response = client.post(decide_url(member_a, request_id), {"decision": "approve", "note": "checked"})

    assert response.status_code == 302
    assert messages_of(response) == ["Approved: +400 points; balance 500."]
    assert available(member_a) == 500
    request = AdjustmentRequest.objects.get()
    assert (request.status, request.decided_by, request.decision_note) == ("approved", clerk_a2, "checked")
    assert LedgerEntry.objects.get(pk=request.entry_id).actor == "staff:clerk-a2"
    page = client.get(f"/admin/members/member/{member_a.pk}/change/")
    assert decide_url(member_a, request_id).encode() not in page.content


def test_the_requester_cannot_approve_on_the_member_page_but_may_withdraw(client, clerk_a, member_a):
    request_id = ask(clerk_a, member_a, 400)["id"]
    login(client, clerk_a)

    refused = client.post(decide_url(member_a, request_id), {"decision": "approve", "note": ""})
    withdrawn = client.post(decide_url(member_a, request_id), {"decision": "reject", "note": "typo"})

    assert refused.status_code == 200
    assert "own_request" in refused.content.decode()
    assert withdrawn.status_code == 302
    assert messages_of(withdrawn) == ["Rejected: nothing changed."]
    assert (AdjustmentRequest.objects.get().status, available(member_a)) == ("rejected", 0)


def test_a_clerk_of_another_store_gets_404_on_the_decision_page(client, clerk_a, member_a, store_b):
    request_id = ask(clerk_a, member_a, 400)["id"]
    login(client, StaffUserFactory(username="clerk-b", role="clerk", stores=[store_b]))

    assert client.get(decide_url(member_a, request_id)).status_code == 404
    assert client.post(decide_url(member_a, request_id), {"decision": "approve"}).status_code == 404
    assert AdjustmentRequest.objects.get().status == "pending"


# --- The list of requests -----------------------------------------------------------------------------------------


def test_a_manager_approves_and_rejects_from_the_list(client, admin_user, clerk_a, member_a, member_b):
    give_points(member_a, 100)
    first = ask(clerk_a, member_a, 700)["id"]
    second = ask(clerk_a, member_b, 900)["id"]
    own = ask(admin_user, member_a, 50)["id"]
    login(client, admin_user)

    listing = client.get(f"{REQUESTS}?status__exact=pending")
    listed = [row.pk for row in listing.context["cl"].result_list]
    approved = client.post(REQUESTS, {"action": "approve_requests", "_selected_action": [first, own]})
    rejected = client.post(REQUESTS, {"action": "reject_requests", "_selected_action": [second]})

    assert listing.status_code == 200
    assert listed == [int(own), int(second), int(first)]
    assert messages_of(approved)[:2] == [
        "Approved 1 request(s).",
        f"#{own}: own_request: Someone other than the requester must approve it (four eyes).",
    ]
    assert "Rejected 1 request(s)." in messages_of(rejected)
    statuses = dict(AdjustmentRequest.objects.values_list("pk", "status"))
    assert statuses == {int(first): "approved", int(second): "rejected", int(own): "pending"}
    assert (available(member_a), available(member_b)) == (800, 0)


def test_a_clerk_sees_only_her_stores_requests_in_the_list(client, clerk_a, clerk_a2, member_a, member_b, store_b):
    mine = ask(clerk_a, member_a, 700)["id"]
    ask(StaffUserFactory(username="clerk-b", role="clerk", stores=[store_b]), member_b, 900)
    login(client, clerk_a2)

    listing = client.get(REQUESTS)

    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list.values_list("pk", flat=True)) == [int(mine)]


# --- Households and transfers -------------------------------------------------------------------------------------


def test_a_clerk_links_two_members_by_card_number_and_takes_one_out(client, clerk_a, member_a, store_b):
    partner = MemberFactory(home_store=store_b)  # any member of the chain, found by exact card number
    login(client, clerk_a)

    linked = client.post(action_url(member_a, "household"), {"link_with": partner.member_no})
    page = client.get(f"/admin/members/member/{member_a.pk}/change/")
    left = client.post(action_url(member_a, "household"), {"leave": "on"})

    assert linked.status_code == 302, linked.content[:500]
    assert partner.member_no in page.content.decode()
    assert action_url(member_a, "transfer").encode() in page.content
    assert left.status_code == 302
    assert Member.objects.get(pk=member_a.pk).household_id is None
    assert Member.objects.get(pk=partner.pk).household_id is not None
    assert [a.action for a in AuditEntry.objects.filter(action__startswith="member.household").order_by("id")] == [
        "member.household_joined",
        "member.household_joined",
        "member.household_left",
    ]


def test_the_household_form_needs_exactly_one_known_member_or_leave(client, clerk_a, member_a):
    login(client, clerk_a)
    nothing = client.post(action_url(member_a, "household"), {})
    unknown = client.post(action_url(member_a, "household"), {"link_with": "000000000000"})
    assert (nothing.status_code, unknown.status_code) == (200, 200)
    assert nothing.context["form"].non_field_errors()
    assert "link_with" in unknown.context["form"].errors
    assert Member.objects.filter(household__isnull=False).count() == 0


def test_a_clerk_transfers_points_within_the_household(client, clerk_a, member_a, store_a):
    daughter = MemberFactory(home_store=store_a)
    link_household(actor="x", member=member_a, other=daughter)
    PointsPolicy.objects.create(valid_from=timezone.now() - timedelta(days=1), transfers_enabled=True)
    give_points(member_a, 500)
    login(client, clerk_a)
    url = action_url(member_a, "transfer")
    data = {"to": str(daughter.pk), "points": "200", "reason": "birthday", "key": form_key(client, url)}

    response = client.post(url, data)
    again = client.post(url, data)

    assert (response.status_code, again.status_code) == (302, 302)
    assert messages_of(response) == [f"Transferred 200 points to {daughter}; balance 300."]
    assert PointsTransfer.objects.count() == 1
    assert (available(member_a), available(daughter)) == (300, 200)


def test_transfers_switched_off_are_refused_on_the_form(client, clerk_a, member_a, store_a):
    daughter = MemberFactory(home_store=store_a)
    link_household(actor="x", member=member_a, other=daughter)
    give_points(member_a, 500)
    login(client, clerk_a)
    url = action_url(member_a, "transfer")

    response = client.post(url, {"to": str(daughter.pk), "points": "200", "key": form_key(client, url)})

    assert response.status_code == 200
    assert "transfer_disabled" in response.content.decode()
    assert (available(member_a), available(daughter)) == (500, 0)


def test_a_new_policy_starts_from_the_current_transfer_settings(client, admin_user):
    PointsPolicy.objects.create(
        valid_from=timezone.now() - timedelta(days=1), transfers_enabled=True, transfer_daily_limit=300
    )
    login(client, admin_user)
    form = client.get("/admin/points/pointspolicy/add/").context["adminform"].form
    assert (form.initial["transfers_enabled"], form.initial["transfer_daily_limit"]) == (True, 300)
