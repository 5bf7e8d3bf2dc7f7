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

        register_member_field(MemberField(
            name="points",
            represent=represent,
            prepare_queryset=lambda queryset: queryset.select_related("points_account"),
        ))


def _has_account(member):
    from points.models import PointsAccount

    try:
        return member.points_account is not None
    except PointsAccount.DoesNotExist:
        return False
