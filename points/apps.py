from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PointsConfig(AppConfig):
    name = "points"
    verbose_name = _("Points")

    def ready(self):
        from members.extensions import MemberField, register_member_field

        def represent(member):
            account = getattr(member, "points_account", None) if _has_account(member) else None
            return {"available": account.available if account else 0, "pending": account.pending if account else 0}

        register_member_field(
            MemberField(
                name="points",
                represent=represent,
                prepare_queryset=lambda queryset: queryset.select_related("points_account"),
            )
        )
        from points import messages
        from points.jobs import register_jobs

        register_jobs()
        messages.register()  # the expiry reminders and birthday greetings of the reminders job
        from members.locking import member_lockers
        from members.services.merge import merge_steps
        from points.services.ledger import lock_member_accounts
        from points.services.merge import merge_points

        member_lockers.register(lock_member_accounts)  # step 1 of the lock order: the points account
        merge_steps.register(merge_points)  # a merge moves lots, balances and redemptions to the survivor
        from members.imports import register_purchase_recorder
        from points.services import record_purchase

        register_purchase_recorder(record_purchase)  # import_purchases --award-points goes through the service


def _has_account(member):
    from points.models import PointsAccount

    try:
        return member.points_account is not None
    except PointsAccount.DoesNotExist:
        return False
