from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = _("Reports")

    def ready(self):
        from reports import demo_data, demo_operations, report_results, snapshots

        snapshots.register_jobs()
        report_results.register_jobs()
        demo_data.register()  # load_demo_data's purchase and points history
        demo_operations.register()  # then its coupon batch, client app, webhooks, alerts, stored-value policy
