"""Reads of points data that more than one caller needs."""

from django.db.models import Q, Sum
from django.utils import timezone

from members.models import Member, Purchase
from points.models import AdjustmentRequest, LedgerEntry, LotStatus, PointsAccount, PointsLot, Redemption
from points.services.ledger import last_valid_day

EXPIRING_DATES_SHOWN = 5


def points_summary(member_id):
    """Balances and the next expiry dates (soonest first) with the points due on each: two indexed queries."""
    account = PointsAccount.objects.filter(member_id=member_id).first() or PointsAccount(member_id=member_id)
    due = (
        PointsLot.objects.filter(
            member_id=member_id,
            status=LotStatus.AVAILABLE,
            remaining__gt=0,
            expires_at__isnull=False,
            expires_at__gt=timezone.now(),
        )
        .values("expires_at")
        .annotate(points=Sum("remaining"))
        .order_by("expires_at")[:EXPIRING_DATES_SHOWN]
    )
    return {
        "available": account.available,
        "pending": account.pending,
        "lifetime_earned": account.lifetime_earned,
        "lifetime_spent": account.lifetime_spent,
        "lifetime_expired": account.lifetime_expired,
        "expiring": [{"date": last_valid_day(row["expires_at"]).isoformat(), "points": row["points"]} for row in due],
    }


def ledger_entries(member_id):
    """A member's ledger, newest first (the cursor pagination orders by -id)."""
    return LedgerEntry.objects.filter(member_id=member_id)


def purchases_visible_to(access):
    """Client apps see the orders they recorded; clerks the orders of their stores; others all."""
    queryset = Purchase.objects.all()
    if access.kind == "client":
        return queryset.filter(source=f"client:{access.principal.pk}")
    if access.store_ids is not None:
        return queryset.filter(store_id__in=access.store_ids)
    return queryset


def redemptions_visible_to(access):
    """Store-bound callers see the redemptions of their stores' members and the ones they made themselves
    (a member of another store may redeem at this counter, and it must be able to cancel that)."""
    queryset = Redemption.objects.select_related("reward")
    if access.store_ids is not None:
        return queryset.filter(Q(member__home_store_id__in=access.store_ids) | Q(actor=access.actor))
    return queryset


def adjustment_requests_visible_to(access):
    """Clerks see the requests for their stores' members; marketers and admins all."""
    queryset = AdjustmentRequest.objects.select_related("requested_by", "decided_by", "entry")
    if access.store_ids is not None:
        return queryset.filter(member__home_store_id__in=access.store_ids)
    return queryset


def household_members(member_id):
    """The other members of this member's household, oldest first (none without a household)."""
    return (
        Member.objects.filter(household__members__pk=member_id)
        .exclude(pk=member_id)
        .only("id", "member_no", "name", "status", "household_id")
        .order_by("pk")
    )
