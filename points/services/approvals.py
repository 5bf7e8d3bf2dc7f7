"""Adjustments that need a manager (SPEC §2: a clerk may adjust at most ±500 per entry unless a manager approves):
a pending request that moves nothing, then an approval that writes the adjustment once, or a rejection.

Who may decide: a staff user other than the requester (four eyes) whose own role's limit covers the points
(admins: any; marketers: up to the marketer limit; clerks: up to the clerk limit, for members of their own stores
only). The requester may reject (withdraw) her own request.

Over a daily adjustment total (the requester's own, or the member's) a request is the way too. An approved
request is not refused by the daily totals and does not count in the requester's nor the approver's own total
(it is a manager's decision, not an adjustment of theirs); it counts in the member's total of the day, so later
direct adjustments to her that day have that much less room.
"""

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.access import STORE_BOUND_ROLES, staff_role
from loyalty.audit import record_audit
from loyalty.errors import DomainError, NotFoundError, PermissionDeniedError
from members.models import Member
from points.models import AdjustmentRequest, AdjustmentRequestStatus

from . import idempotency
from .ledger import current_policy, lock_account, save_account
from .purchases import Outcome, _replay, iso
from .spending import adjustment_limit, entry_representation, write_adjustment


class AlreadyDecided(DomainError):
    code = "already_decided"
    default_detail = _("The adjustment request was already approved or rejected.")


class ApprovalLimit(DomainError):
    status = 403
    code = "approval_limit"
    default_detail = _("The adjustment is over your own role's limit: a manager with a higher limit must approve it.")


class OwnRequest(DomainError):
    status = 403
    code = "own_request"
    default_detail = _("Someone other than the requester must approve it (four eyes).")


def staff_actor(user):
    return f"staff:{user.get_username()}"


def adjustment_request_representation(adjustment):
    decided_by = adjustment.decided_by
    return {
        "id": str(adjustment.pk),
        "member": str(adjustment.member_id),
        "points": adjustment.points,
        "reason": adjustment.reason,
        "status": adjustment.status,
        "requested_by": staff_actor(adjustment.requested_by),
        "requested_at": iso(adjustment.requested_at),
        "decided_by": staff_actor(decided_by) if decided_by else None,
        "decided_at": iso(adjustment.decided_at),
        "decision_note": adjustment.decision_note,
        "entry": entry_representation(adjustment.entry) if adjustment.entry else None,
    }


def request_adjustment(*, requester, scope, key, fingerprint, member_id, points, reason):
    """Ask a manager to approve an adjustment: a pending request and an audit row; no balance is read or
    written, so no lock. Idempotent on the key (a retry answers the same request, 202).
    Raises PermissionDeniedError (no staff role), NotFoundError."""
    actor = staff_actor(requester)
    if staff_role(requester) is None:
        raise PermissionDeniedError()
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        member = Member.objects.filter(pk=member_id).first()
        if member is None:
            raise NotFoundError()
        adjustment = AdjustmentRequest.objects.create(
            member=member, points=points, reason=reason, requested_by=requester, requested_at=now
        )
        record_audit(
            actor=actor,
            action="points.adjustment_requested",
            target=member,
            new={"request": adjustment.pk, "points": points, "reason": reason},
        )
        result = adjustment_request_representation(adjustment)
        idempotency.complete(claim, response=result, status_code=202)
    return Outcome(result, status_code=202)


def approve_adjustment(*, approver, request_id, note=""):
    """Approve a pending request: its adjustment is written through the ledger path of a direct adjustment
    (reference `adjustment-request:<id>`, actor the approver), with an audit row.

    Locks the member's account first, then the request, and checks under those locks: two managers approving at
    once make one adjustment, the other gets AlreadyDecided. Raises NotFoundError, AlreadyDecided,
    PermissionDeniedError, OwnRequest, ApprovalLimit, InsufficientPoints (a deduction the balance no longer
    covers: the request stays pending)."""
    now = timezone.now()
    actor = staff_actor(approver)
    with transaction.atomic(durable=True):
        account, adjustment = _lock_pending(request_id)
        policy = current_policy(now)
        _ensure_may_decide(approver, adjustment, policy)
        entry = write_adjustment(
            account,
            policy=policy,
            points=adjustment.points,
            actor=actor,
            reason=adjustment.reason,
            reference=f"adjustment-request:{adjustment.pk}",
            now=now,
        )
        _decide(adjustment, approver, AdjustmentRequestStatus.APPROVED, note, now, entry=entry)
        record_audit(
            actor=actor,
            action="points.adjustment_approved",
            target=adjustment.member,
            old={"status": AdjustmentRequestStatus.PENDING},
            new={
                "request": adjustment.pk,
                "status": adjustment.status,
                "points": adjustment.points,
                "requested_by": staff_actor(adjustment.requested_by),
                "entry": entry.pk,
                "note": note,
            },
        )
        save_account(account)
    return adjustment_request_representation(adjustment)


def reject_adjustment(*, approver, request_id, note=""):
    """Reject a pending request (or, by its requester, withdraw it): nothing moves; an audit row. Same locks and
    checks as approving, except that the requester may reject her own. Raises NotFoundError, AlreadyDecided,
    PermissionDeniedError, OwnRequest, ApprovalLimit."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        _account, adjustment = _lock_pending(request_id)
        _ensure_may_decide(approver, adjustment, current_policy(now), may_withdraw=True)
        _decide(adjustment, approver, AdjustmentRequestStatus.REJECTED, note, now)
        record_audit(
            actor=staff_actor(approver),
            action="points.adjustment_rejected",
            target=adjustment.member,
            old={"status": AdjustmentRequestStatus.PENDING},
            new={
                "request": adjustment.pk,
                "status": adjustment.status,
                "points": adjustment.points,
                "requested_by": staff_actor(adjustment.requested_by),
                "note": note,
            },
        )
    return adjustment_request_representation(adjustment)


def _lock_pending(request_id):
    """The member's account, then the request row, locked; the request must still be pending."""
    member_id = AdjustmentRequest.objects.filter(pk=request_id).values_list("member_id", flat=True).first()
    if member_id is None:
        raise NotFoundError()
    account = lock_account(member_id)
    adjustment = (
        AdjustmentRequest.objects.select_for_update(no_key=True, of=("self",))
        .select_related("member", "requested_by")
        .get(pk=request_id)
    )
    if adjustment.status != AdjustmentRequestStatus.PENDING:
        raise AlreadyDecided(request_status=adjustment.status)
    return account, adjustment


def _ensure_may_decide(approver, adjustment, policy, *, may_withdraw=False):
    role = staff_role(approver)
    if role is None:
        raise PermissionDeniedError()
    if role in STORE_BOUND_ROLES and not approver.stores.filter(pk=adjustment.member.home_store_id).exists():
        raise PermissionDeniedError(gettext("You act for the members of your own stores only."))
    if adjustment.requested_by_id == approver.pk:
        if may_withdraw:
            return
        raise OwnRequest()
    limit = adjustment_limit(role, policy)
    if limit is not None and abs(adjustment.points) > limit:
        raise ApprovalLimit(limit=limit)


def _decide(adjustment, approver, status, note, now, entry=None):
    adjustment.status, adjustment.decided_by, adjustment.decided_at = status, approver, now
    adjustment.decision_note, adjustment.entry = note[:200], entry
    adjustment.save(update_fields=["status", "decided_by", "decided_at", "decision_note", "entry"])
