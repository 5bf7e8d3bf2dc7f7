"""The staff roles as Django groups, with the model permissions each needs in the admin, and who may change a
staff account's powers.

Kept in step on every `migrate` (post_migrate), so a permission added by a later app lands in its group too.
A clerk works at the counter (members of her stores, tags on them, the message log, stored-value top-ups); a store
manager does what a clerk does and also pays stored value out (withdrawals, adjustments: stored_value.services
checks the role); a marketer also shapes tags, rules, rewards and campaigns; an admin may do everything in the
loyalty apps and the job schedule, staff accounts included, but not beyond her own powers: only a superuser grants
the superuser flag and single permissions; an admin gives an account only roles (groups) whose permissions she
holds herself (grantable_groups), and changes only accounts whose powers are within her own (see
may_manage_staff).
"""

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from loyalty.access import ROLE_ADMIN, ROLE_CLERK, ROLE_MANAGER, ROLE_MARKETER

LOYALTY_APPS = ("loyalty", "members", "points", "tiers", "stored_value", "campaigns", "reports")

# (app_label, codename) pairs; later apps extend these lists.
CLERK_PERMISSIONS = [
    ("members", "view_member"),
    ("members", "add_member"),
    ("members", "change_member"),
    ("members", "view_store"),
    ("members", "view_tag"),
    ("members", "view_membertag"),
    ("members", "add_membertag"),
    ("members", "delete_membertag"),
    ("loyalty", "view_message"),
    ("members", "view_wechatidentity"),
    ("members", "view_purchase"),
    ("members", "view_refund"),
    ("points", "view_pointsaccount"),
    ("points", "view_ledgerentry"),
    ("points", "view_redemption"),
    ("points", "change_redemption"),
    ("points", "view_reward"),
    ("points", "view_earningrule"),
    ("tiers", "view_tier"),
    ("tiers", "view_membertier"),
    ("tiers", "view_tierchange"),
    ("campaigns", "view_campaign"),
    ("stored_value", "view_storedvalueaccount"),
    ("stored_value", "view_storedvalueentry"),
    ("stored_value", "view_topup"),
    ("stored_value", "add_topup"),
    ("stored_value", "view_payment"),
    ("stored_value", "view_topuprule"),
    ("campaigns", "view_coupontemplate"),
    ("campaigns", "view_coupon"),
]
MANAGER_PERMISSIONS = CLERK_PERMISSIONS + [
    ("stored_value", "view_withdrawal"),
    ("stored_value", "add_withdrawal"),
    ("stored_value", "view_storedvaluepolicy"),
]
MARKETER_PERMISSIONS = CLERK_PERMISSIONS + [
    ("members", "add_tag"),
    ("members", "change_tag"),
    ("members", "delete_tag"),
    ("loyalty", "view_auditentry"),
    ("loyalty", "view_messagetemplate"),
    ("loyalty", "change_messagetemplate"),
    ("points", "add_reward"),
    ("points", "change_reward"),
    ("points", "add_earningrule"),
    ("points", "change_earningrule"),
    ("points", "view_pointspolicy"),
    ("points", "add_pointspolicy"),
    ("tiers", "change_tier"),
    ("tiers", "view_growthpolicy"),
    ("tiers", "add_growthpolicy"),
    ("tiers", "view_growthentry"),
    ("loyalty", "view_alert"),
    ("campaigns", "add_campaign"),
    ("campaigns", "change_campaign"),
    ("campaigns", "delete_campaign"),
    ("campaigns", "view_campaignassignment"),
    ("campaigns", "view_campaignaward"),
    ("stored_value", "add_topuprule"),
    ("stored_value", "change_topuprule"),
    ("campaigns", "add_coupontemplate"),
    ("campaigns", "change_coupontemplate"),
    ("campaigns", "delete_coupontemplate"),
]


def _permissions(pairs):
    condition = Q(pk__in=[])
    for app_label, codename in pairs:
        condition |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(condition)


def sync_role_groups(**kwargs):
    clerk, _ = Group.objects.get_or_create(name=ROLE_CLERK)
    manager, _ = Group.objects.get_or_create(name=ROLE_MANAGER)
    marketer, _ = Group.objects.get_or_create(name=ROLE_MARKETER)
    admin, _ = Group.objects.get_or_create(name=ROLE_ADMIN)
    clerk.permissions.set(_permissions(CLERK_PERMISSIONS))
    manager.permissions.set(_permissions(MANAGER_PERMISSIONS))
    marketer.permissions.set(_permissions(MARKETER_PERMISSIONS))
    admin.permissions.set(
        Permission.objects.filter(
            Q(content_type__app_label__in=LOYALTY_APPS) | Q(content_type__app_label="django_celery_beat")
        ).exclude(content_type__model__in=["stafftoken", "otpchallenge"])
    )


# --- Staff accounts' powers -------------------------------------------------------------------------------------

# The fields of a staff account that grant powers: only a superuser edits them (an admin sees them read-only).
STAFF_POWER_FIELDS = ("is_superuser", "user_permissions")  # a superuser's alone; groups: grantable_groups


def held_permissions(user):
    """The permissions a staff account holds ("app_label.codename"), its own and its groups', whether or not it is
    active (reactivating it gives them back); None for a superuser, who holds them all."""
    if user.is_superuser:
        return None
    held = (
        Permission.objects.filter(Q(user=user) | Q(group__user=user))
        .values_list("content_type__app_label", "codename")
        .distinct()
    )
    return {f"{app_label}.{codename}" for app_label, codename in held}


def may_manage_staff(editor, account):
    """Whether `editor` may change or delete the staff `account` (its password and activation among the rest): a
    superuser any account; anyone else only an account whose powers are within her own, never a superuser's, so
    taking an account over gives her nothing she does not have."""
    if editor.is_superuser:
        return True
    if account.is_superuser:
        return False
    if account.pk == editor.pk:
        return True
    return held_permissions(account) <= held_permissions(editor)


def grantable_groups(editor):
    """The groups `editor` may give a staff account: every group for a superuser; for anyone else the groups whose
    permissions she holds herself (so the roles up to her own), never one that would give more."""
    groups = Group.objects.order_by("name")
    if editor.is_superuser:
        return groups
    held = held_permissions(editor)
    within = [
        group.pk
        for group in groups.prefetch_related("permissions__content_type")
        if {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()} <= held
    ]
    return groups.filter(pk__in=within)


def staff_access(user):
    """What a staff account may do, as the audit log keeps it (staff_access.changed)."""
    return {
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "user_permissions": sorted(
            f"{app_label}.{codename}"
            for app_label, codename in user.user_permissions.values_list("content_type__app_label", "codename")
        ),
    }
