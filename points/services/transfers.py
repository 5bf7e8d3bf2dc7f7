"""Points transfers between two members of one household (SPEC §5): a setting of the points policy, off by default,
with a daily limit per member."""

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.audit import record_audit
from loyalty.clock import business_date
from loyalty.errors import DomainError, InvalidInput, NotFoundError
from members.models import Member
from members.services import ensure_member_active
from points.models import PointsTransfer

from . import idempotency
from .configuration import limit_in_force
from .ledger import current_policy, last_valid_day, lock_accounts, move_points, save_account
from .purchases import Outcome, _replay, iso


class TransferDisabled(DomainError):
    code = "transfer_disabled"
    default_detail = _("Points transfers are switched off in the points policy.")


class NotSameHousehold(DomainError):
    code = "not_same_household"
    default_detail = _("Points move only between two members of one household.")


class TransferLimit(DomainError):
    code = "transfer_limit"
    default_detail = _("The transfer would take the member over her daily transfer limit.")


def transfer_representation(transfer, lots):
    """What the sender sees: her balance after it and the expiry of what moved; never the receiver's balance."""
    return {
        "id": str(transfer.pk),
        "member": str(transfer.from_member_id),
        "to": str(transfer.to_member_id),
        "points": transfer.points,
        "reason": transfer.reason,
        "business_date": transfer.business_date.isoformat(),
        "created_at": iso(transfer.created_at),
        "balance": transfer.out_entry.balance_after,
        "lots": [
            {"points": lot.points, "expires_on": last_valid_day(lot.expires_at).isoformat() if lot.expires_at else None}
            for lot in lots
        ],
    }


def transfer_points(*, actor, scope, key, fingerprint, from_member_id, to_member_id, points, reason=""):
    """Move `points` available points from one member to another member of her household: two entries of kind
    transfer in one transaction; the points leave first-expiring-first and arrive as lots with the expiry they had.

    Idempotent on the key. Locks both accounts in member-id order (`lock_accounts`), so A→B and B→A at the same
    moment wait for each other and never deadlock; the members' status, household, the daily limit (points sent
    per member per business date) and the balance are checked after the locks. Writes an audit row. Raises
    InvalidInput (to herself), TransferDisabled, NotFoundError (no such sender), MemberFrozen / MemberAnonymised,
    NotSameHousehold (also for a receiver that does not exist), TransferLimit, InsufficientPoints."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        if from_member_id == to_member_id:
            raise InvalidInput({"to": [gettext("A member cannot transfer points to herself.")]})
        policy = current_policy(now)
        if not policy.transfers_enabled:
            raise TransferDisabled()
        ids = [from_member_id, to_member_id]
        found = set(Member.objects.filter(pk__in=ids).values_list("pk", flat=True))  # never deleted: safe unlocked
        if from_member_id not in found:
            raise NotFoundError()
        if to_member_id not in found:
            raise NotSameHousehold()  # to a member, an unknown id is just not one of her household
        accounts = lock_accounts(ids)
        members = Member.objects.in_bulk(ids)  # read after the locks: a freeze or unlink has committed or waits
        sender, receiver = members[from_member_id], members[to_member_id]
        ensure_member_active(sender)
        ensure_member_active(receiver)
        if sender.household_id is None or sender.household_id != receiver.household_id:
            raise NotSameHousehold()
        today = business_date(now)
        sent = (
            PointsTransfer.objects.filter(from_member_id=sender.pk, business_date=today).aggregate(total=Sum("points"))[
                "total"
            ]
            or 0
        )
        limit = limit_in_force(policy, "transfer_daily_limit")
        if sent + points > limit:
            raise TransferLimit(limit=limit, sent_today=sent)
        note = f": {reason}" if reason else ""
        out_entry, in_entry = move_points(
            accounts[sender.pk],
            accounts[receiver.pk],
            points=points,
            actor=actor,
            now=now,
            reason_out=f"transfer to {receiver.member_no}{note}",
            reason_in=f"transfer from {sender.member_no}{note}",
        )
        transfer = PointsTransfer.objects.create(
            from_member=sender,
            to_member=receiver,
            points=points,
            business_date=today,
            reason=reason,
            out_entry=out_entry,
            in_entry=in_entry,
            actor=actor,
            created_at=now,
        )
        record_audit(
            actor=actor,
            action="points.transferred",
            target=sender,
            new={"transfer": transfer.pk, "to": receiver.pk, "points": points, "reason": reason},
        )
        save_account(accounts[sender.pk])
        save_account(accounts[receiver.pk])
        # Her lots by expiry (lot_member_expiry_idx), then this entry's: lots have no index by entry.
        lots = in_entry.lots.filter(member_id=receiver.pk).order_by("expires_at", "id")
        result = transfer_representation(transfer, lots)
        idempotency.complete(claim, response=result)
    return Outcome(result)
