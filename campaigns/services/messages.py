"""Campaigns' messages to members: the campaign_launch kind (marketing: only on channels she consented to), and
the coupons_expiring reminder (transactional), which the reminders job sends (`coupons_expiring_requests`).

`launch_requests` makes the messages announcing a campaign to given members; whoever picks the audience (a
marketer's send to a campaign's target, or a segment_move campaign for the members who moved, in the
segment_moves job's chunk) writes them with loyalty.messaging.queue_messages in its transaction."""

from datetime import date, timedelta

from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from loyalty.clock import business_date
from loyalty.message_templates import MessageKind, register_message_kind
from loyalty.messaging import MessageRequest

CAMPAIGN_LAUNCH = register_message_kind(
    MessageKind(
        code="campaign_launch",
        label=_("campaign launch"),
        marketing=True,
        variables={
            "campaign": _("the campaign's name"),
            "starts": _("its first day"),
            "ends": _("its last day (empty: open-ended)"),
        },
        sample={"campaign": "双十一双倍积分", "starts": date(2026, 11, 11), "ends": date(2026, 11, 12)},
    )
)


def launch_requests(campaign, member_ids):
    """A campaign_launch message to each of these members, about this campaign (once per member and campaign)."""
    variables = {
        "campaign": campaign.name,
        "starts": business_date(campaign.starts_at),
        "ends": business_date(campaign.ends_at) if campaign.ends_at else "",
    }
    return [
        MessageRequest(member_id, CAMPAIGN_LAUNCH.code, f"campaign:{campaign.pk}", variables)
        for member_id in member_ids
    ]


COUPON_REMINDER_DAYS = 3  # the reminder goes out this many days before a coupon's last valid day
COUPONS_EXPIRING = register_message_kind(
    MessageKind(
        code="coupons_expiring",
        label=_("coupons expiring"),
        marketing=False,
        variables={
            "count": _("her unused coupons whose last day it is"),
            "date": _("their last valid day"),
            "days": _("days"),
        },
        sample={"count": 2, "date": date(2026, 12, 31), "days": COUPON_REMINDER_DAYS},
        frequency_days=0,  # once per last day (the dedupe key)
    )
)


def coupons_expiring_requests(as_of, start, stop, now):
    """A ReminderSource of the reminders job: members in [start, stop) with unused coupons whose last valid day is
    COUPON_REMINDER_DAYS after `as_of`, how many. One statement (the unused coupons' valid_until index)."""
    from campaigns.models_coupons import Coupon, CouponStatus

    day = as_of + timedelta(days=COUPON_REMINDER_DAYS)
    rows = (
        Coupon.objects.filter(member_id__gte=start, member_id__lt=stop, status=CouponStatus.UNUSED, valid_until=day)
        .values("member_id")
        .annotate(count=Count("id"))
        .order_by("member_id")
        .values_list("member_id", "count")
    )
    return [
        MessageRequest(
            member_id,
            COUPONS_EXPIRING.code,
            f"{day.isoformat()}:{COUPON_REMINDER_DAYS}",
            {"count": count, "date": day, "days": COUPON_REMINDER_DAYS},
        )
        for member_id, count in rows
    ]
