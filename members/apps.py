from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "members"
    verbose_name = _("Members")

    def ready(self):
        from members.roles import sync_role_groups

        post_migrate.connect(sync_role_groups, dispatch_uid="members.sync_role_groups")
