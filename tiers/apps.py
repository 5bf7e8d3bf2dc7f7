from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TiersConfig(AppConfig):
    name = "tiers"
    verbose_name = _("Tiers")

    def ready(self):
        from members.extensions import MemberField, register_member_field, register_member_filter
        from members.locking import member_lockers
        from points import hooks
        from tiers import services

        member_lockers.register(services.lock_member_tiers)  # step 2 of the lock order, after the points account
        hooks.register_activity_listener(services.on_activity)
        hooks.register_earn_modifier(services.tier_multiplier_lines)
        hooks.register_earn_prefetcher(services.tiers_prefetched)
        hooks.register_locked_read(services.send_tier_lock)
        hooks.register_redemption_check(services.check_reward_tier)
        register_member_field(
            MemberField(
                name="tier",
                represent=represent_tier,
                prepare_queryset=lambda queryset: queryset.select_related("member_tier__tier"),
            )
        )
        register_member_field(MemberField(name="growth_value", represent=represent_growth))
        register_member_filter("tier", filter_by_tier)
        from tiers import messages
        from tiers.jobs import register_jobs

        register_jobs()
        messages.register()  # the downgrade warnings of the reminders job
        from members.services.merge import merge_steps

        merge_steps.register(services.move_growth_and_tier)  # a merge moves growth and keeps the better tier


def _member_tier(member):
    from tiers.models import MemberTier

    try:
        return member.member_tier
    except MemberTier.DoesNotExist:
        return None


def represent_tier(member):
    row = _member_tier(member)
    from tiers.services import entry_tier

    tier = row.tier if row else entry_tier()
    return {"code": tier.code, "name": tier.name} if tier else None


def represent_growth(member):
    row = _member_tier(member)
    return row.window_growth if row else 0


def filter_by_tier(queryset, code):
    from tiers.services import entry_tier

    entry = entry_tier()
    if entry is not None and entry.code == code:
        return queryset.filter(member_tier__isnull=True) | queryset.filter(member_tier__tier__code=code)
    return queryset.filter(member_tier__tier__code=code)
