"""Every change to a member's stored value, by name: top-up, payment, refund of a payment, withdrawal, adjustment,
PIN, and a merge's part. Views, admin, commands and the merge call these; nothing else writes the ledger.

Each runs in one durable transaction that takes the member's locks in members.locking's order (her points account,
her tier row when growth may change, her stored-value account) before it checks anything, so two concurrent
debits can never both pass and the balance never goes below zero. Client writes are idempotent: a top-up on its
payment reference (per payment method), a payment on its Idempotency-Key (and its order_no once per source), a
refund on its refund_no (per payment), withdrawals and adjustments on their Idempotency-Key.

How a payment splits (SPEC §9: principal and bonus in proportion to what the account holds), in integer cents:
bonus_used = floor(amount × bonus / (principal + bonus)), principal_used = amount − bonus_used. Rounding gives
the odd cent to principal; the parts always add up to the amount, and neither exceeds its balance (amount ≤ total).
A refund returns each part in the payment's own proportion, counted on the running total refunded: after refunds
of R in all, bonus returned = floor(R × bonus_used / amount) and principal returned = R − that, so each refund's
parts are never negative, a full refund returns exactly what was paid, and nothing is ever returned twice.
"""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import events
from loyalty.access import ROLE_ADMIN, ROLE_MANAGER
from loyalty.audit import record_audit
from loyalty.clock import business_date
from loyalty.errors import DomainError, InvalidInput, NotFoundError, PermissionDeniedError
from members.models import Member
from members.services import ensure_member_active
from points.services import AlreadyRecorded, idempotency
from points.services.engagement import award_points_locked
from stored_value.messages import notify_payment
from stored_value.models import EntryKind, Payment, PaymentRefund, StoredValueLot, TopUp, Withdrawal
from tiers.services import book_growth

from .configuration import current_policy, top_up_terms
from .ledger import (
    InsufficientBalance,
    adjust_balances,
    append_entry,
    balance,
    debit,
    event_data,
    give_back,
    lock_member,
    lock_stored_value_accounts,
    money,
    move_lots,
    open_lot,
    save_account,
    take_from_lot,
)

MAX_CENTS = 10**11  # one billion in money: no single change may move more (guards against absurd input)
MANAGER_ROLES = frozenset({ROLE_ADMIN, ROLE_MANAGER})
TOP_UP_SCOPE = "stored-value:top-up"


class PinRequired(DomainError):
    status = 403
    code = "pin_required"
    default_detail = _("This payment needs the member's payment PIN.")


class PinInvalid(DomainError):
    status = 403
    code = "pin_invalid"
    default_detail = _("The payment PIN is wrong.")


class DailyLimit(DomainError):
    code = "daily_limit"
    default_detail = _("The payment would pass the member's stored-value spending limit for today.")


class AlreadyPaid(DomainError):
    code = "already_paid"
    default_detail = _("This order was already paid from the stored value (under another Idempotency-Key).")


class RefundExceedsPayment(DomainError):
    code = "refund_exceeds_payment"
    default_detail = _("The refund is more than what is left to refund of the payment.")


class WithdrawalExceedsUnspent(DomainError):
    code = "withdrawal_exceeds_unspent"
    default_detail = _("Only the unspent principal of a top-up can be withdrawn.")


class ManagerRequired(PermissionDeniedError):
    default_detail = _("Only a store manager or an admin may do this.")


@dataclass
class Outcome:
    """A service's answer: the result body, and whether it replays an earlier identical request."""

    result: dict
    replayed: bool = False
    status_code: int = 201


def _replay(claim):
    return Outcome(idempotency.replayed_response(claim.replay), replayed=True, status_code=claim.replay.status_code)


def iso(value):
    return timezone.localtime(value).isoformat() if value else None


def _check_cents(value, field, *, allow_negative=False):
    low = -MAX_CENTS if allow_negative else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_CENTS:
        raise InvalidInput(
            {field: [gettext("Cents from %(low)s to %(max_cents)s.") % {"low": low, "max_cents": MAX_CENTS}]}
        )


def _require_manager(role):
    if role not in MANAGER_ROLES:
        raise ManagerRequired()


def _reason(reason):
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput({"reason": [gettext("Say why.")]})
    return reason


# --- Top-ups ------------------------------------------------------------------------------------------------------


def top_up_representation(top_up, account=None):
    return {
        "id": str(top_up.pk),
        "member": str(top_up.member_id),
        "amount": money(top_up.amount_cents),
        "bonus": money(top_up.bonus_cents),
        "amount_cents": top_up.amount_cents,
        "bonus_cents": top_up.bonus_cents,
        "bonus_points": top_up.bonus_points,
        "bonus_growth": top_up.bonus_growth,
        "bonus_expires_at": iso(top_up.bonus_expires_at),
        "payment_method": top_up.payment_method,
        "payment_ref": top_up.payment_ref,
        "store": top_up.store.code if top_up.store_id else None,
        "rule": str(top_up.rule_id) if top_up.rule_id else None,
        "created_at": iso(top_up.created_at),
        **({"balance": balance(account)} if account is not None else {}),
    }


def top_up(*, actor, member_id, amount_cents, payment_method, payment_ref, fingerprint, store=None):
    """Money paid in at the counter or through a client app (the payment itself happened outside), with the bonus
    money, bonus points and growth value of the top-up rule in force for the store (rule_for), all in one
    transaction. Idempotent on (payment_method, payment_ref): the same reference again with the same request answers
    the first result (replayed), with another request IdempotencyConflict; after its record was purged,
    AlreadyRecorded. Raises MemberFrozen / MemberMerged / MemberAnonymised, InvalidInput."""
    _check_cents(amount_cents, "amount")
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=TOP_UP_SCOPE, key=f"{payment_method}:{payment_ref}", fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        earlier = TopUp.objects.filter(payment_method=payment_method, payment_ref=payment_ref).first()
        if earlier is not None:
            raise AlreadyRecorded(top_up=str(earlier.pk))
        terms = top_up_terms(amount_cents, at=now, store=store)
        rule, bonus, points, growth = terms.rule, terms.bonus, terms.points, terms.growth
        expires_at = terms.bonus_expires_at
        points_account, account = lock_member(member_id, tier=growth > 0, now=now)
        member = Member.objects.get(pk=member_id)
        ensure_member_active(member)
        reference = f"{payment_method}:{payment_ref}"
        entry = append_entry(
            account,
            kind=EntryKind.TOP_UP,
            actor=actor,
            principal_delta=amount_cents,
            reason="top-up",
            reference=reference,
            store=store,
            now=now,
        )
        if bonus:
            append_entry(
                account,
                kind=EntryKind.BONUS,
                actor=actor,
                bonus_delta=bonus,
                reason=f"bonus of {rule.name}",
                reference=reference,
                store=store,
                now=now,
            )
        record = TopUp.objects.create(
            member=member,
            store=store,
            amount_cents=amount_cents,
            bonus_cents=bonus,
            bonus_points=points,
            bonus_growth=growth,
            bonus_expires_at=expires_at,
            payment_method=payment_method,
            payment_ref=payment_ref,
            rule=rule,
            entry=entry,
            actor=actor[:120],
            created_at=now,
        )
        open_lot(
            account,
            entry=entry,
            principal=amount_cents,
            bonus=bonus,
            top_up=record,
            bonus_expires_at=expires_at,
            now=now,
        )
        if points:
            award_points_locked(
                points_account,
                points=points,
                actor=actor,
                reason="stored-value top-up bonus",
                reference=f"top-up:{record.pk}",
                now=now,
            )
        tier_change = book_growth(member, value=growth, kind="top_up", reference=f"top-up:{record.pk}", at=now)
        save_account(account)
        events.emit(
            "stored_value.topped_up",
            event_data(
                account,
                principal=amount_cents,
                bonus=bonus,
                reference=reference,
                top_up=str(record.pk),
                payment_method=payment_method,
                payment_ref=payment_ref,
                store=store.code if store else None,
                bonus_points=points,
                bonus_expires_at=iso(expires_at),
            ),
            member_id=member_id,
        )
        result = {**top_up_representation(record, account), "tier_change": tier_change}
        idempotency.complete(claim, response=result)
    return Outcome(result)


# --- Payments -----------------------------------------------------------------------------------------------------


def split_payment(amount, *, principal, bonus):
    """(principal_used, bonus_used) of a payment of `amount` cents from balances `principal` and `bonus`, in
    proportion, bonus rounded down (see the module's docstring). amount ≤ principal + bonus."""
    total = principal + bonus
    bonus_used = amount * bonus // total
    return amount - bonus_used, bonus_used


def refund_parts(payment, amount):
    """(principal, bonus) a refund of `amount` returns of `payment`, in the payment's proportion counted on the
    running total refunded (see the module's docstring)."""
    refunded = payment.refunded_cents + amount
    bonus_total = refunded * payment.bonus_used // payment.amount_cents
    principal_total = refunded - bonus_total
    return principal_total - payment.principal_refunded, bonus_total - payment.bonus_refunded


def payment_representation(payment, account=None):
    return {
        "id": str(payment.pk),
        "member": str(payment.member_id),
        "order_no": payment.order_no,
        "amount": money(payment.amount_cents),
        "principal_used": money(payment.principal_used),
        "bonus_used": money(payment.bonus_used),
        "refunded": money(payment.refunded_cents),
        "amount_cents": payment.amount_cents,
        "principal_used_cents": payment.principal_used,
        "bonus_used_cents": payment.bonus_used,
        "store": payment.store.code if payment.store_id else None,
        "created_at": iso(payment.created_at),
        **({"balance_after": money(account.total_cents), "balance": balance(account)} if account is not None else {}),
    }


def check_pin(account, pin, policy, now):
    """The PIN's verdict, under the account lock: None when the payment may go on, else the error to answer.
    A wrong PIN counts; at the policy's pin_max_attempts (5) wrong ones in a row it locks until staff set a new one
    (set_pin); a right one clears the count. A member without a PIN pays without one unless the policy requires
    one (then she must set one first)."""
    if account.pin_locked_at is not None:
        return PinInvalid("The payment PIN is locked after too many wrong ones; staff can set a new one.", locked=True)
    if not pin:
        if account.has_pin:
            return PinRequired()
        if policy.pin_required:
            return PinRequired("Payments need a PIN: the member sets one first.", has_pin=False)
        return None
    if not account.has_pin:
        return PinInvalid("The member has no payment PIN.", has_pin=False)
    if account.pin_matches(pin):
        account.pin_failed_attempts = 0
        return None
    account.pin_failed_attempts += 1
    left = max(policy.pin_max_attempts - account.pin_failed_attempts, 0)
    if left == 0:
        account.pin_locked_at = now
    return PinInvalid(attempts_left=left, locked=left == 0)


def pay(*, actor, scope, key, fingerprint, member_id, source, order_no, amount_cents, store=None, pin=None):
    """Pay an order from the balance: principal and bonus in proportion (split_payment), taken from her lots.
    Checks, after her locks: status, the PIN (check_pin: a wrong one is counted and committed, the payment not
    made), the order not yet paid from the balance (AlreadyPaid), the policy's daily limit over the business date's
    payments (DailyLimit), the balance (InsufficientBalance). Idempotent on (scope, key)."""
    _check_cents(amount_cents, "amount")
    now = timezone.now()
    refusal = None
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        _, account = lock_member(member_id, now=now)
        ensure_member_active(Member.objects.get(pk=member_id))
        policy = current_policy(now)
        refusal = check_pin(account, pin, policy, now)
        if refusal is not None:
            idempotency.release(claim)  # a retry with the right PIN is a new attempt under the same key
            save_account(account)  # the wrong attempt counts: committed, with nothing else
        else:
            result = _pay_locked(
                account,
                policy=policy,
                actor=actor,
                member_id=member_id,
                source=source,
                order_no=order_no,
                amount_cents=amount_cents,
                store=store,
                now=now,
            )
            idempotency.complete(claim, response=result)
    if refusal is not None:
        raise refusal
    return Outcome(result)


def _pay_locked(account, *, policy, actor, member_id, source, order_no, amount_cents, store, now):
    earlier = Payment.objects.filter(source=source, order_no=order_no).first()
    if earlier is not None:
        raise AlreadyPaid(payment=str(earlier.pk))
    today = business_date(now)
    if policy.daily_limit_cents is not None:
        spent = (
            Payment.objects.filter(member_id=member_id, business_date=today).aggregate(t=Sum("amount_cents"))["t"] or 0
        )
        if spent + amount_cents > policy.daily_limit_cents:
            raise DailyLimit(
                daily_limit=money(policy.daily_limit_cents),
                spent_today=money(spent),
                left=money(max(policy.daily_limit_cents - spent, 0)),
            )
    if amount_cents > account.total_cents:
        raise InsufficientBalance(available=money(account.total_cents), required=money(amount_cents))
    principal_used, bonus_used = split_payment(
        amount_cents, principal=account.principal_cents, bonus=account.bonus_cents
    )
    entry = debit(
        account,
        kind=EntryKind.PAY,
        actor=actor,
        principal=principal_used,
        bonus=bonus_used,
        reason=f"order {order_no}",
        reference=order_no,
        store=store,
        now=now,
    )
    payment = Payment.objects.create(
        member_id=member_id,
        store=store,
        source=source,
        order_no=order_no,
        amount_cents=amount_cents,
        principal_used=principal_used,
        bonus_used=bonus_used,
        business_date=today,
        entry=entry,
        actor=actor[:120],
        created_at=now,
    )
    save_account(account)
    events.emit(
        "stored_value.paid",
        event_data(
            account,
            principal=principal_used,
            bonus=bonus_used,
            reference=order_no,
            order_no=order_no,
            payment=str(payment.pk),
            store=store.code if store else None,
        ),
        member_id=member_id,
    )
    notify_payment(payment, balance=account.total_cents)  # written now, sent after commit
    return payment_representation(payment, account)


def refund_payment(*, actor, payment_id, refund_no, amount_cents, fingerprint):
    """Refund (part of) a payment to the balance: each part back in the payment's proportion (refund_parts), to the
    lots it came from (bonus whose validity ended meanwhile expires at once). Idempotent on (payment, refund_no).
    Raises RefundExceedsPayment beyond what is left to refund, NotFoundError, AlreadyRecorded."""
    _check_cents(amount_cents, "amount")
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=f"stored-value:refund:{payment_id}", key=refund_no, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        member_id = Payment.objects.filter(pk=payment_id).values_list("member_id", flat=True).first()
        if member_id is None:
            raise NotFoundError()
        _, account = lock_member(member_id, now=now)
        payment = Payment.objects.select_for_update(of=("self",)).select_related("entry", "store").get(pk=payment_id)
        earlier = PaymentRefund.objects.filter(payment=payment, refund_no=refund_no).first()
        if earlier is not None:
            raise AlreadyRecorded(refund=str(earlier.pk))
        refundable = payment.amount_cents - payment.refunded_cents
        if amount_cents > refundable:
            raise RefundExceedsPayment(refundable=money(refundable))
        principal, bonus = refund_parts(payment, amount_cents)
        entry, expired = give_back(
            account,
            original_entry=payment.entry,
            principal=principal,
            bonus=bonus,
            principal_returned=payment.principal_refunded,
            bonus_returned=payment.bonus_refunded,
            kind=EntryKind.REFUND_TO_BALANCE,
            actor=actor,
            reason=f"refund {refund_no} of order {payment.order_no}",
            reference=payment.order_no,
            store=payment.store,
            now=now,
        )
        refund = PaymentRefund.objects.create(
            payment=payment,
            refund_no=refund_no,
            amount_cents=amount_cents,
            principal_cents=principal,
            bonus_cents=bonus,
            entry=entry,
            actor=actor[:120],
            created_at=now,
        )
        payment.principal_refunded += principal
        payment.bonus_refunded += bonus
        payment.save(update_fields=["principal_refunded", "bonus_refunded"])
        save_account(account)
        events.emit(
            "stored_value.refunded",
            event_data(
                account,
                principal=principal,
                bonus=bonus,
                reference=payment.order_no,
                order_no=payment.order_no,
                payment=str(payment.pk),
                refund_no=refund_no,
                bonus_expired=money(expired),
            ),
            member_id=member_id,
        )
        result = {
            "id": str(refund.pk),
            "payment": str(payment.pk),
            "refund_no": refund_no,
            "amount": money(amount_cents),
            "principal": money(principal),
            "bonus": money(bonus),
            "bonus_expired": money(expired),
            "balance_after": money(account.total_cents),
            "balance": balance(account),
            "created_at": iso(now),
        }
        idempotency.complete(claim, response=result)
    return Outcome(result)


# --- Withdrawals and adjustments (managers) -------------------------------------------------------------------------


def withdraw(*, actor, role, scope, key, fingerprint, top_up_id, reason, amount_cents=None, store=None):
    """Pay back unspent principal of a top-up in money (a manager's action, with a reason): at most what is left
    of that top-up's principal (its lot's principal_remaining; all of it when no amount is given), and the same
    share of what is left of its bonus is forfeited, rounded up (withdrawing all its unspent principal forfeits
    all its bonus). Raises ManagerRequired, InvalidInput, NotFoundError, WithdrawalExceedsUnspent. Audited."""
    _require_manager(role)
    reason = _reason(reason)
    if amount_cents is not None:
        _check_cents(amount_cents, "amount")
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        member_id = TopUp.objects.filter(pk=top_up_id).values_list("member_id", flat=True).first()
        if member_id is None:
            raise NotFoundError()
        _, account = lock_member(member_id, now=now)
        record = TopUp.objects.select_for_update().get(pk=top_up_id)
        lot = StoredValueLot.objects.get(top_up=record)
        unspent = lot.principal_remaining
        amount = unspent if amount_cents is None else amount_cents
        if amount <= 0 or amount > unspent:
            raise WithdrawalExceedsUnspent(unspent=money(unspent))
        forfeited = -(-lot.bonus_remaining * amount // unspent)  # rounded up
        entry = take_from_lot(
            account,
            lot=lot,
            principal=amount,
            bonus=forfeited,
            kind=EntryKind.WITHDRAW,
            actor=actor,
            reason=reason,
            reference=f"top-up:{record.pk}",
            store=store,
            now=now,
        )
        TopUp.objects.filter(pk=record.pk).update(withdrawn_cents=F("withdrawn_cents") + amount)
        withdrawal = Withdrawal.objects.create(
            top_up=record,
            member_id=member_id,
            store=store,
            principal_cents=amount,
            bonus_forfeited_cents=forfeited,
            reason=reason[:200],
            entry=entry,
            actor=actor[:120],
            created_at=now,
        )
        record_audit(
            actor=actor,
            action="stored_value.withdrawn",
            target=withdrawal.member,
            new={
                "top_up": record.pk,
                "principal": amount,
                "bonus_forfeited": forfeited,
                "reason": reason,
                "entry": entry.pk,
            },
        )
        save_account(account)
        events.emit(
            "stored_value.withdrawn",
            event_data(
                account,
                principal=amount,
                bonus=forfeited,
                reference=f"top-up:{record.pk}",
                top_up=str(record.pk),
                withdrawal=str(withdrawal.pk),
                bonus_forfeited=money(forfeited),
            ),
            member_id=member_id,
        )
        result = {
            "id": str(withdrawal.pk),
            "top_up": str(record.pk),
            "member": str(member_id),
            "amount": money(amount),
            "bonus_forfeited": money(forfeited),
            "unspent_left": money(unspent - amount),
            "reason": reason,
            "balance_after": money(account.total_cents),
            "balance": balance(account),
            "created_at": iso(now),
        }
        idempotency.complete(claim, response=result)
    return Outcome(result)


def entry_representation(entry):
    return {
        "id": str(entry.pk),
        "kind": entry.kind,
        "principal": money(entry.principal_delta),
        "bonus": money(entry.bonus_delta),
        "amount": money(entry.amount_cents),
        "principal_after": money(entry.principal_after),
        "bonus_after": money(entry.bonus_after),
        "balance_after": money(entry.balance_after),
        "principal_cents": entry.principal_delta,
        "bonus_cents": entry.bonus_delta,
        "reason": entry.reason,
        "reference": entry.reference,
        "store": entry.store.code if entry.store_id else None,
        "created_at": iso(entry.created_at),
    }


def adjust(*, actor, role, scope, key, fingerprint, member_id, principal_cents, bonus_cents, reason):
    """A manual correction by a manager, with a reason: either part up or down (never below zero:
    InsufficientBalance). Raises ManagerRequired, InvalidInput, NotFoundError. Audited."""
    _require_manager(role)
    reason = _reason(reason)
    _check_cents(principal_cents, "principal", allow_negative=True)
    _check_cents(bonus_cents, "bonus", allow_negative=True)
    if not principal_cents and not bonus_cents:
        raise InvalidInput({"principal": [gettext("Change the principal or the bonus.")]})
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        member = Member.objects.filter(pk=member_id).first()
        if member is None:
            raise NotFoundError()
        _, account = lock_member(member_id, now=now)
        entry = adjust_balances(
            account,
            principal=principal_cents,
            bonus=bonus_cents,
            actor=actor,
            reason=reason,
            reference="adjustment",
            now=now,
        )
        record_audit(
            actor=actor,
            action="stored_value.adjusted",
            target=member,
            new={"principal": principal_cents, "bonus": bonus_cents, "reason": reason, "entry": entry.pk},
        )
        save_account(account)
        result = {**entry_representation(entry), "balance": balance(account)}
        idempotency.complete(claim, response=result)
    return Outcome(result)


# --- The PIN ------------------------------------------------------------------------------------------------------


def set_pin(*, actor, member_id, pin):
    """Staff set (or reset) a member's payment PIN at the counter, with her present: hashed with Django's password
    hashers, the wrong-PIN count cleared and a lock lifted. Audited (never the PIN)."""
    with transaction.atomic(durable=True):
        member = Member.objects.filter(pk=member_id).first()
        if member is None:
            raise NotFoundError()
        _, account = lock_member(member_id)
        was_locked = account.pin_locked_at is not None
        account.set_pin(pin)
        save_account(account)
        record_audit(actor=actor, action="stored_value.pin_set", target=member, new={"unlocked": was_locked})
    return {"member": str(member_id), "has_pin": True, "locked": False}


def change_own_pin(*, member_id, pin, current_pin=None):
    """The member sets her own PIN; a PIN she has already must be given (a wrong one counts like a payment's, and a
    locked PIN is changed by staff only). Raises PinRequired, PinInvalid."""
    refusal = None
    with transaction.atomic(durable=True):
        _, account = lock_member(member_id)
        if account.has_pin or account.pin_locked_at is not None:
            refusal = check_pin(account, current_pin, current_policy(), timezone.now())
            if refusal is None and not current_pin:
                refusal = PinRequired("Give the current PIN as current_pin.")
        if refusal is None:
            account.set_pin(pin)
        save_account(account)
    if refusal is not None:
        raise refusal
    return {"member": str(member_id), "has_pin": True, "locked": False}


# --- A member merge's part ----------------------------------------------------------------------------------------


def merge_stored_value(merge):
    """Registered on members.services.merge.merge_steps: the duplicate's balance moves to the survivor as two merge
    entries (minus on her, plus on the survivor: they sum to zero), her lots become the survivor's with what is left
    in them, her top-ups, payments and withdrawals follow (so a later refund or withdrawal acts on the survivor),
    and her account is closed. Both accounts are locked already (lock_members); the survivor keeps her own PIN.
    What moved goes into the merge's answer as "stored_value" (nothing when she never had stored value)."""
    survivor_id, duplicate_id = merge.survivor.pk, merge.duplicate.pk
    accounts = lock_stored_value_accounts([survivor_id, duplicate_id], include_closed=True)
    survivor, duplicate = accounts[survivor_id], accounts[duplicate_id]
    principal, bonus = duplicate.principal_cents, duplicate.bonus_cents
    if principal or bonus:
        for account, sign, reason in (
            (duplicate, -1, f"merged into member {merge.survivor.member_no}"),
            (survivor, 1, f"merged from member {merge.duplicate.member_no}"),
        ):
            append_entry(
                account,
                kind=EntryKind.MERGE,
                actor=merge.actor,
                principal_delta=sign * principal,
                bonus_delta=sign * bonus,
                reason=reason,
                reference=merge.reference,
                now=merge.now,
            )
    lots = move_lots(from_member_id=duplicate_id, to_member_id=survivor_id)
    moved = {
        "principal": money(principal),
        "bonus": money(bonus),
        "lots": lots,
        "top_ups": TopUp.objects.filter(member_id=duplicate_id).update(member_id=survivor_id),
        "payments": Payment.objects.filter(member_id=duplicate_id).update(member_id=survivor_id),
        "withdrawals": Withdrawal.objects.filter(member_id=duplicate_id).update(member_id=survivor_id),
    }
    duplicate.closed = True
    duplicate.pin_hash, duplicate.pin_failed_attempts, duplicate.pin_locked_at = "", 0, None
    save_account(survivor)
    save_account(duplicate)
    if not (principal or bonus or any(moved[name] for name in ("lots", "top_ups", "payments", "withdrawals"))):
        return {}  # she never had stored value: the merge's answer says nothing of it
    return {"stored_value": moved}
