"""Finding 4: freezing, unfreezing and anonymising a member are an admin's, in the admin as in the API. The admin
shows a clerk no freeze action and refuses one posted anyway; the service itself refuses a role that may not."""

import pytest

from loyalty.access import ROLE_ADMIN, ROLE_CLERK, ROLE_MARKETER, Access
from loyalty.errors import PermissionDeniedError
from loyalty.models import AuditEntry
from members import services
from members.models import Member, MemberStatus

CHANGELIST = "/admin/members/member/"


@pytest.fixture
def clerk_client(client, clerk_a):
    client.force_login(clerk_a)
    return client


def offered_actions(response):
    form = response.context["action_form"]  # None when no action is offered at all
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def test_admin_freeze_action_posted_by_a_clerk_changes_nothing(clerk_client, member_a):
    audits = AuditEntry.objects.count()

    response = clerk_client.post(CHANGELIST, {"action": "freeze_members", "_selected_action": [str(member_a.pk)]})

    assert response.status_code in (200, 302)
    assert Member.objects.get(pk=member_a.pk).status == MemberStatus.ACTIVE
    assert AuditEntry.objects.count() == audits


def test_admin_unfreeze_action_posted_by_a_clerk_changes_nothing(clerk_client, member_a):
    services.freeze_member(actor="staff:boss", member=member_a, reason="fraud check", role=ROLE_ADMIN)

    clerk_client.post(CHANGELIST, {"action": "unfreeze_members", "_selected_action": [str(member_a.pk)]})

    assert Member.objects.get(pk=member_a.pk).status == MemberStatus.FROZEN


def test_admin_offers_a_clerk_no_freeze_actions(clerk_client, member_a):
    response = clerk_client.get(CHANGELIST)

    assert response.status_code == 200
    assert offered_actions(response) & {"freeze_members", "unfreeze_members"} == set()


def test_admin_freeze_action_by_an_admin_still_freezes(client, admin_user, member_a):
    client.force_login(admin_user)
    assert {"freeze_members", "unfreeze_members"} <= offered_actions(client.get(CHANGELIST))

    client.post(CHANGELIST, {"action": "freeze_members", "_selected_action": [str(member_a.pk)]})

    assert Member.objects.get(pk=member_a.pk).status == MemberStatus.FROZEN


@pytest.mark.parametrize("role", [ROLE_CLERK, ROLE_MARKETER, None])
@pytest.mark.parametrize("service", ["freeze_member", "unfreeze_member", "anonymise_member"])
def test_the_service_refuses_a_role_that_may_not(member_a, role, service):
    audits = AuditEntry.objects.count()

    with pytest.raises(PermissionDeniedError) as refused:
        getattr(services, service)(actor="staff:clerk-a", member=member_a, reason="x", role=role)

    assert (refused.value.status, refused.value.code) == (403, "permission_denied")
    member = Member.objects.get(pk=member_a.pk)
    assert (member.status, member.phone) == (MemberStatus.ACTIVE, "+8613800138000")
    assert AuditEntry.objects.count() == audits


def test_the_service_takes_an_access_object(member_a, store_a):
    clerk = Access("staff", "staff:clerk-a", ROLE_CLERK, frozenset({store_a.pk}))
    with pytest.raises(PermissionDeniedError):
        services.freeze_member(actor=clerk.actor, member=member_a, reason="x", role=clerk)
    admin = Access("staff", "staff:boss", ROLE_ADMIN)
    assert services.freeze_member(actor=admin.actor, member=member_a, reason="x", role=admin).status == "frozen"
