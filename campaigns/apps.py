from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns")

    def ready(self):
        from campaigns.services import engine, messages, triggers  # noqa: F401 - messages registers its kind
        from members.extensions import member_registered
        from points import hooks

        hooks.register_earn_modifier(engine.campaign_lines)
        hooks.register_activity_listener(engine.return_refunded_points)
        member_registered.register(triggers.on_member_registered)
        from members.services.merge import merge_steps

        merge_steps.register(triggers.move_campaign_history)  # after points and tiers (INSTALLED_APPS order)
        triggers.register_jobs()
        from campaigns import jobs
        from campaigns.services import coupons

        jobs.register_jobs()
        hooks.register_activity_listener(coupons.return_coupons_of_refund)
        hooks.register_reward_fulfiller(coupons.issue_for_reward)
        hooks.register_redemption_cancel_listener(coupons.void_for_cancelled_redemption)
        member_registered.register(coupons.issue_on_registration)
        merge_steps.register(coupons.move_coupons)
        from members.reminders import ReminderSource, register_reminder_source

        register_reminder_source(ReminderSource(name="coupons_expiring", requests=messages.coupons_expiring_requests))
        register_reminder_source(ReminderSource(name="birthday_coupons", requests=jobs.birthday_coupons))
