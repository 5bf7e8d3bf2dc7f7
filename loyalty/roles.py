"""The staff roles as Django groups, with the model permissions each needs in the admin.

Kept in step on every `migrate` (post_migrate), so a permission added by a later app lands in its group too.
A clerk works at the counter (members of her stores, tags on them, the message log); a marketer also shapes
tags, rules, rewards and campaigns; an admin may do everything in the loyalty apps and the job schedule.
"""

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from loyalty.access import ROLE_ADMIN, ROLE_CLERK, ROLE_MARKETER

LOYALTY_APPS = ("loyalty", "members", "points", "tiers", "campaigns", "reports")

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
]
MARKETER_PERMISSIONS = CLERK_PERMISSIONS + [
    ("members", "add_tag"),
    ("members", "change_tag"),
    ("members", "delete_tag"),
    ("loyalty", "view_auditentry"),
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
]


def _permissions(pairs):
    condition = Q(pk__in=[])
    for app_label, codename in pairs:
        condition |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(condition)


def sync_role_groups(**kwargs):
    clerk, _ = Group.objects.get_or_create(name=ROLE_CLERK)
    marketer, _ = Group.objects.get_or_create(name=ROLE_MARKETER)
    admin, _ = Group.objects.get_or_create(name=ROLE_ADMIN)
    clerk.permissions.set(_permissions(CLERK_PERMISSIONS))
    marketer.permissions.set(_permissions(MARKETER_PERMISSIONS))
    admin.permissions.set(
        Permission.objects.filter(
            Q(content_type__app_label__in=LOYALTY_APPS) | Q(content_type__app_label="django_celery_beat")
        ).exclude(content_type__model__in=["stafftoken", "otpchallenge"])
    )
