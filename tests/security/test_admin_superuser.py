"""Low finding: the admin role could make itself superuser. Staff accounts are in the loyalty apps, so the admin
role may change them, and the staff user form had the superuser flag, the roles (groups) and the permissions on
it. Now only a superuser edits those: an admin who is no superuser sees them read-only, a forged post of them is
ignored (on her own account as on others'), and she changes only accounts whose powers are within her own (never a
superuser's, nor its password). Staff users are not editable through the API (no endpoint), so the admin is the
attacker's way in."""

import pytest
from django.contrib.auth.models import Group, Permission

from loyalty.access import ROLE_ADMIN, ROLE_CLERK, ROLE_MANAGER
from loyalty.models import AuditEntry
from members.models import StaffUser
from tests.conftest import PASSWORD
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


def change_url(user):
    return f"/admin/members/staffuser/{user.pk}/change/"


def password_url(user):
    return f"/admin/members/staffuser/{user.pk}/password/"


def permission_ids(*codes):
    """Permission ids by "app_label.codename"."""
    ids = []
    for code in codes:
        app_label, codename = code.split(".")
        ids.append(str(Permission.objects.get(content_type__app_label=app_label, codename=codename).pk))
    return ids


def form_data(user, **changes):
    """The change form as the browser posts it for `user`, with `changes` on top (the attacker's extra fields)."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "last_login_0": "",
        "last_login_1": "",
        "stores": [str(pk) for pk in user.stores.values_list("pk", flat=True)],
        "groups": [str(pk) for pk in user.groups.values_list("pk", flat=True)],
    }
    if user.is_active:
        data["is_active"] = "on"
    if user.is_staff:
        data["is_staff"] = "on"
    data.update(changes)
    return data


ELEVATION = {
    "is_superuser": "on",
    "user_permissions": lambda: permission_ids("auth.change_group", "auth.add_permission", "members.change_staffuser"),
}


def elevation():
    return {name: value() if callable(value) else value for name, value in ELEVATION.items()}


def powers(user):
    user = StaffUser.objects.get(pk=user.pk)
    return (
        user.is_superuser,
        sorted(user.groups.values_list("name", flat=True)),
        sorted(user.user_permissions.values_list("codename", flat=True)),
    )


@pytest.fixture
def boss(db):
    """The attacker: an admin (the role), not a superuser."""
    return StaffUserFactory(username="boss", role=ROLE_ADMIN)


@pytest.fixture
def boss_site(client, boss):
    client.force_login(boss)
    return client


@pytest.fixture
def root(db):
    return StaffUserFactory(username="root", is_superuser=True)


@pytest.fixture
def root_site(client, root):
    client.force_login(root)
    return client


# --- the admin role cannot raise herself or others ---------------------------------------------------------------


def test_admin_role_posting_is_superuser_on_her_own_account_leaves_it_off(boss_site, boss):
    audits = AuditEntry.objects.count()

    response = boss_site.post(change_url(boss), form_data(boss, first_name="Boss", **elevation()))

    assert response.status_code == 302  # the form was accepted: the name changed, the powers did not
    assert StaffUser.objects.get(pk=boss.pk).first_name == "Boss"
    assert powers(boss) == (False, [ROLE_ADMIN], [])
    assert AuditEntry.objects.count() == audits
    assert not StaffUser.objects.get(pk=boss.pk).has_perm("auth.change_group")


def test_admin_role_cannot_give_a_clerk_powers(boss_site, store_a):
    clerk = StaffUserFactory(username="clerk-a", role=ROLE_CLERK, stores=[store_a])
    audits = AuditEntry.objects.count()

    response = boss_site.post(change_url(clerk), form_data(clerk, last_name="Li", **elevation()))

    assert response.status_code == 302
    assert StaffUser.objects.get(pk=clerk.pk).last_name == "Li"
    assert powers(clerk) == (False, [ROLE_CLERK], [])
    assert AuditEntry.objects.count() == audits


def test_admin_role_sees_the_superuser_flag_and_permissions_read_only_and_only_her_roles(boss_site, boss):
    powerful = Group.objects.create(name="root powers")
    powerful.permissions.add(Permission.objects.get(content_type__app_label="auth", codename="change_group"))

    response = boss_site.get(change_url(boss))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert {"is_superuser", "user_permissions"} & set(form.fields) == set()
    assert {"username", "is_active", "is_staff", "stores", "groups"} <= set(form.fields)
    assert {"is_superuser", "user_permissions"} <= set(response.context["adminform"].readonly_fields)
    offered = sorted(group.name for group in form.fields["groups"].queryset)
    assert offered == [ROLE_ADMIN, ROLE_CLERK, ROLE_MANAGER, "marketer"]


def test_admin_role_cannot_give_a_role_with_powers_beyond_hers(boss_site, store_a):
    powerful = Group.objects.create(name="root powers")
    powerful.permissions.add(Permission.objects.get(content_type__app_label="auth", codename="change_group"))
    clerk = StaffUserFactory(username="clerk-a", role=ROLE_CLERK, stores=[store_a])
    audits = AuditEntry.objects.count()

    response = boss_site.post(change_url(clerk), form_data(clerk, groups=[str(powerful.pk)]))

    assert response.status_code == 200  # the form again, with the error on the field
    assert "groups" in response.context["adminform"].form.errors
    assert powers(clerk) == (False, [ROLE_CLERK], [])
    assert AuditEntry.objects.count() == audits


def test_admin_role_gives_a_clerk_the_marketer_role_and_it_is_audited(boss_site, store_a):
    clerk = StaffUserFactory(username="clerk-a", role=ROLE_CLERK, stores=[store_a])
    marketer = Group.objects.get_or_create(name="marketer")[0]
    clerk_group = Group.objects.get(name=ROLE_CLERK)

    response = boss_site.post(change_url(clerk), form_data(clerk, groups=[str(clerk_group.pk), str(marketer.pk)]))

    assert response.status_code == 302
    assert powers(clerk) == (False, [ROLE_CLERK, "marketer"], [])
    entry = AuditEntry.objects.get(action="staff_access.changed")
    assert (entry.old_values, entry.new_values) == (
        {"groups": [ROLE_CLERK]},
        {"groups": [ROLE_CLERK, "marketer"]},
    )


def test_admin_role_cannot_change_a_superusers_account_or_password(boss_site, root):
    audits = AuditEntry.objects.count()
    page = boss_site.get(change_url(root))
    assert page.status_code == 200  # to view only
    assert page.context["has_change_permission"] is False

    change = boss_site.post(change_url(root), form_data(root, email="boss@example.com", is_active=""))
    password = boss_site.post(password_url(root), {"password1": "taken-over-42!", "password2": "taken-over-42!"})
    delete = boss_site.post(f"/admin/members/staffuser/{root.pk}/delete/", {"post": "yes"})

    assert (change.status_code, password.status_code, delete.status_code) == (403, 403, 403)
    root = StaffUser.objects.get(pk=root.pk)
    assert (root.email, root.is_active, root.check_password(PASSWORD)) == ("", True, True)
    assert AuditEntry.objects.count() == audits


def test_admin_role_cannot_take_over_an_account_with_powers_beyond_hers(boss_site):
    # An inactive account holding a permission the admin role lacks: reactivating it, or setting its password,
    # would hand her that permission.
    keeper = StaffUserFactory(username="keeper", is_active=False)
    keeper.user_permissions.add(Permission.objects.get(content_type__app_label="auth", codename="change_group"))

    change = boss_site.post(change_url(keeper), form_data(keeper, is_active="on"))
    password = boss_site.post(password_url(keeper), {"password1": "taken-over-42!", "password2": "taken-over-42!"})

    assert (change.status_code, password.status_code) == (403, 403)
    keeper = StaffUser.objects.get(pk=keeper.pk)
    assert (keeper.is_active, keeper.check_password(PASSWORD)) == (False, True)


def test_admin_role_is_offered_no_bulk_delete_of_staff(boss_site, root):
    response = boss_site.get("/admin/members/staffuser/")

    actions = {name for name, _ in response.context["action_form"].fields["action"].choices if name}
    assert "delete_selected" not in actions
    boss_site.post("/admin/members/staffuser/", {"action": "delete_selected", "_selected_action": [str(root.pk)]})
    assert StaffUser.objects.filter(pk=root.pk).exists()


def test_admin_role_still_manages_accounts_within_her_powers(boss_site, store_a, store_b):
    clerk = StaffUserFactory(username="clerk-a", role=ROLE_CLERK, stores=[store_a])

    response = boss_site.post(change_url(clerk), form_data(clerk, is_active="", stores=[str(store_b.pk)]))

    assert response.status_code == 302
    clerk = StaffUser.objects.get(pk=clerk.pk)
    assert (clerk.is_active, list(clerk.stores.all())) == (False, [store_b])
    entry = AuditEntry.objects.get(action="staff_access.changed")
    assert (entry.actor, entry.target_type, entry.target_id) == ("staff:boss", "members.staffuser", str(clerk.pk))
    assert (entry.old_values, entry.new_values) == ({"is_active": True}, {"is_active": False})


# --- a superuser may ---------------------------------------------------------------------------------------------


def test_superuser_grants_powers_and_it_is_audited(root_site, boss):
    marketer_group = Group.objects.get_or_create(name="marketer")[0]
    data = form_data(
        boss,
        is_superuser="on",
        groups=[str(Group.objects.get(name=ROLE_ADMIN).pk), str(marketer_group.pk)],
        user_permissions=permission_ids("auth.change_group"),
    )

    response = root_site.post(change_url(boss), data)

    assert response.status_code == 302
    assert powers(boss) == (True, [ROLE_ADMIN, "marketer"], ["change_group"])
    entry = AuditEntry.objects.get(action="staff_access.changed")
    assert (entry.actor, entry.target_id) == ("staff:root", str(boss.pk))
    assert entry.old_values == {"is_superuser": False, "groups": [ROLE_ADMIN], "user_permissions": []}
    assert entry.new_values == {
        "is_superuser": True,
        "groups": [ROLE_ADMIN, "marketer"],
        "user_permissions": ["auth.change_group"],
    }


def test_superuser_sees_the_power_fields(root_site, boss):
    form = root_site.get(change_url(boss)).context["adminform"].form

    assert {"is_superuser", "groups", "user_permissions"} <= set(form.fields)
