"""The stored-value ledger's primitives: lock the accounts, write an entry, credit a lot, take money from lots and
give it back. Every function here runs inside the caller's transaction, after the member's locks (lock_member);
none opens a transaction of its own. These are the only functions that write accounts, entries, lots and
movements.

Which lots a debit takes from: principal from the oldest lot first; bonus from the lot whose bonus expires
soonest (never-expiring bonus last), then the oldest. A return goes back to the very lots it was taken from.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import events
from loyalty.errors import DomainError
from members.models import Member
from members.services import MemberMerged
from points.services.ledger import lock_accounts
from stored_value.models import EntryKind, StoredValueAccount, StoredValueEntry, StoredValueLot, StoredValueMovement
from tiers.services import lock_member_tiers

CENT = Decimal("0.01")


class InsufficientBalance(DomainError):
    code = "insufficient_balance"
    default_detail = _("The stored-value balance does not cover this.")


def money(cents):
    """Cents as the API shows money: a decimal string with two places ("129.90")."""
    return f"{(Decimal(cents) * CENT):.2f}"


def cents(amount):
    """A Decimal money amount (at most two places) in cents."""
    value = Decimal(amount) / CENT
    if value != value.to_integral_value():
        raise ValueError("money has at most two decimal places")
    return int(value)


def balance(account):
    """An account's balances as the API shows them: cents and decimal strings."""
    return {
        "member": str(account.member_id),
        "principal": money(account.principal_cents),
        "bonus": money(account.bonus_cents),
        "total": money(account.total_cents),
        "principal_cents": account.principal_cents,
        "bonus_cents": account.bonus_cents,
        "total_cents": account.total_cents,
    }


def lock_stored_value_accounts(member_ids, *, include_closed=False):
    """Step 3 of members.locking's order: lock these members' stored-value accounts (created on first use) in id
    order, in the caller's transaction, after their points accounts and tier rows. Returns {member_id: account}.
    A closed account (its member was merged away) takes no change: MemberMerged, unless include_closed."""
    ids = sorted(set(member_ids))

    def locked():
        rows = StoredValueAccount.objects.select_for_update().filter(member_id__in=ids).order_by("member_id")
        return {account.member_id: account for account in rows}

    accounts = locked()
    if len(accounts) < len(ids):
        StoredValueAccount.objects.bulk_create(
            [StoredValueAccount(member_id=member_id) for member_id in ids if member_id not in accounts],
            ignore_conflicts=True,
        )
        accounts = locked()
    closed = [member_id for member_id, account in accounts.items() if account.closed]
    if closed and not include_closed:
        survivor = Member.objects.filter(pk=closed[0]).values_list("merged_into_id", flat=True).first()
        raise MemberMerged(member=str(closed[0]), merged_into=str(survivor) if survivor else None)
    return accounts


def lock_member_stored_value(member_ids):
    """The locker registered in members.locking.member_lockers (a merge, a freeze): closed accounts included."""
    return lock_stored_value_accounts(member_ids, include_closed=True)


def lock_member(member_id, *, tier=False, now=None):
    """Every lock a stored-value change needs, in members.locking's order: her points account (the member's lock;
    MemberMerged if she was merged away), her tier row when the change may give growth value, then her stored-value
    account. Bonus money whose validity has ended is expired first (expire_due_bonus), so no change ever sees it.
    Returns (points account, stored-value account)."""
    points_account = lock_accounts([member_id])[member_id]
    if tier:
        lock_member_tiers([member_id])
    account = lock_stored_value_accounts([member_id])[member_id]
    expire_due_bonus(account, now=now or timezone.now())
    return points_account, account


BONUS_EXPIRY_ACTOR = "system:bonus_expiry"
BONUS_EXPIRY_REASON = "bonus money past its validity"
BONUS_EXPIRY_REFERENCE = "bonus-expiry"


def expire_due_bonus(account, *, now, cutoff=None, actor=BONUS_EXPIRY_ACTOR):
    """Expire what is left of her lots' bonus whose validity ended at or before `cutoff` (default `now`): one
    expire_bonus entry naming the lots by movements, and its stored_value.bonus_expired event. The caller holds her
    locks and saves the account. Returns the cents expired.

    The nightly job (stored_value.services.expiry) writes the very same entry, movements and event set-based, for
    the lots due by the end of its business date; whichever comes first expires a lot, the other finds nothing."""
    cutoff = cutoff or now
    due = list(
        StoredValueLot.objects.filter(
            member_id=account.member_id, bonus_remaining__gt=0, bonus_expires_at__lte=cutoff
        ).order_by("id")
    )
    expired = sum(lot.bonus_remaining for lot in due)
    if expired:
        entry = append_entry(
            account,
            kind=EntryKind.EXPIRE_BONUS,
            actor=actor,
            bonus_delta=-expired,
            reason=BONUS_EXPIRY_REASON,
            reference=BONUS_EXPIRY_REFERENCE,
            now=now,
        )
        apply_movements(entry, [Take(lot, bonus=lot.bonus_remaining) for lot in due], sign=-1)
        save_account(account)
        emit_entry_event("stored_value.bonus_expired", entry)
    return expired


def event_data(account, *, principal, bonus, reference, **extra):
    """The data of a stored_value.* event: the member, what moved (`amount` = `principal` + `bonus`, unsigned
    decimal strings: the event type says which way), the reference (payment reference, order_no, top-up) and the
    balance after it (principal + bonus)."""
    return {
        "member": str(account.member_id),
        "amount": money(principal + bonus),
        "principal": money(principal),
        "bonus": money(bonus),
        "reference": reference,
        "balance_after": money(account.total_cents),
        **extra,
    }


def emit_entry_event(event_type, entry, **extra):
    """Emit the event of one ledger entry (in the caller's transaction, after the change): its parts unsigned."""
    data = {
        "member": str(entry.member_id),
        "amount": money(abs(entry.amount_cents)),
        "principal": money(abs(entry.principal_delta)),
        "bonus": money(abs(entry.bonus_delta)),
        "reference": entry.reference,
        "balance_after": money(entry.balance_after),
        "entry": str(entry.pk),
        **extra,
    }
    events.emit(event_type, data, member_id=entry.member_id)


def save_account(account):
    account.save()


def append_entry(account, *, kind, actor, principal_delta=0, bonus_delta=0, reason="", reference="", store=None, now):
    """Move the account's balances and write the entry that says so (with both balances after it). The database
    refuses a balance below zero (CHECK constraints), so a debit the lots do not cover can never commit."""
    if account.principal_cents + principal_delta < 0 or account.bonus_cents + bonus_delta < 0:
        raise InsufficientBalance(available=money(account.total_cents))
    account.principal_cents += principal_delta
    account.bonus_cents += bonus_delta
    return StoredValueEntry.objects.create(
        member_id=account.member_id,
        kind=kind,
        principal_delta=principal_delta,
        bonus_delta=bonus_delta,
        principal_after=account.principal_cents,
        bonus_after=account.bonus_cents,
        reason=reason[:200],
        reference=str(reference)[:100],
        store=store,
        actor=actor[:120],
        created_at=now,
    )


def open_lot(account, *, entry, principal, bonus, top_up=None, bonus_expires_at=None, now):
    """A new lot of what a credit put in (`entry` already moved the balances by as much)."""
    return StoredValueLot.objects.create(
        member_id=account.member_id,
        entry=entry,
        top_up=top_up,
        principal_cents=principal,
        bonus_cents=bonus,
        principal_remaining=principal,
        bonus_remaining=bonus,
        bonus_expires_at=bonus_expires_at if bonus else None,
        created_at=now,
    )


@dataclass
class Take:
    lot: StoredValueLot
    principal: int = 0
    bonus: int = 0


def plan_debit(member_id, *, principal, bonus):
    """The lots `principal` and `bonus` come from (principal oldest first; bonus soonest-expiring first, then
    oldest). Raises InsufficientBalance when the lots do not cover them. The account lock keeps the lots still."""
    takes = {}
    for part, needed, ordering in (
        ("principal", principal, ["id"]),
        ("bonus", bonus, [F("bonus_expires_at").asc(nulls_last=True), "id"]),
    ):
        if needed <= 0:
            continue
        lots = StoredValueLot.objects.filter(member_id=member_id, **{f"{part}_remaining__gt": 0}).order_by(*ordering)
        for lot in lots.iterator(chunk_size=100):
            amount = min(getattr(lot, f"{part}_remaining"), needed)
            take = takes.setdefault(lot.pk, Take(lot))
            setattr(take, part, getattr(take, part) + amount)
            needed -= amount
            if needed == 0:
                break
        if needed:
            raise InsufficientBalance(
                gettext("The lots do not cover %(part)s of %(needed)s more.") % {"part": part, "needed": money(needed)}
            )
    return list(takes.values())


def apply_movements(entry, takes, *, sign):
    """Write the movements of `entry` on these lots and move their remainders (sign -1: taken, +1: given back)."""
    for take in takes:
        StoredValueLot.objects.filter(pk=take.lot.pk).update(
            principal_remaining=F("principal_remaining") + sign * take.principal,
            bonus_remaining=F("bonus_remaining") + sign * take.bonus,
        )
    StoredValueMovement.objects.bulk_create(
        [
            StoredValueMovement(entry=entry, lot=t.lot, principal_cents=sign * t.principal, bonus_cents=sign * t.bonus)
            for t in takes
            if t.principal or t.bonus
        ]
    )


def debit(account, *, kind, actor, principal, bonus, reason, reference, store=None, now):
    """Take principal and bonus from her lots with one entry. Raises InsufficientBalance (checked under the
    account lock, so two concurrent debits can never both pass)."""
    if principal < 0 or bonus < 0:
        raise ValueError("a debit takes non-negative amounts")
    if principal > account.principal_cents or bonus > account.bonus_cents:
        raise InsufficientBalance(available=money(account.total_cents))
    takes = plan_debit(account.member_id, principal=principal, bonus=bonus)
    entry = append_entry(
        account,
        kind=kind,
        actor=actor,
        principal_delta=-principal,
        bonus_delta=-bonus,
        reason=reason,
        reference=reference,
        store=store,
        now=now,
    )
    apply_movements(entry, takes, sign=-1)
    return entry


def plan_return(original_entry, *, principal, bonus, principal_returned, bonus_returned):
    """Where `principal` and `bonus` of what `original_entry` took go back: to the lots it took them from, in the
    order it took them, after the parts earlier returns gave back (`*_returned`)."""
    movements = list(StoredValueMovement.objects.filter(entry=original_entry).select_related("lot").order_by("id"))
    takes = {}
    for part, amount, skip in (("principal", principal, principal_returned), ("bonus", bonus, bonus_returned)):
        for movement in movements:
            if amount == 0:
                break
            taken = -getattr(movement, f"{part}_cents")
            if taken <= 0:
                continue
            if skip >= taken:
                skip -= taken
                continue
            give = min(taken - skip, amount)
            skip = 0
            take = takes.setdefault(movement.lot_id, Take(movement.lot))
            setattr(take, part, getattr(take, part) + give)
            amount -= give
        if amount:
            raise ValueError(f"{original_entry} took less {part} than is being returned")
    return list(takes.values())


def give_back(
    account,
    *,
    original_entry,
    principal,
    bonus,
    principal_returned,
    bonus_returned,
    kind,
    actor,
    reason,
    reference,
    store=None,
    now,
):
    """Return principal and bonus that `original_entry` took to the very lots they came from, with one entry.
    Bonus whose lot's validity ended meanwhile is returned and expired at once (an expire_bonus entry), so an
    expired bonus never becomes spendable again. Returns (entry, bonus expired)."""
    takes = plan_return(
        original_entry,
        principal=principal,
        bonus=bonus,
        principal_returned=principal_returned,
        bonus_returned=bonus_returned,
    )
    entry = append_entry(
        account,
        kind=kind,
        actor=actor,
        principal_delta=principal,
        bonus_delta=bonus,
        reason=reason,
        reference=reference,
        store=store,
        now=now,
    )
    apply_movements(entry, takes, sign=1)
    lapsed = [
        Take(take.lot, bonus=take.bonus)
        for take in takes
        if take.bonus and take.lot.bonus_expires_at is not None and take.lot.bonus_expires_at <= now
    ]
    expired = sum(take.bonus for take in lapsed)
    if expired:
        expiry = append_entry(
            account,
            kind=EntryKind.EXPIRE_BONUS,
            actor=actor,
            bonus_delta=-expired,
            reason="returned bonus whose validity had ended",
            reference=f"expired-on-return:{entry.pk}",
            store=store,
            now=now,
        )
        apply_movements(expiry, lapsed, sign=-1)
        emit_entry_event("stored_value.bonus_expired", expiry)
    return entry, expired


def adjust_balances(account, *, principal, bonus, actor, reason, reference, now):
    """A manual correction of either part, either way, with one adjust entry: what it takes comes from her lots as a
    debit's would (InsufficientBalance beyond them), what it adds opens a lot of its own (no top-up: nothing of it
    can be withdrawn, and its bonus never expires)."""
    takes = plan_debit(account.member_id, principal=max(-principal, 0), bonus=max(-bonus, 0))
    entry = append_entry(
        account,
        kind=EntryKind.ADJUST,
        actor=actor,
        principal_delta=principal,
        bonus_delta=bonus,
        reason=reason,
        reference=reference,
        now=now,
    )
    apply_movements(entry, takes, sign=-1)
    if principal > 0 or bonus > 0:
        open_lot(account, entry=entry, principal=max(principal, 0), bonus=max(bonus, 0), now=now)
    return entry


def take_from_lot(account, *, lot, principal, bonus, kind, actor, reason, reference, store=None, now):
    """Take principal and bonus from one given lot (a withdrawal of its top-up), with one entry."""
    entry = append_entry(
        account,
        kind=kind,
        actor=actor,
        principal_delta=-principal,
        bonus_delta=-bonus,
        reason=reason,
        reference=reference,
        store=store,
        now=now,
    )
    apply_movements(entry, [Take(lot, principal, bonus)], sign=-1)
    return entry


def move_lots(*, from_member_id, to_member_id):
    """A merge: every lot of the duplicate becomes the survivor's, with what is left in it (the merge entries move
    the balances by as much), so refunds of her payments go back to the same lots. Returns how many moved."""
    return StoredValueLot.objects.filter(member_id=from_member_id).update(member_id=to_member_id)
