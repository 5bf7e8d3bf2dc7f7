"""Spending and correcting points: reward redemption and its cancellation, points as cash, manual adjustments."""

import secrets
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import batch, events
from loyalty.access import ROLE_ADMIN, ROLE_MARKETER
from loyalty.audit import record_audit
from loyalty.clock import business_date, end_of_business_day, start_of_business_day
from loyalty.errors import DomainError, NotFoundError
from members.models import Member, Purchase
from members.services import ensure_member_active
from points import hooks
from points.messages import notify_redemption
from points.models import EntryKind, LedgerEntry, Redemption, RedemptionStatus, Reward, RewardKind

from . import idempotency
from .configuration import limit_in_force
from .ledger import (
    InsufficientPoints,
    current_policy,
    earn,
    expires_at_for,
    give_back,
    lock_account,
    save_account,
    send_spendable_lots,
    spend,
)
from .opening import finish_locked, open_locked
from .purchases import Outcome, _replay, iso, use_points_as_cash


class OutOfStock(DomainError):
    code = "out_of_stock"
    default_detail = _("The reward is out of stock.")


class LimitReached(DomainError):
    code = "limit_reached"
    default_detail = _("The member has redeemed this reward as often as allowed.")


class RewardUnavailable(DomainError):
    code = "reward_unavailable"
    default_detail = _("The reward is not available now.")


class AlreadyCancelled(DomainError):
    code = "already_cancelled"
    default_detail = _("The redemption was already cancelled.")


class AdjustmentLimit(DomainError):
    status = 403
    code = "adjustment_limit"
    default_detail = _("The adjustment is over your role's limit; send it with request_approval to ask a manager.")


CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

# The reference of a direct adjustment's entry (an approved request's is "adjustment-request:<id>").
DIRECT_ADJUSTMENT = "adjustment"
# The first key of the advisory lock that serialises one staff member's adjustments (the second: her actor's hash).
ADJUSTER_LOCK_SPACE = 0x61646A75  # "adju"


def entry_representation(entry):
    return {
        "id": str(entry.pk),
        "kind": entry.kind,
        "points": entry.points,
        "balance_after": entry.balance_after,
        "reason": entry.reason,
        "reference": entry.reference,
        "created_at": iso(entry.created_at),
        "expires_at": iso(entry.expires_at),
    }


def redemption_representation(redemption):
    reward = redemption.reward
    return {
        "id": str(redemption.pk),
        "status": redemption.status,
        "points_spent": redemption.points_spent,
        "quantity": redemption.quantity,
        "code": redemption.code or None,
        "reward": {"id": str(reward.pk), "code": reward.code, "name": reward.name, "kind": reward.kind},
        "created_at": iso(redemption.created_at),
        "cancelled_at": iso(redemption.cancelled_at),
    }


def redeem_reward(*, actor, scope, key, fingerprint, member_id, reward_id, quantity=1, store=None):
    """Redeem a reward: points, stock and the per-member limit all hold or nothing happens.

    Every check comes after the member's account lock, so a freeze or a tier change either committed before it
    or waits for the redemption: status, availability, tier, balance, limit, then stock by a conditional UPDATE
    (so concurrent redemptions by different members can never oversell). Raises MemberFrozen,
    RewardUnavailable, the checks other apps register (tiers: not_eligible), InsufficientPoints, LimitReached,
    OutOfStock."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        opened = open_locked(
            scope=scope,
            key=key,
            fingerprint=fingerprint,
            member_id=member_id,
            more=[lambda: batch.select(Reward, "id = %s", [reward_id]), lambda: send_spendable_lots(member_id)],
        )
        claim = opened.claim
        if claim.replay:
            return _replay(claim)
        rewards, lots = opened.more
        if opened.member is None:  # the view read both the member and the reward: they exist
            raise Member.DoesNotExist()
        account = opened.locked_account()
        member = opened.member
        ensure_member_active(member)
        if not rewards:
            raise Reward.DoesNotExist()
        reward = rewards[0]
        if not reward.is_available_at(now):
            raise RewardUnavailable()
        hooks.check_redemption(member, reward)
        cost = reward.cost_points * quantity
        if account.available < cost:
            raise InsufficientPoints(available=account.available, required=cost)
        if reward.per_member_limit is not None:
            # Every version of the reward counts (a new version of its terms is not a new allowance).
            redeemed = (
                Redemption.objects.filter(
                    member=member, reward__code=reward.code, status=RedemptionStatus.COMPLETED
                ).aggregate(total=Sum("quantity"))["total"]
                or 0
            )
            if redeemed + quantity > reward.per_member_limit:
                raise LimitReached(redeemed=redeemed, limit=reward.per_member_limit)
        if reward.stock is not None and not Reward.objects.filter(pk=reward.pk, stock__gte=quantity).update(
            stock=F("stock") - quantity
        ):
            raise OutOfStock()
        entry = spend(
            account,
            points=cost,
            kind=EntryKind.REDEEM,
            actor=actor,
            reason=f"redeemed {reward.name}",
            reference=f"reward:{reward.code}",
            now=now,
            store_id=store.pk if store else None,
            lots=lots if opened.read_under_lock else None,  # else read now, under the lock
        )
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12)) if reward.kind != RewardKind.GIFT else ""
        redemption = Redemption.objects.create(
            member=member,
            reward=reward,
            quantity=quantity,
            points_spent=cost,
            code=code,
            entry=entry,
            actor=actor,
            store=store,
            created_at=now,
        )
        handed_out = hooks.fulfil_reward(redemption)  # a reward of kind coupon: the coupon's own code
        if handed_out:
            redemption.code = handed_out
            redemption.save(update_fields=["code"])
        events.emit("redemption.created", redemption_event_data(redemption, account), member_id=member.pk)
        notify_redemption(redemption, balance=account.available)  # written now, sent after commit
        result = {**redemption_representation(redemption), "balance": account.available}
        finish_locked(account, claim, result)
    return Outcome(result)


def redemption_event_data(redemption, account):
    """The redemption.created / redemption.cancelled event: the redemption as the API shows it but its code (the
    voucher a member shows at the counter stays between her and the service), and her balance after it."""
    shown = redemption_representation(redemption)
    del shown["code"]
    return {
        "member": str(redemption.member_id),
        "redemption": shown.pop("id"),
        **shown,
        "points": redemption.points_spent,
        "reference": f"redemption:{redemption.pk}",
        "balance": account.available,
    }


def cancel_redemption(*, actor, redemption_id):
    """Cancel a redemption: its points go back to the lots they came from (with their original expiry) and the
    stock is returned to the reward's current version; what a fulfiller handed out is taken back (a coupon is
    void). Raises AlreadyCancelled on a second cancel, and what a cancel listener raises (coupon_used)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        member_id = Redemption.objects.values_list("member_id", flat=True).get(pk=redemption_id)
        account = lock_account(member_id)
        redemption = Redemption.objects.select_related("reward", "entry").get(pk=redemption_id)
        if redemption.status == RedemptionStatus.CANCELLED:
            raise AlreadyCancelled()
        give_back(
            account,
            original_entry=redemption.entry,
            points=redemption.points_spent,
            already_returned=0,
            kind=EntryKind.CANCEL,
            actor=actor,
            reason=f"redemption {redemption.pk} cancelled",
            reference=f"redemption:{redemption.pk}",
            now=now,
            store_id=redemption.store_id,
        )
        # The stock goes back to the current version of the reward (a replaced version handed its stock over).
        Reward.objects.filter(code=redemption.reward.code, replaced_at__isnull=True, stock__isnull=False).update(
            stock=F("stock") + redemption.quantity
        )
        hooks.redemption_cancelled(redemption)  # a coupon it issued is void (refused if already used)
        redemption.status, redemption.cancelled_at = RedemptionStatus.CANCELLED, now
        redemption.save(update_fields=["status", "cancelled_at"])
        save_account(account)
        events.emit("redemption.cancelled", redemption_event_data(redemption, account), member_id=member_id)
    return {**redemption_representation(redemption), "balance": account.available}


def deduct_points(*, actor, scope, key, fingerprint, member_id, source, order_no, points, order_amount=None):
    """Use points as cash for an order (积分抵现), up to the policy's share of the order amount: the recorded
    purchase's amount when the order is already recorded, else `order_amount` as the POS says. Checks come
    after the member's account lock. Raises MemberFrozen, DeductionLimit, InsufficientPoints, AlreadyDeducted."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        account = lock_account(member_id)
        member = Member.objects.get(pk=member_id)
        ensure_member_active(member)
        purchase = Purchase.objects.filter(source=source, order_no=order_no).first()
        if purchase is not None:
            if purchase.member_id != member.pk:
                raise DomainError(gettext("The order belongs to another member."), code="order_not_eligible")
            order_amount = purchase.amount
        if order_amount is None:
            raise DomainError(
                gettext("Give the order's amount (the order is not recorded yet)."), code="invalid", status=400
            )
        deduction = use_points_as_cash(
            account,
            policy=current_policy(now),
            member=member,
            source=source,
            order_no=order_no,
            points=points,
            order_amount=Decimal(order_amount),
            actor=actor,
            now=now,
            store_id=purchase.store_id if purchase else None,
            channel=purchase.channel if purchase else None,
        )
        if purchase is not None:
            Purchase.objects.filter(pk=purchase.pk).update(points_used=points)
        save_account(account)
        result = {
            "points": points,
            "amount": f"{deduction.amount:.2f}",
            "order_no": order_no,
            "balance": account.available,
        }
        idempotency.complete(claim, response=result)
    return Outcome(result)


def adjustment_limit(role, policy):
    """Points a role may adjust per entry (None: no limit, admins), never above the operator's ceiling."""
    if role == ROLE_ADMIN:
        return None
    if role == ROLE_MARKETER:
        return limit_in_force(policy, "marketer_adjustment_limit")
    return limit_in_force(policy, "clerk_adjustment_limit")


def daily_adjustment_totals(role, policy):
    """The daily totals that bind a role's direct adjustments, each never above the operator's ceiling:
    (points she may adjust per business day across all members, points all staff may adjust one member per
    business day); None for admins (no limit, like the limit per entry)."""
    if role == ROLE_ADMIN:
        return None
    field = "marketer_daily_adjustment_total" if role == ROLE_MARKETER else "clerk_daily_adjustment_total"
    return limit_in_force(policy, field), limit_in_force(policy, "member_daily_adjustment_total")


def lock_adjuster(actor):
    """Serialise one staff member's direct adjustments (to any member) until the transaction ends: a PostgreSQL
    advisory lock on her actor label, taken before any member's lock (members/locking.py), so her daily total is
    read after her previous adjustment has committed. (SQLite runs one writer at a time anyway.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [ADJUSTER_LOCK_SPACE, actor])


def adjusted_today(*, actor, member_id, now):
    """Points adjusted on `now`'s business date (sums of |points|), in one aggregate query:
    (directly by `actor`, to any member; to the member, by anyone, approved requests included).
    An approved request is the approver's decision, not the requester's nor the approver's own adjustment: it
    counts in the member's total only."""
    day = business_date(now)
    by_actor = Q(actor=actor, reference=DIRECT_ADJUSTMENT)
    to_member = Q(member_id=member_id)
    totals = LedgerEntry.objects.filter(
        by_actor | to_member,
        kind=EntryKind.ADJUST,
        created_at__gte=start_of_business_day(day),
        created_at__lt=end_of_business_day(day),
    ).aggregate(
        by_actor=Coalesce(Sum(Abs("points"), filter=by_actor), 0),
        to_member=Coalesce(Sum(Abs("points"), filter=to_member), 0),
    )
    return totals["by_actor"], totals["to_member"]


def check_daily_totals(totals, *, actor, member_id, points, now):
    """Refuse (AdjustmentLimit) an adjustment that would take the actor's or the member's adjustments of the
    business day over its daily total. The caller holds the actor's lock (lock_adjuster) and the member's."""
    actor_total, member_total = totals
    by_actor, to_member = adjusted_today(actor=actor, member_id=member_id, now=now)
    for per, total, done, whose in (
        ("actor", actor_total, by_actor, gettext("your adjustments")),
        ("member", member_total, to_member, gettext("adjustments to this member")),
    ):
        if done + abs(points) > total:
            left = max(total - done, 0)
            raise AdjustmentLimit(
                gettext(
                    "Over the daily total of %(whose)s: %(total)s points a day, %(done)s adjusted today, %(left)s "
                    "left. Send it with request_approval to ask a manager."
                )
                % {"whose": whose, "total": total, "done": done, "left": left},
                per=per,
                daily_total=total,
                adjusted_today=done,
                left=left,
            )


def write_adjustment(account, *, policy, points, actor, reason, reference=DIRECT_ADJUSTMENT, now):
    """The ledger side of an adjustment, direct or approved: adding points makes a lot that expires by the
    policy; taking them may not go below zero (InsufficientPoints). The caller holds the account lock. Writes the
    points.adjusted event (loyalty.events)."""
    if points > 0:
        entry, _ = earn(
            account,
            points=points,
            actor=actor,
            available_at=now,
            expires_at=expires_at_for(policy, now),
            reason=reason,
            reference=reference,
            kind=EntryKind.ADJUST,
            now=now,
        )
    else:
        entry = spend(
            account, points=-points, kind=EntryKind.ADJUST, actor=actor, reason=reason, reference=reference, now=now
        )
    events.emit(
        "points.adjusted",
        {
            "member": str(account.member_id),
            "points": points,
            "reference": entry.reference,
            "reason": entry.reason,
            "entry": str(entry.pk),
            "balance": entry.balance_after,
            "actor": actor,
        },
        member_id=account.member_id,
    )
    return entry


def adjust_points(*, actor, role, scope, key, fingerprint, member_id, points, reason):
    """A manual correction by staff, with a reason, within the role's limit per entry and its daily totals (the
    actor's adjustments of the business day, the member's; admins: none). Adding points makes a lot that expires
    by the policy; taking them may not go below zero. Writes an audit row.

    Locks the actor (lock_adjuster), then the member's account, and checks the daily totals after both: parallel
    adjustments by one clerk, to one member or to many, pass only as far as her totals allow. Raises
    AdjustmentLimit (403), NotFoundError, InsufficientPoints."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        policy = current_policy(now)
        limit = adjustment_limit(role, policy)
        if limit is not None and abs(points) > limit:
            raise AdjustmentLimit(limit=limit)
        totals = daily_adjustment_totals(role, policy)
        if totals is not None:
            lock_adjuster(actor)
        account = lock_account(member_id)
        member = Member.objects.filter(pk=member_id).first()
        if member is None:
            raise NotFoundError()
        if totals is not None:
            check_daily_totals(totals, actor=actor, member_id=member_id, points=points, now=now)
        entry = write_adjustment(account, policy=policy, points=points, actor=actor, reason=reason, now=now)
        record_audit(
            actor=actor,
            action="points.adjusted",
            target=member,
            new={"points": points, "reason": reason, "entry": entry.pk},
        )
        save_account(account)
        result = entry_representation(entry)
        idempotency.complete(claim, response=result)
    return Outcome(result)
