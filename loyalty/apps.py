from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class PlatformConfig(AppConfig):
    """The ground floor as an app: its tables (client apps, staff tokens, audit log, message log, job runs)."""

    name = "loyalty"
    verbose_name = _("Platform")

    def ready(self):
        from django.conf import settings

        from loyalty.messaging import refuse_backends_that_keep_codes
        from loyalty.model_labels import translate_generated_labels
        from loyalty.roles import sync_role_groups

        post_migrate.connect(sync_role_groups, dispatch_uid="loyalty.sync_role_groups")
        translate_generated_labels()  # the admin's labels made from field and model names, in the admin's language
        if settings.PRODUCTION:
            refuse_backends_that_keep_codes()  # every process (web, workers, commands) fails closed
