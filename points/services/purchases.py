"""Purchases and refunds with their points: one durable transaction each, idempotent on order_no / refund_no."""

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loyalty import batch
from loyalty.clock import business_date
from loyalty.errors import DomainError, InvalidInput
from members.models import Member, MemberStatus, Purchase, PurchaseLine, Refund
from members.services import ensure_member_active
from points import hooks
from points.models import Deduction, EntryKind, Event, PointsAccount, RuleChannel

from . import idempotency
from .earning import Award, apply_daily_cap, daily_cap_left, purchase_base_points, rule_for, with_modifiers
from .ledger import (
    claw_back,
    current_policy,
    earn,
    expires_at_for,
    give_back,
    lock_accounts,
    refuse_closed,
    save_account,
    spend,
)
from .opening import finishing_statement


class RefundExceedsPurchase(DomainError):
    code = "refund_exceeds_purchase"
    default_detail = gettext_lazy("The refund is more than the purchase's remaining refundable amount.")


class DeductionLimit(DomainError):
    code = "deduction_limit"
    default_detail = gettext_lazy("More points than the allowed share of the order.")


class AlreadyDeducted(DomainError):
    code = "already_deducted"
    default_detail = gettext_lazy("Points were already used for this order.")


@dataclass
class Outcome:
    """A service's answer: the result body, and whether it is the replay of an earlier identical request."""

    result: dict
    replayed: bool = False
    status_code: int = 201


def _replay(claim):
    return Outcome(idempotency.replayed_response(claim.replay), replayed=True, status_code=claim.replay.status_code)


def iso(value):
    return timezone.localtime(value).isoformat() if value else None


def cash_value(policy, points):
    """The money value of points at checkout; points must come to whole cents."""
    amount = Decimal(points) / Decimal(policy.cash_points_per_unit)
    if amount != amount.quantize(Decimal("0.01")):
        raise DomainError(
            _("Use points in steps worth 0.01 (multiples of %(step)s).")
            % {"step": policy.cash_points_per_unit // 100 or 1},
            code="invalid",
            status=400,
        )
    return amount.quantize(Decimal("0.01"))


def use_points_as_cash(
    account, *, policy, member, source, order_no, points, order_amount, actor, now, store_id=None, channel=None
):
    """Deduct points for an order (积分抵现) within the policy's share of the order. Caller holds the lock.
    `store_id` and `channel`: the order's, when it is recorded (the entry's attribution)."""
    amount = cash_value(policy, points)
    if amount > (order_amount * policy.cash_max_share).quantize(Decimal("0.01"), rounding=ROUND_FLOOR):
        raise DeductionLimit(max_points=int(order_amount * policy.cash_max_share * policy.cash_points_per_unit))
    if Deduction.objects.filter(source=source, order_no=order_no).exists():
        raise AlreadyDeducted()
    entry = spend(
        account,
        points=points,
        kind=EntryKind.DEDUCT,
        actor=actor,
        reason="points used as cash",
        reference=order_no,
        now=now,
        store_id=store_id,
        channel=channel,
    )
    return Deduction.objects.create(
        member=member,
        source=source,
        order_no=order_no,
        points=points,
        amount=amount,
        order_amount=order_amount,
        entry=entry,
        created_at=now,
    )


def _purchase_award(
    account, *, member, policy, store, channel, paid_amount, lines, occurred_at, preview, purchase=None, actor=""
):
    rule = rule_for(RuleChannel.PURCHASE, at=occurred_at, store=store)
    base = purchase_base_points(rule, paid_amount, lines)
    context = hooks.EarnContext(
        member=member,
        channel=RuleChannel.PURCHASE,
        base_points=base,
        occurred_at=occurred_at,
        store=store,
        purchase_channel=channel,
        amount=paid_amount,
        lines=list(lines),
        preview=preview,
        purchase=purchase,
        reference=purchase.order_no if purchase else "",
        actor=actor,
        cap_left=daily_cap_left(account, policy=policy, at=timezone.now()),
    )
    total, breakdown = with_modifiers(context)
    award = Award(
        points=total, breakdown=breakdown, rule=rule, available_at=occurred_at + timedelta(days=rule.pending_days)
    )
    return apply_daily_cap(account, award, policy=policy, at=timezone.now(), preview=preview)


def _points_block(award, now):
    status = "none" if award.points <= 0 else "pending" if award.available_at > now else "available"
    return {
        "awarded": award.points,
        "status": status,
        "available_at": iso(award.available_at),
        "breakdown": award.breakdown,
    }


def preview_purchase(*, member, amount, store=None, channel="offline", occurred_at=None, lines=(), points_used=0):
    """What a purchase would earn now, writing nothing (no lock: the daily cap is read as it stands)."""
    from points.models import PointsAccount

    now = timezone.now()
    occurred_at = occurred_at or now
    policy = current_policy(now)
    account = PointsAccount.objects.filter(member=member).first() or PointsAccount(member=member)
    paid = amount - (cash_value(policy, points_used) if points_used else Decimal(0))
    award = _purchase_award(
        account,
        member=member,
        policy=policy,
        store=store,
        channel=channel,
        paid_amount=paid,
        lines=lines,
        occurred_at=occurred_at,
        preview=True,
    )
    extra = hooks.activity_fields(
        hooks.Activity(kind="purchase", member=member, occurred_at=occurred_at, amount=paid, preview=True),
        {"growth_awarded": 0},
    )
    return {"points": _points_block(award, now), **extra}


# A new purchase's id, taken with the idempotency claim in the opening round trip (PostgreSQL: the row is
# inserted at the end).
PURCHASE_ID = f"nextval(pg_get_serial_sequence('{Purchase._meta.db_table}', 'id'))"


class _ReferrerFirst(Exception):
    """Raised inside a purchase's transaction when the referrer's account, with the lower id, must be locked
    before the member's: the transaction rolls back and starts again with both locked in id order."""

    def __init__(self, referrer_id):
        super().__init__(referrer_id)
        self.referrer_id = referrer_id


def record_purchase(
    *,
    actor,
    source,
    member_id,
    order_no,
    amount,
    fingerprint,
    store=None,
    channel="offline",
    occurred_at=None,
    lines=(),
    points_used=0,
):
    """Record an order and award its points, idempotent on (source, order_no).

    Locks the member's account first, then reads her status. On a referred member's first purchase her
    referrer's account is locked too, both in id order (members.locking): the referrer is known only once her
    row is read under the lock, so when the referrer's id is the lower one the transaction starts again, once,
    with both accounts locked from the start (a member's referrer never changes). Raises MemberFrozen,
    IdempotencyConflict (same order_no, different body), AlreadyRecorded (the order is recorded but its record was
    purged), InsufficientPoints / DeductionLimit for points_used.
    """
    request = {
        "actor": actor,
        "source": source,
        "member_id": member_id,
        "order_no": order_no,
        "amount": amount,
        "fingerprint": fingerprint,
        "store": store,
        "channel": channel,
        "occurred_at": occurred_at,
        "lines": lines,
        "points_used": points_used,
    }
    try:
        return _record_purchase(**request, referrer_id=None)
    except _ReferrerFirst as restart:
        return _record_purchase(**request, referrer_id=restart.referrer_id)


def _record_purchase(
    *,
    actor,
    source,
    member_id,
    order_no,
    amount,
    fingerprint,
    store,
    channel,
    occurred_at,
    lines,
    points_used,
    referrer_id,
):
    now = timezone.now()
    occurred_at = occurred_at or now
    with transaction.atomic(durable=True):
        opened = _open_purchase(
            source=source,
            order_no=order_no,
            fingerprint=fingerprint,
            member_id=member_id,
            account_ids=[member_id, *([referrer_id] if referrer_id else [])],
        )
        claim = opened.claim
        if claim.replay:
            return _replay(claim)
        _refuse_recorded_purchase(opened.recorded, order_no=order_no)
        accounts = opened.locked_accounts()
        member = opened.member
        if member is None:  # her account was made for nobody by lock_accounts: rolled back with this
            raise InvalidInput({"member": [_("No member with this id.")]})
        ensure_member_active(member)
        referrer_id = _lock_referrer(member, accounts)
        account = accounts[member.pk]
        policy = current_policy(now)
        purchase = Purchase(
            member=member,
            store=store,
            source=source,
            order_no=order_no,
            channel=channel,
            occurred_at=occurred_at,
            amount=amount,
        )
        if opened.purchase_id is not None and len(accounts) == 1:
            # PostgreSQL, one account: the row is written last, in _finish_purchase's statement, with its award
            # (one INSERT instead of an INSERT now and an UPDATE at the end). Its id was taken from the table's
            # sequence in the opening round trip; the rows written before it that point at it (lot, lines,
            # campaign awards) are checked at COMMIT (Django's foreign keys are DEFERRABLE INITIALLY DEFERRED).
            purchase.pk = opened.purchase_id
        else:
            batch.insert(purchase)
        PurchaseLine.objects.bulk_create([PurchaseLine(purchase=purchase, **line) for line in lines])
        if points_used:
            deduction = use_points_as_cash(
                account,
                policy=policy,
                member=member,
                source=source,
                order_no=order_no,
                points=points_used,
                order_amount=amount,
                actor=actor,
                now=now,
                store_id=purchase.store_id,
                channel=purchase.channel,
            )
        else:  # points may have been deducted at the checkout before the order was recorded
            deduction = _earlier_deduction(policy, opened.deduction, member=member, amount=amount)
        paid = amount - deduction.amount if deduction else amount
        purchase.points_used = deduction.points if deduction else 0
        # Writes that nothing reads before the end (the earn's entry and lot, her tier row: tiers' listener) go
        # with the last statement on the fast path (the order's row is written there: see _finish_purchase).
        deferring = batch.deferring() if purchase._state.adding else nullcontext()
        award = _purchase_award(
            account,
            member=member,
            policy=policy,
            store=store,
            channel=channel,
            paid_amount=paid,
            lines=lines,
            occurred_at=occurred_at,
            preview=False,
            purchase=purchase,
            actor=actor,
        )
        with deferring as deferred:
            if award.points > 0:
                earn(
                    account,
                    points=award.points,
                    actor=actor,
                    available_at=award.available_at,
                    expires_at=expires_at_for(policy, occurred_at),
                    reason="purchase",
                    reference=order_no,
                    breakdown=award.breakdown,
                    purchase=purchase,
                    now=now,
                    store_id=purchase.store_id,
                    channel=purchase.channel,
                )
            purchase.points_awarded = award.points
            if referrer_id:
                _referral_bonus(accounts[referrer_id], referee=member, policy=policy, actor=actor, now=now)
            extra = hooks.activity_fields(
                hooks.Activity(kind="purchase", member=member, occurred_at=occurred_at, purchase=purchase, amount=paid),
                {"growth_awarded": 0, "tier_change": None},
            )
        result = {
            "id": str(purchase.pk),
            "order_no": order_no,
            "member": str(member.pk),
            "amount": f"{amount:.2f}",
            "points": _points_block(award, now),
            "points_used": {"points": points_used, "amount": f"{amount - paid:.2f}"} if points_used else None,
            **extra,
        }
        _finish_purchase(purchase, accounts, claim, result, deferred=deferred or ())
    return Outcome(result)


@dataclass
class _Opened:
    """What a purchase reads first, under its account locks (see _open_purchase)."""

    claim: idempotency.Claim
    recorded: tuple | None
    accounts: dict
    account_ids: list
    member: Member | None
    deduction: Deduction | None
    purchase_id: int | None = None

    def locked_accounts(self):
        """The locked accounts; a missing one is made and locked now (lock_accounts), a closed one refused."""
        if any(member_id not in self.accounts for member_id in self.account_ids):
            return lock_accounts(self.account_ids)
        refuse_closed(self.accounts)
        return self.accounts


def _open_purchase(*, source, order_no, fingerprint, member_id, account_ids):
    """A purchase's first statements, in this order: the idempotency claim, the order already recorded (its record
    purged), the accounts locked (FOR UPDATE, in member-id order), then under the locks the member and a deduction
    made for the order at checkout. They do not depend on each other's answers, so on PostgreSQL they go in one
    round trip with the transaction's BEGIN (batch.pipelined); their answers are judged afterwards in the same
    order as if each had waited (a replay answers before anything else is looked at)."""
    ids = sorted(set(account_ids))
    with batch.pipelined():
        # On the fast path the claim also takes the new order's id from its sequence (its row is written last).
        claim_sent = idempotency.send_claim(
            scope=f"purchase:{source}",
            key=order_no,
            fingerprint=fingerprint,
            returning=PURCHASE_ID if batch.fast() else "",
        )
        recorded_sent = batch.select(
            Purchase, "source = %s AND order_no = %s", [source, order_no], fields=["id", "created_at"], limit=1
        )
        accounts_sent = batch.select(
            PointsAccount,
            f"member_id IN ({', '.join(['%s'] * len(ids))})",
            ids,
            order_by="member_id",
            lock=True,
        )
        member_sent = batch.select(Member, "id = %s", [member_id])
        deduction_sent = batch.select(Deduction, "source = %s AND order_no = %s", [source, order_no], limit=1)
        locked_reads = hooks.send_locked_reads(member_id)  # her tier row (tiers), locked after the account
        claimed = claim_sent.one()  # the first answer read sends them all
        recorded, accounts, members, deductions = [
            sent.models() for sent in (recorded_sent, accounts_sent, member_sent, deduction_sent)
        ]
        member = members[0] if members else None
        hooks.keep_locked_reads(locked_reads, member, account_locked=member_id in {a.member_id for a in accounts})
        purchase_id = claimed[1] if claimed and batch.fast() else None  # None too for a replay
    claim = idempotency.claim_from(claim_sent, scope=f"purchase:{source}", key=order_no, fingerprint=fingerprint)
    return _Opened(
        claim=claim,
        recorded=(recorded[0].pk, recorded[0].created_at) if recorded else None,
        accounts={account.member_id: account for account in accounts},
        account_ids=ids,
        member=member,
        deduction=deductions[0] if deductions else None,
        purchase_id=purchase_id,
    )


def _finish_purchase(purchase, accounts, claim, result, deferred=()):
    """A purchase's last writes: the writes kept by batch.deferring() (`deferred`), the order with its points, the
    locked accounts' balances, the answer kept for retries. On PostgreSQL with one account: one round trip of two
    statements (data-modifying CTEs: the kept writes; then the order's row, inserted there, not written before,
    see _record_purchase, the answer and the balances); else the order's points updated, then one statement each.

    Two statements, not one: psycopg parses a statement's placeholders once per process only when it has at most
    50 parameters (psycopg._queries.MAX_CACHED_STATEMENT_PARAMS); all of them in one would have about 60, parsed
    again on every purchase."""
    if not batch.fast() or len(accounts) != 1:
        purchase.save(update_fields=["points_awarded", "points_used"])
        for locked in accounts.values():
            save_account(locked)
        idempotency.complete(claim, response=result)
        return
    (account,) = accounts.values()
    columns, params = batch.insert_columns(purchase)
    the_order = (
        f"INSERT INTO {Purchase._meta.db_table} (id, {', '.join(columns)}) "  # noqa: S608 - our table and columns
        f"VALUES ({', '.join(['%s'] * (len(params) + 1))})",
        [purchase.pk, *params],
    )
    last = finishing_statement(account, claim, result, before=[the_order])
    batch.execute_all([batch.combined(deferred), last] if deferred else [last])
    purchase._state.adding, purchase._state.db = False, connection.alias


def _refuse_recorded_purchase(recorded, *, order_no):
    """A new claim for an order already recorded: its idempotency record was purged (kept 30 days) or it never had
    one (imported by file). Its first answer cannot be rebuilt exactly, so the retry is refused, never redone.
    `recorded`: (id, created_at) of the recorded purchase, or None."""
    if recorded:
        raise idempotency.AlreadyRecorded(
            _(
                "Order %(order_no)s was already recorded on %(date)s; its first answer is no longer kept, so it is not "
                "repeated."
            )
            % {"order_no": order_no, "date": business_date(recorded[1]).isoformat()},
            purchase=str(recorded[0]),
        )


def _refuse_recorded_refund(*, purchase_id, refund_no):
    """The same for a refund retried after its record was purged."""
    recorded = (
        Refund.objects.filter(purchase_id=purchase_id, refund_no=refund_no)
        .values_list("pk", "created_at", "purchase__order_no")
        .first()
    )
    if recorded:
        raise idempotency.AlreadyRecorded(
            _(
                "Refund %(refund_no)s of order %(order_no)s was already recorded on %(date)s; its first answer is no "
                "longer kept, so it is not repeated."
            )
            % {"refund_no": refund_no, "order_no": recorded[2], "date": business_date(recorded[1]).isoformat()},
            refund=str(recorded[0]),
        )


def _lock_referrer(member, accounts):
    """The referrer to reward for this purchase (her referee's first: none recorded yet, checked under the
    member's lock), with her account locked into `accounts`; None when there is none. A referrer with the
    lower id must be locked first: _ReferrerFirst restarts the transaction."""
    referrer_id = member.referrer_id
    if not referrer_id or Purchase.objects.filter(member=member).exists():
        return None
    if referrer_id not in accounts:
        if referrer_id < member.pk:
            raise _ReferrerFirst(referrer_id)
        accounts.update(lock_accounts([referrer_id]))
    return referrer_id


def _earlier_deduction(policy, deduction, *, member, amount):
    """The deduction made for this order at checkout (read under the account lock), checked against the order."""
    if deduction is None:
        return None
    if deduction.member_id != member.pk:
        raise DomainError(_("Points were used for this order by another member."), code="order_not_eligible")
    if deduction.amount > (amount * policy.cash_max_share).quantize(Decimal("0.01"), rounding=ROUND_FLOOR):
        raise DeductionLimit(_("The points used at checkout exceed the allowed share of this order's amount."))
    return deduction


def _referral_bonus(referrer_account, *, referee, policy, actor, now):
    """The referrer's bonus on her referee's first purchase (one per referee, a unique constraint holds it)."""
    referrer = Member.objects.get(pk=referrer_account.member_id)
    rule = rule_for(RuleChannel.REFERRAL, at=now)
    if rule is None or referrer.status != MemberStatus.ACTIVE or Event.objects.filter(referee=referee).exists():
        return
    context = hooks.EarnContext(
        member=referrer,
        channel=RuleChannel.REFERRAL,
        base_points=rule.points,
        occurred_at=now,
        reference=f"referral:{referee.member_no}",
        payload={"referee": referee.pk},
        actor=actor,
        cap_left=daily_cap_left(referrer_account, policy=policy, at=now),
    )
    total, breakdown = with_modifiers(context)
    award = apply_daily_cap(referrer_account, Award(points=total, breakdown=breakdown), policy=policy, at=now)
    entry = None
    if award.points > 0:
        entry, _ = earn(
            referrer_account,
            points=award.points,
            actor=actor,
            available_at=now + timedelta(days=rule.pending_days),
            expires_at=expires_at_for(policy, now),
            reason="referral",
            reference=referee.member_no,
            breakdown=award.breakdown,
            now=now,
            channel=RuleChannel.REFERRAL,
        )
    Event.objects.create(
        member=referrer,
        type=RuleChannel.REFERRAL,
        business_date=business_date(now),
        occurred_at=now,
        referee=referee,
        points=award.points,
        capped=award.capped,
        entry=entry,
    )


def share_of(points, part, whole):
    """floor(points × part / whole), multiplied first: the product is exact, so an exact share stays whole (376 × 50
    / 188 is 100, where 376 × (50 / 188) is 99.99… and floors to 99)."""
    return int((points * part / whole).to_integral_value(ROUND_FLOOR))


def record_refund(*, actor, purchase_id, refund_no, amount, fingerprint, lines=(), occurred_at=None):
    """Refund part or all of a purchase, idempotent on (purchase, refund_no). Reverses the purchase's points in
    proportion to the refunded amount (cumulatively, so a full refund in several parts reverses exactly all of
    them) and returns points used as cash in the same proportion. Raises RefundExceedsPurchase, AlreadyRecorded (the
    refund is recorded but its record was purged)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=f"refund:{purchase_id}", key=refund_no, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        _refuse_recorded_refund(purchase_id=purchase_id, refund_no=refund_no)
        member_id = Purchase.objects.values_list("member_id", flat=True).get(pk=purchase_id)
        account = lock_accounts([member_id])[member_id]
        purchase = Purchase.objects.select_for_update().get(pk=purchase_id)
        if amount > purchase.refundable_amount:
            raise RefundExceedsPurchase(refundable=f"{purchase.refundable_amount:.2f}")
        _refund_lines(purchase, lines)
        refunded = purchase.refunded_amount + amount
        to_reverse = share_of(purchase.points_awarded, refunded, purchase.amount) - purchase.points_reversed
        to_return = share_of(purchase.points_used, refunded, purchase.amount) - purchase.points_used_returned
        if to_reverse > 0:
            claw_back(
                account,
                purchase=purchase,
                points=to_reverse,
                actor=actor,
                reason="refund",
                reference=f"{purchase.order_no}/{refund_no}",
                now=now,
            )
        if to_return > 0:
            deduction = Deduction.objects.get(source=purchase.source, order_no=purchase.order_no)
            give_back(
                account,
                original_entry=deduction.entry,
                points=to_return,
                already_returned=deduction.points_returned,
                kind=EntryKind.CANCEL,
                actor=actor,
                reason="points used as cash returned on refund",
                reference=f"{purchase.order_no}/{refund_no}",
                now=now,
                store_id=purchase.store_id,
                channel=purchase.channel,
            )
            deduction.points_returned += to_return
            deduction.save(update_fields=["points_returned"])
        refund = Refund.objects.create(
            purchase=purchase,
            refund_no=refund_no,
            amount=amount,
            lines=[{"sku": line["sku"], "quantity": str(line["quantity"])} for line in lines],
            points_reversed=max(to_reverse, 0),
            points_returned=max(to_return, 0),
            occurred_at=occurred_at or now,
        )
        purchase.refunded_amount = refunded
        purchase.points_reversed += max(to_reverse, 0)
        purchase.points_used_returned += max(to_return, 0)
        purchase.save(update_fields=["refunded_amount", "points_reversed", "points_used_returned"])
        extra = hooks.activity_fields(
            hooks.Activity(
                kind="refund",
                member=purchase.member,
                occurred_at=refund.occurred_at,
                purchase=purchase,
                refund=refund,
                amount=amount,
            ),
            {"growth_reversed": 0},
        )
        save_account(account)
        result = {
            "id": str(refund.pk),
            "refund_no": refund_no,
            "purchase": str(purchase.pk),
            "amount": f"{amount:.2f}",
            "points_reversed": refund.points_reversed,
            "points_returned": refund.points_returned,
            "balance": account.available,
            **extra,
        }
        idempotency.complete(claim, response=result)
    return Outcome(result)


def _refund_lines(purchase, lines):
    if not lines:
        return
    by_sku = {line.sku: line for line in purchase.lines.all()}
    errors = {}
    for index, line in enumerate(lines):
        bought = by_sku.get(line["sku"])
        if bought is None:
            errors[f"lines.{index}.sku"] = [_("This SKU is not on the order.")]
        elif bought.refunded_quantity + line["quantity"] > bought.quantity:
            errors[f"lines.{index}.quantity"] = [_("More than was bought and not yet refunded.")]
        else:
            bought.refunded_quantity += line["quantity"]
    if errors:
        raise InvalidInput(errors)
    PurchaseLine.objects.bulk_update(by_sku.values(), ["refunded_quantity"])
