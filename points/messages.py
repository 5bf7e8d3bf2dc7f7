"""The points app's messages to members: points about to expire and the birthday greeting (the reminders job's
sources), and the confirmation of a redemption (sent by redeem_reward after commit)."""

from datetime import date, timedelta

from django.conf import settings
from django.db.models import Sum
from django.utils.translation import gettext_lazy as _

from loyalty.clock import end_of_business_day, start_of_business_day
from loyalty.message_templates import MessageKind, register_message_kind
from loyalty.messaging import MessageRequest
from members.models import Member
from members.reminders import ReminderSource, register_reminder_source
from points.models import LotStatus, PointsAccount, PointsLot

POINTS_EXPIRING = register_message_kind(
    MessageKind(
        code="points_expiring",
        label=_("points expiring"),
        marketing=False,
        variables={
            "points": _("the points that expire on that day"),
            "date": _("their last valid day"),
            "days": _("days from now until then (30 or 7)"),
            "balance": _("her available points now"),
        },
        sample={"points": 320, "date": date(2026, 12, 31), "days": 30, "balance": 1280},
        frequency_days=0,  # once per lot date and reminder (the dedupe key), however many dates a week holds
    )
)
BIRTHDAY = register_message_kind(
    MessageKind(
        code="birthday",
        label=_("birthday greeting"),
        marketing=True,
        variables={"points": _("the birthday bonus she was given this year"), "year": _("the year")},
        sample={"points": 50, "year": 2026},
        frequency_days=0,  # once a year (the dedupe key)
    )
)
REDEMPTION_CONFIRMED = register_message_kind(
    MessageKind(
        code="redemption_confirmed",
        label=_("redemption confirmed"),
        marketing=False,
        variables={
            "reward": _("the reward's name"),
            "quantity": _("how many"),
            "points": _("the points spent"),
            "balance": _("her available points after it"),
            "code": _("the voucher or coupon code (empty for a gift)"),
        },
        sample={"reward": "咖啡券", "quantity": 1, "points": 500, "balance": 780, "code": "K7M2QX9PTA3B"},
        frequency_days=0,  # one per redemption
        quiet_hours=False,  # she is at the counter, waiting for it
    )
)


def reminder_days():
    return sorted({int(days) for days in settings.POINTS_EXPIRY_REMINDER_DAYS}, reverse=True)


def expiring_requests(as_of, start, stop, now):
    """Members in [start, stop) with points whose last valid day is `days` after `as_of` (for each reminder day,
    default 30 and 7): the points (what remains of those lots), the date and her balance. One statement per
    reminder day and one for the balances."""
    found = []
    for days in reminder_days():
        day = as_of + timedelta(days=days)
        rows = list(
            PointsLot.objects.filter(
                member_id__gte=start,
                member_id__lt=stop,
                status__in=[LotStatus.AVAILABLE, LotStatus.PENDING],
                remaining__gt=0,
                expires_at__gt=start_of_business_day(day),
                expires_at__lte=end_of_business_day(day),
            )
            .values("member_id")
            .annotate(points=Sum("remaining"))
            .order_by("member_id")
            .values_list("member_id", "points")
        )
        found += [(member_id, points, day, days) for member_id, points in rows]
    if not found:
        return []
    balances = dict(
        PointsAccount.objects.filter(member_id__in={row[0] for row in found}).values_list("member_id", "available")
    )
    return [
        MessageRequest(
            member_id,
            POINTS_EXPIRING.code,
            f"{day.isoformat()}:{days}",
            {"points": points, "date": day, "days": days, "balance": balances.get(member_id, 0)},
        )
        for member_id, points, day, days in found
    ]


def birthday_requests(as_of, start, stop, now):
    """Members in [start, stop) whose birthday is `as_of` (29 February: on the 28th in other years): each active
    one gets the year's birthday bonus now (points.services.award_birthdays, once per member and year, in the
    chunk's transaction), and every one a greeting naming it."""
    from points.services import award_birthdays

    members = Member.objects.filter(pk__gte=start, pk__lt=stop, birthday__month=as_of.month, birthday__day=as_of.day)
    if as_of.month == 2 and as_of.day == 28 and (as_of + timedelta(days=1)).month == 3:
        members = Member.objects.filter(pk__gte=start, pk__lt=stop, birthday__month=2, birthday__day__in=[28, 29])
    ids = list(members.order_by("pk").values_list("pk", flat=True))
    if not ids:
        return []
    bonus = award_birthdays(ids, year=as_of.year, on=as_of)
    return [
        MessageRequest(
            member_id, BIRTHDAY.code, f"birthday:{as_of.year}", {"points": bonus.get(member_id, 0), "year": as_of.year}
        )
        for member_id in ids
    ]


def notify_redemption(redemption, *, balance):
    """The member's confirmation of a redemption, in redeem_reward's transaction (sent after it commits)."""
    from loyalty.messaging import notify

    notify(
        member_id=redemption.member_id,
        kind=REDEMPTION_CONFIRMED.code,
        dedupe_key=f"redemption:{redemption.pk}",
        variables={
            "reward": redemption.reward.name,
            "quantity": redemption.quantity,
            "points": redemption.points_spent,
            "balance": balance,
            "code": redemption.code,
        },
        now=redemption.created_at,
    )


def register():
    """Called from PointsConfig.ready()."""
    register_reminder_source(ReminderSource(name="points_expiring", requests=expiring_requests))
    register_reminder_source(ReminderSource(name="birthday", requests=birthday_requests))
