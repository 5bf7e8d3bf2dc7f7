"""A member merge's points part (registered on members.services.merge.merge_steps): the duplicate's open lots,
balances, lifetime figures, redemptions, points used as cash and adjustments waiting for approval move to the
survivor."""

from points.models import (
    AdjustmentRequest,
    AdjustmentRequestStatus,
    Deduction,
    EntryKind,
    LotMovement,
    LotStatus,
    PointsLot,
    Redemption,
)

from .ledger import append_entry, lock_accounts, note_late_lots, save_account, settle_debt

LIFETIME_FIGURES = ("lifetime_earned", "lifetime_spent", "lifetime_expired")


def merge_points(merge):
    """Move the duplicate's points to the survivor, in the merge's transaction (both accounts are locked).

    Each open lot of the duplicate (pending, available, or debt not yet paid) is closed by a movement of its
    remaining points on her `merge` entry, and a lot with the same remaining points, status, earned_at,
    available_at, expires_at and purchase opens on the survivor under her `merge` entry: pending points free and
    available points expire on the survivor exactly when they would have on the duplicate, and a negative balance
    moves as debt. The two entries sum to zero. Then a survivor who now has both debt and available points pays
    the debt as an earn would. Her other pending and available lots (spent to 0) are marked `merged` as well.
    Lifetime figures add up on the survivor (the duplicate's go to zero, so totals over all members stay true);
    her account is closed, so every later change to it is refused (MemberMerged)."""
    survivor_id, duplicate_id = merge.survivor.pk, merge.duplicate.pk
    accounts = lock_accounts([survivor_id, duplicate_id], include_closed=True)
    survivor, duplicate = accounts[survivor_id], accounts[duplicate_id]
    lots = list(
        PointsLot.objects.filter(
            member_id=duplicate_id, status__in=[LotStatus.PENDING, LotStatus.AVAILABLE, LotStatus.DEBT]
        )
        .exclude(remaining=0)
        .order_by("id")
    )
    available, pending = duplicate.available, duplicate.pending
    moved = {"available": available, "pending": pending, "lots": len(lots)}
    closing = append_entry(
        duplicate,
        kind=EntryKind.MERGE,
        actor=merge.actor,
        available_delta=-available,
        pending_delta=-pending,
        reason=f"merged into member {merge.survivor.member_no}",
        reference=merge.reference,
        now=merge.now,
    )
    opening = append_entry(
        survivor,
        kind=EntryKind.MERGE,
        actor=merge.actor,
        available_delta=available,
        pending_delta=pending,
        reason=f"merged from member {merge.duplicate.member_no}",
        reference=merge.reference,
        now=merge.now,
    )
    LotMovement.objects.bulk_create([LotMovement(entry=closing, lot=lot, points=-lot.remaining) for lot in lots])
    opened = PointsLot.objects.bulk_create(
        [
            PointsLot(
                member_id=survivor_id,
                entry=opening,
                status=lot.status,
                points=lot.remaining,
                remaining=lot.remaining,
                earned_at=lot.earned_at,
                available_at=lot.available_at,
                expires_at=lot.expires_at,
                purchase_id=lot.purchase_id,
                pending_until=lot.pending_until,
            )
            for lot in lots
        ]
    )
    note_late_lots(opened)
    for lot in lots:
        lot.remaining = 0
        if lot.status != LotStatus.DEBT:  # a debt lot at 0 is a paid debt; others are marked moved
            lot.status, lot.pending_until = LotStatus.MERGED, None
    PointsLot.objects.bulk_update(lots, ["remaining", "status", "pending_until"])
    # Her spent-out lots are closed too, so the nightly release and expiry never come back to her account.
    PointsLot.objects.filter(member_id=duplicate_id, status__in=[LotStatus.PENDING, LotStatus.AVAILABLE]).update(
        status=LotStatus.MERGED, pending_until=None
    )
    if _has_debt_and_points(survivor_id):
        settle_debt(survivor, opening)
    for figure in LIFETIME_FIGURES:
        moved[figure] = getattr(duplicate, figure)
        setattr(survivor, figure, getattr(survivor, figure) + getattr(duplicate, figure))
        setattr(duplicate, figure, 0)
    _merge_daily_bookkeeping(survivor, duplicate)
    duplicate.closed = True
    save_account(survivor)
    save_account(duplicate)
    moved["redemptions"] = Redemption.objects.filter(member_id=duplicate_id).update(member_id=survivor_id)
    moved["deductions"] = Deduction.objects.filter(member_id=duplicate_id).update(member_id=survivor_id)
    moved["adjustment_requests"] = AdjustmentRequest.objects.filter(  # still waiting: decided for the survivor
        member_id=duplicate_id, status=AdjustmentRequestStatus.PENDING
    ).update(member_id=survivor_id)
    return {"points": moved}


def _has_debt_and_points(member_id):
    lots = PointsLot.objects.filter(member_id=member_id)
    return (
        lots.filter(status=LotStatus.DEBT, remaining__lt=0).exists()
        and lots.filter(status=LotStatus.AVAILABLE, remaining__gt=0).exists()
    )


def _merge_daily_bookkeeping(survivor, duplicate):
    """One person, one daily cap and one sign-in streak: what was earned today on either counts together, and
    the later sign-in (with its streak) stands."""
    if duplicate.cap_date is not None:
        if duplicate.cap_date == survivor.cap_date:
            survivor.earned_on_cap_date += duplicate.earned_on_cap_date
        elif survivor.cap_date is None or duplicate.cap_date > survivor.cap_date:
            survivor.cap_date, survivor.earned_on_cap_date = duplicate.cap_date, duplicate.earned_on_cap_date
    if duplicate.last_sign_in is not None and (
        survivor.last_sign_in is None or duplicate.last_sign_in > survivor.last_sign_in
    ):
        survivor.last_sign_in, survivor.sign_in_streak = duplicate.last_sign_in, duplicate.sign_in_streak
