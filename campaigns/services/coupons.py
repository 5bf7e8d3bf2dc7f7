"""Every write on coupons (SPEC §10), by name: templates (create, change, delete), issuing, check and redeem at the
counter, undo, the return of a coupon when its order is refunded. Views, the admin, the rewards hook and the
registration hook call these; the nightly expiry is campaigns.jobs.

Locks: issuing locks the template row (so `issued_count` and the per-member counts are read and written by one
issue at a time: total quantity and limits hold under concurrency); redeem, undo and the refund return lock the
coupon row, then check, then write (so of 20 tills redeeming one code one wins, the others see it used). Neither
takes a member's account lock, so they stand outside the points lock order; a reward or registration issue runs
inside the points transaction, after its account lock, and takes the template lock after it.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Min, Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns import coupon_lists
from campaigns.coupon_codes import MalformedCode, new_code, normalise
from campaigns.models_coupons import (
    Coupon,
    CouponBatch,
    CouponKind,
    CouponSource,
    CouponStatus,
    CouponTemplate,
    IssueOn,
)
from loyalty.audit import record_audit
from loyalty.clock import business_date
from loyalty.errors import DomainError, InvalidInput, NotFoundError
from members.models import Member, MemberStatus, Store
from points.services import idempotency

CENT = Decimal("0.01")
MAX_MEMBERS_PER_ISSUE = 1000
# Terms a coupon already issued was issued under: they stay once a coupon exists.
MONEY_TERMS = (
    "kind",
    "amount_off",
    "percent_off",
    "max_discount",
    "threshold",
    "valid_days",
    "valid_from",
    "valid_until",
    "stores",
    "categories",
    "stackable_with_points",
)
TEMPLATE_FIELDS = (
    *MONEY_TERMS,
    "name",
    "description",
    "total_quantity",
    "per_member_limit",
    "issue_on",
    "reward_code",
    "is_active",
)

# Why a coupon cannot be used (the check's `reason`, the 409's `reason`).
REASON_VOID = "void"
REASON_USED = "used"
REASON_EXPIRED = "expired"
REASON_NOT_YET_VALID = "not_yet_valid"
REASON_NOT_OWNER = "not_owner"
REASON_WRONG_STORE = "wrong_store"
REASON_WRONG_CATEGORY = "wrong_category"
REASON_BELOW_THRESHOLD = "below_threshold"
REASON_NOT_STACKABLE = "not_stackable_with_points"
REASONS = (
    REASON_VOID,
    REASON_USED,
    REASON_EXPIRED,
    REASON_NOT_YET_VALID,
    REASON_NOT_OWNER,
    REASON_WRONG_STORE,
    REASON_WRONG_CATEGORY,
    REASON_BELOW_THRESHOLD,
    REASON_NOT_STACKABLE,
)


class CouponUsed(DomainError):
    code = "coupon_used"
    default_detail = _("This coupon was already used.")


class CouponExpired(DomainError):
    code = "coupon_expired"
    default_detail = _("This coupon has expired.")


class CouponNotApplicable(DomainError):
    code = "coupon_not_applicable"
    default_detail = _("This coupon cannot be used on this order.")


class CouponNotUsed(DomainError):
    code = "coupon_not_used"
    default_detail = _("This coupon is not used: there is nothing to undo.")


class UndoWindowPassed(DomainError):
    code = "undo_window_passed"
    default_detail = _("The time to undo this use has passed; refund the order to return the coupon.")


class TemplateInUse(DomainError):
    code = "template_in_use"
    default_detail = _("Coupons were issued from this template: its terms stay (deactivate it, or create a new one).")


class TemplateInactive(DomainError):
    code = "template_inactive"
    default_detail = _("This coupon template is not active, or its validity has ended.")


class OutOfStock(DomainError):
    code = "out_of_stock"
    default_detail = _("Not enough coupons left of this template's total quantity.")


class LimitReached(DomainError):
    code = "limit_reached"
    default_detail = _("These members would hold more coupons of this template than its per-member limit.")


@dataclass
class Outcome:
    """A service's answer: the result body, and whether it replays an earlier identical request."""

    result: dict
    replayed: bool = False
    status_code: int = 201


def _replay(claim):
    return Outcome(idempotency.replayed_response(claim.replay), replayed=True, status_code=claim.replay.status_code)


def money(value):
    return None if value is None else f"{Decimal(value).quantize(CENT):.2f}"


def parse_code(text, field="code"):
    """The stored form of a typed or scanned code; InvalidInput (400 invalid) for a malformed one or a wrong check
    character, before any lookup."""
    try:
        return normalise(text)
    except MalformedCode as error:
        raise InvalidInput({field: [str(error)]}, detail=str(error)) from None


# --- Templates ---------------------------------------------------------------------------------------------------


def check_template_terms(values):
    """The terms a template needs for its kind and validity, and stores that exist. InvalidInput otherwise."""
    errors = {}
    kind = values.get("kind")
    if kind == CouponKind.AMOUNT_OFF and not values.get("amount_off"):
        errors["amount_off"] = [gettext("An amount_off coupon needs the amount it takes off (more than 0).")]
    if kind == CouponKind.PERCENT_OFF and not values.get("percent_off"):
        errors["percent_off"] = [gettext("A percent_off coupon needs its percent (more than 0, at most 100).")]
    if kind != CouponKind.PERCENT_OFF and values.get("percent_off") is not None:
        errors["percent_off"] = [gettext("Only a percent_off coupon takes a percent.")]
    if kind != CouponKind.PERCENT_OFF and values.get("max_discount") is not None:
        errors["max_discount"] = [gettext("Only a percent_off coupon has a cap.")]
    fixed = values.get("valid_from") is not None or values.get("valid_until") is not None
    if values.get("valid_days") is not None and fixed:
        errors["valid_days"] = [gettext("Give valid_days or valid_from and valid_until, not both.")]
    elif values.get("valid_days") is None:
        if values.get("valid_from") is None or values.get("valid_until") is None:
            errors["valid_days"] = [gettext("Give valid_days (N days from issue) or both valid_from and valid_until.")]
        elif values["valid_until"] < values["valid_from"]:
            errors["valid_until"] = [gettext("valid_until is before valid_from.")]
    stores = list(values.get("stores") or [])
    unknown = sorted(set(stores) - set(Store.objects.filter(code__in=stores).values_list("code", flat=True)))
    if unknown:
        errors["stores"] = [gettext("No store with the code %(code)s.") % {"code": code} for code in unknown]
    quantity, issued = values.get("total_quantity"), values.get("issued_count", 0)
    if quantity is not None and quantity < issued:
        errors["total_quantity"] = [
            gettext("%(issued)s coupons are issued already: the total cannot be less.") % {"issued": issued}
        ]
    if errors:
        raise InvalidInput(errors)


def _terms_of(template):
    return {name: getattr(template, name) for name in TEMPLATE_FIELDS}


def create_template(*, actor, values):
    values = {name: value for name, value in values.items() if name in TEMPLATE_FIELDS}
    check_template_terms(values)
    with transaction.atomic(durable=True):
        template = CouponTemplate.objects.create(**values, created_by=actor)
        record_audit(actor=actor, action="coupon_template.created", target=template, new=_terms_of(template))
    return template


def change_template(*, actor, template_id, changes):
    """Change a template. Its money terms (MONEY_TERMS) stay once a coupon was issued from it (TemplateInUse);
    its name, description, quantity, limit, automatic issue and activity may change any time (total_quantity
    never below what is issued)."""
    with transaction.atomic(durable=True):
        template = CouponTemplate.objects.select_for_update().get(pk=template_id)
        old = _terms_of(template)
        changes = {name: value for name, value in changes.items() if name in TEMPLATE_FIELDS}
        changed = {name for name, value in changes.items() if old[name] != value}
        if changed & set(MONEY_TERMS) and template.issued_count:
            raise TemplateInUse(fields=sorted(changed & set(MONEY_TERMS)))
        check_template_terms({**old, **changes, "issued_count": template.issued_count})
        for name, value in changes.items():
            setattr(template, name, value)
        template.save()
        if changed:
            record_audit(
                actor=actor,
                action="coupon_template.changed",
                target=template,
                old={name: old[name] for name in sorted(changed)},
                new={name: changes[name] for name in sorted(changed)},
            )
    return template


def delete_template(*, actor, template_id):
    """Delete a template no coupon was issued from and no campaign names; TemplateInUse otherwise (deactivate it
    instead)."""
    with transaction.atomic(durable=True):
        template = CouponTemplate.objects.select_for_update().get(pk=template_id)
        if template.issued_count or Coupon.objects.filter(template=template).exists():
            raise TemplateInUse()
        if template.campaigns.exists():
            raise TemplateInUse(gettext("A campaign issues coupons of this template: change the campaign first."))
        record_audit(actor=actor, action="coupon_template.deleted", target=template, old=_terms_of(template))
        template.delete()


# --- Issuing -----------------------------------------------------------------------------------------------------


def validity_for(template, today):
    """(valid_from, valid_until) of a coupon issued on business date `today`: N days counting that day, or the
    template's fixed dates."""
    if template.valid_days:
        return today, today + timedelta(days=template.valid_days - 1)
    return template.valid_from, template.valid_until


def _ensure_issuable(template, today):
    if not template.is_active or (template.valid_until is not None and template.valid_until < today):
        raise TemplateInactive()


def fresh_codes(count):
    """`count` new codes, none of them in use (a collision, about 1 in 10¹⁶ per code, is drawn again)."""
    codes = set()
    while len(codes) < count:
        wanted = {new_code() for _ in range(count - len(codes))} - codes
        taken = set(Coupon.objects.filter(code__in=wanted).values_list("code", flat=True))
        codes |= wanted - taken
    return list(codes)


def _issuable_members(member_ids):
    statuses = dict(Member.objects.filter(pk__in=set(member_ids)).values_list("pk", "status"))
    missing = sorted({member_id for member_id in member_ids if member_id not in statuses})
    inactive = sorted(
        {member_id for member_id in member_ids if statuses.get(member_id) not in (None, MemberStatus.ACTIVE)}
    )
    errors = [gettext("No member with the id %(member_id)s.") % {"member_id": member_id} for member_id in missing]
    errors += [gettext("Member %(member_id)s is not active.") % {"member_id": member_id} for member_id in inactive]
    if errors:
        raise InvalidInput({"members": errors})


def issue_within(*, actor, template_id, member_ids, source, source_ref="", now=None):
    """Issue one coupon per entry of `member_ids` (a member listed twice gets two), inside the caller's
    transaction. Locks the template row, then checks: active and not ended (TemplateInactive), the members exist
    and are active (InvalidInput), the per-member limit counting her coupons that are not void (LimitReached, with
    `members`), the total quantity (OutOfStock, with `left`); all or nothing. Returns the new coupons."""
    now = now or timezone.now()
    today = business_date(now)
    template = CouponTemplate.objects.select_for_update().get(pk=template_id)
    _ensure_issuable(template, today)
    _issuable_members(member_ids)
    wanted = Counter(member_ids)
    if template.per_member_limit is not None:
        held = dict(
            Coupon.objects.filter(template=template, member_id__in=wanted)
            .exclude(status=CouponStatus.VOID)
            .values_list("member_id")
            .annotate(count=Count("id"))
        )
        over = sorted(m for m, n in wanted.items() if held.get(m, 0) + n > template.per_member_limit)
        if over:
            raise LimitReached(members=[str(m) for m in over], limit=template.per_member_limit)
    count = len(member_ids)
    # The lock makes this the only writer of issued_count; the condition is what the CHECK holds anyway.
    room = Q(total_quantity__isnull=True) | Q(total_quantity__gte=F("issued_count") + count)
    if not CouponTemplate.objects.filter(room, pk=template.pk).update(issued_count=F("issued_count") + count):
        raise OutOfStock(left=template.total_quantity - template.issued_count)
    valid_from, valid_until = validity_for(template, today)
    coupons = [
        Coupon(
            code=code,
            template=template,
            member_id=member_id,
            valid_from=valid_from,
            valid_until=valid_until,
            issued_at=now,
            source=source,
            source_ref=source_ref,
            issued_by=actor,
        )
        for member_id, code in zip(member_ids, fresh_codes(count), strict=True)
    ]
    Coupon.objects.bulk_create(coupons)
    return coupons


def issue_coupons(*, actor, scope, key, fingerprint, template_id, member_ids, source):
    """Issue a template's coupons to up to 1,000 listed members (issue_within's checks, all or nothing), as one
    retried-safe write: idempotent on (scope, key). Audited."""
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        coupons = issue_within(actor=actor, template_id=template_id, member_ids=member_ids, source=source)
        record_audit(
            actor=actor,
            action="coupons.issued",
            target=coupons[0].template,
            new={"source": source, "members": [str(c.member_id) for c in coupons], "count": len(coupons)},
        )
        result = {"issued": [{"member": str(c.member_id), "code": c.code} for c in coupons]}
        idempotency.complete(claim, response=result)
    return Outcome(result)


def start_batch(*, actor, scope, key, fingerprint, template_id, tag=None, segment=None, member_list=None):
    """A bulk issue to the members of a tag or of an RFM segment (as of the newest completed RFM run), or to an
    uploaded list (`member_list`: a campaigns.coupon_lists.MemberList, checked; its lines are staged by COPY,
    streamed from the file), as a job: records the batch with the member id range (a list: the lines) to walk,
    and after commit sends it to the workers (campaigns.tasks.run_coupon_batch). Checks now what it can (template
    issuable, tag or segment exists); quantity and limits are applied per chunk (members over them are skipped
    and counted; a list's lines are written to its rejects with the reason). Idempotent on (scope, key): a retry
    answers the same batch. Returns 202 with the batch."""
    from campaigns.tasks import run_coupon_batch
    from members.jobs import latest_rfm_date
    from members.models import Segment, Tag

    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        template = CouponTemplate.objects.select_for_update().get(pk=template_id)
        _ensure_issuable(template, business_date())
        rfm_as_of = None
        if tag is not None and not Tag.objects.filter(code=tag).exists():
            raise InvalidInput({"tag": [gettext("No tag with the code %(tag)s.") % {"tag": tag}]})
        if segment is not None:
            if segment not in Segment.values:
                raise InvalidInput({"segment": [gettext("No segment %(segment)s.") % {"segment": segment}]})
            rfm_as_of = latest_rfm_date()
            if rfm_as_of is None:
                raise InvalidInput({"segment": [gettext("No RFM run has completed yet: members have no segment.")]})
        if member_list is not None:
            list_name, list_key = member_list.name, member_list.key_column
            bounds = {"low": 2, "high": member_list.last_line}  # a list's lines (the header is line 1)
        else:
            list_name, list_key = "", ""
            bounds = Member.objects.aggregate(low=Min("id"), high=Max("id"))
        batch = CouponBatch.objects.create(
            template=template,
            tag=tag or "",
            segment=segment or "",
            rfm_as_of=rfm_as_of,
            list_name=list_name,
            list_key=list_key,
            next_member_id=bounds["low"] or 0,
            last_member_id=bounds["high"] if bounds["high"] is not None else -1,
            created_by=actor,
        )
        if member_list is not None:
            coupon_lists.stage_lines(batch, member_list)
        record_audit(
            actor=actor,
            action="coupons.batch_started",
            target=template,
            new={"batch": batch.pk, "tag": tag, "segment": segment, "list": list_name or None},
        )
        result = batch_representation(batch)
        idempotency.complete(claim, response=result, status_code=202)
        transaction.on_commit(lambda: run_coupon_batch.delay(batch.pk))
    return Outcome(result, status_code=202)


def batch_representation(batch):
    return {
        "id": str(batch.pk),
        "template": str(batch.template_id),
        "target": {"tag": batch.tag or None, "segment": batch.segment or None, "list": batch.list_name or None},
        "status": batch.status,
        "issued": batch.issued,
        "skipped_over_limit": batch.over_limit,
        "skipped_over_quantity": batch.over_quantity,
        "rejected": batch.rejected,
        "rejects": f"/api/v1/coupon-batches/{batch.pk}/rejects/" if batch.list_key else None,
        "error": batch.error or None,
        "created_at": iso(batch.created_at),
        "finished_at": iso(batch.finished_at),
    }


def issue_on_registration(member):
    """members.extensions.member_registered (after the registration committed): a coupon of every active template
    flagged `registration`, each in its own transaction. A template that is used up, ended, or whose limit she
    reached is skipped."""
    templates = CouponTemplate.objects.filter(is_active=True, issue_on=IssueOn.REGISTRATION).order_by("id")
    for template_id in templates.values_list("id", flat=True):
        try:
            with transaction.atomic():  # a skipped template leaves nothing behind
                issue_within(
                    actor="registration",
                    template_id=template_id,
                    member_ids=[member.pk],
                    source=CouponSource.REGISTRATION,
                )
        except (OutOfStock, LimitReached, TemplateInactive):
            continue


def issue_for_reward(redemption):
    """points.hooks reward fulfiller, inside the redemption's transaction (after her points account lock, then the
    template's): a reward of kind coupon whose code an active template names in `reward_code` issues that many
    real coupons (source `reward`, source_ref `redemption:<id>`); the first one's code is the redemption's code.
    The template's quantity and limit refuse the redemption (out_of_stock, limit_reached); an ended template
    reward_unavailable. None for other rewards."""
    from points.models import RewardKind
    from points.services.spending import RewardUnavailable

    reward = redemption.reward
    if reward.kind != RewardKind.COUPON:
        return None
    template_id = (
        CouponTemplate.objects.filter(reward_code=reward.code, is_active=True).values_list("id", flat=True).last()
    )
    if template_id is None:
        return None
    try:
        issued = issue_within(
            actor=redemption.actor,
            template_id=template_id,
            member_ids=[redemption.member_id] * redemption.quantity,
            source=CouponSource.REWARD,
            source_ref=f"redemption:{redemption.pk}",
        )
    except TemplateInactive:
        raise RewardUnavailable() from None
    return issued[0].code


def void_for_cancelled_redemption(redemption):
    """points.hooks cancel listener: the coupons a cancelled redemption issued are void; one already used refuses
    the cancel (CouponUsed). Locks the coupon rows."""
    issued = list(
        Coupon.objects.select_for_update(no_key=True).filter(
            member_id=redemption.member_id, source=CouponSource.REWARD, source_ref=f"redemption:{redemption.pk}"
        )
    )
    if any(coupon.status == CouponStatus.USED for coupon in issued):
        raise CouponUsed(gettext("A coupon of this redemption was used: the redemption cannot be cancelled."))
    Coupon.objects.filter(pk__in=[coupon.pk for coupon in issued]).update(
        status=CouponStatus.VOID, status_changed_at=timezone.now()
    )


def move_coupons(merge):
    """A member merge's coupons part (members.services.merge.merge_steps): the duplicate's coupons, whatever their
    status, belong to the survivor (the per-member limits count them for her from now on)."""
    moved = Coupon.objects.filter(member_id=merge.duplicate.pk).update(member_id=merge.survivor.pk)
    return {"coupons": moved} if moved else {}


# --- At the counter ----------------------------------------------------------------------------------------------


def discount_for(template, amount):
    """What the coupon takes off an order of `amount` (never more than the amount): amount_off its amount; a
    percent_off coupon its percent, rounded half up to the cent, capped at max_discount; a gift or free item its
    value (amount_off), 0 without one."""
    amount = Decimal(amount)
    if template.kind == CouponKind.PERCENT_OFF:
        value = (amount * template.percent_off / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        if template.max_discount is not None:
            value = min(value, template.max_discount)
    else:
        value = template.amount_off or Decimal(0)
    return min(value, amount).quantize(CENT)


def refusal_reason(coupon, *, store, amount, member_id=None, categories=None, points_used=0, today=None):
    """Why `coupon` cannot be used on this order now, or None. In this order: void, used, expired (by status or
    by date), not yet valid, not the owner (when the member is given), wrong store (the template's stores), wrong
    category (when the order's categories are given and none is the template's), below the threshold, not
    stackable with points as cash (the template says so and the order uses `points_used` > 0 points as cash)."""
    today = today or business_date()
    template = coupon.template
    if coupon.status == CouponStatus.VOID:
        return REASON_VOID
    if coupon.status == CouponStatus.USED:
        return REASON_USED
    if coupon.status == CouponStatus.EXPIRED or coupon.valid_until < today:
        return REASON_EXPIRED
    if coupon.valid_from > today:
        return REASON_NOT_YET_VALID
    if member_id is not None and member_id != coupon.member_id:
        return REASON_NOT_OWNER
    if template.stores and (store is None or store.code not in template.stores):
        return REASON_WRONG_STORE
    if template.categories and categories is not None and not set(categories) & set(template.categories):
        return REASON_WRONG_CATEGORY
    if template.threshold is not None and Decimal(amount) < template.threshold:
        return REASON_BELOW_THRESHOLD
    if not template.stackable_with_points and points_used:
        return REASON_NOT_STACKABLE
    return None


def points_used_on_order(*, source, order_no):
    """The points already used as cash on this order (points' Deduction of the same source and order_no, less
    what a refund returned): a coupon not stackable with points is refused on it even when the till does not
    say so."""
    from points.models import Deduction

    used = Deduction.objects.filter(source=source, order_no=order_no).values_list("points", "points_returned").first()
    return 0 if used is None else used[0] - used[1]


def _coupon_by_code(code, *, lock=False):
    queryset = Coupon.objects.select_related("template", "store")
    if lock:
        # The coupon row only (not the template's): redemptions of different coupons never wait on each other.
        queryset = queryset.select_for_update(no_key=True, of=("self",))
    coupon = queryset.filter(code=code).first()
    if coupon is None:
        raise NotFoundError(gettext("No coupon with this code."))
    return coupon


def check_coupon(*, code, store, amount, member_id=None, categories=None, points_used=0):
    """Whether the coupon could be used on this order now, why not, and its discount (0.00 when not). Writes
    nothing. NotFoundError for an unknown code."""
    coupon = _coupon_by_code(code)
    reason = refusal_reason(
        coupon, store=store, amount=amount, member_id=member_id, categories=categories, points_used=points_used
    )
    answer = {
        "valid": reason is None,
        "discount": money(discount_for(coupon.template, amount) if reason is None else 0),
        **coupon_terms(coupon),
    }
    if reason is not None:
        answer["reason"] = reason
    return answer


def _refuse(coupon, reason):
    if reason == REASON_USED:
        raise CouponUsed(used_at=iso(coupon.used_at))
    if reason == REASON_EXPIRED:
        raise CouponExpired(valid_until=coupon.valid_until.isoformat())
    raise CouponNotApplicable(
        gettext("This coupon cannot be used on this order: %(reason)s.") % {"reason": reason}, reason=reason
    )


def redeem_coupon(
    *,
    actor,
    scope,
    key,
    fingerprint,
    code,
    order_no,
    store,
    amount,
    source,
    member_id=None,
    categories=None,
    points_used=0,
):
    """Use a coupon on an order, once: locks the coupon row, then checks (refusal_reason; for a template not
    stackable with points, the points used as cash are `points_used` plus those already deducted on this order)
    and marks it used with the order, store and discount. Of concurrent redemptions of one code exactly one wins;
    the others wait for the lock and get CouponUsed. Raises CouponUsed, CouponExpired, CouponNotApplicable (with
    `reason`), NotFoundError. Idempotent on (scope, key): a retry answers the first result."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        claim = idempotency.claim(scope=scope, key=key, fingerprint=fingerprint)
        if claim.replay:
            return _replay(claim)
        coupon = _coupon_by_code(code, lock=True)
        if not coupon.template.stackable_with_points:
            points_used += points_used_on_order(source=source, order_no=order_no)
        reason = refusal_reason(
            coupon,
            store=store,
            amount=amount,
            member_id=member_id,
            categories=categories,
            points_used=points_used,
            today=business_date(now),
        )
        if reason is not None:
            _refuse(coupon, reason)
        coupon.status, coupon.used_at, coupon.status_changed_at = CouponStatus.USED, now, now
        coupon.order_no, coupon.order_amount, coupon.store = order_no, amount, store
        coupon.discount = discount_for(coupon.template, amount)
        coupon.redeemed_source, coupon.redeemed_by = source, actor
        coupon.save()
        result = redemption_representation(coupon)
        idempotency.complete(claim, response=result)
    return Outcome(result)


def _clear_use(coupon, *, status, now):
    coupon.status, coupon.status_changed_at = status, now
    coupon.used_at, coupon.order_no, coupon.order_amount, coupon.discount = None, "", None, None
    coupon.store, coupon.redeemed_source, coupon.redeemed_by = None, "", ""
    coupon.save()


def undo_redemption(*, actor, code, store_ids=None):
    """A clerk takes back a use within settings.COUPON_UNDO_MINUTES of it: the coupon is unused again (the
    nightly job expires it if its validity ended meanwhile). Locks the coupon row. Raises NotFoundError (unknown,
    or used at a store the clerk does not work at), CouponNotUsed, UndoWindowPassed. Audited."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        coupon = _coupon_by_code(code, lock=True)
        if coupon.status == CouponStatus.USED and store_ids is not None and coupon.store_id not in store_ids:
            raise NotFoundError(gettext("No coupon with this code used at your stores."))
        if coupon.status != CouponStatus.USED:
            raise CouponNotUsed()
        if now - coupon.used_at > timedelta(minutes=settings.COUPON_UNDO_MINUTES):
            raise UndoWindowPassed(used_at=iso(coupon.used_at), window_minutes=settings.COUPON_UNDO_MINUTES)
        old = {"status": coupon.status, "order_no": coupon.order_no, "store": coupon.store_id}
        _clear_use(coupon, status=CouponStatus.UNUSED, now=now)
        record_audit(actor=actor, action="coupon.redemption_undone", target=coupon, old=old, new={"status": "unused"})
    return coupon_representation(coupon)


def return_coupons_of_refund(activity):
    """points.hooks activity listener, inside the refund's transaction: when an order is refunded in full, each
    coupon used on it (same source and order_no) is unused again if still valid, else expired. Answers
    `coupons_returned` (codes) in the refund's result when there were any."""
    if activity.kind != "refund" or activity.preview or activity.purchase is None:
        return {}
    purchase = activity.purchase
    if purchase.refunded_amount < purchase.amount:
        return {}
    now = timezone.now()
    today = business_date(now)
    used = Coupon.objects.select_for_update(no_key=True).filter(
        status=CouponStatus.USED, redeemed_source=purchase.source, order_no=purchase.order_no
    )
    returned = []
    for coupon in used.order_by("id"):
        status = CouponStatus.UNUSED if coupon.valid_until >= today else CouponStatus.EXPIRED
        _clear_use(coupon, status=status, now=now)
        if status == CouponStatus.UNUSED:
            returned.append(coupon.code)
    return {"coupons_returned": returned} if returned else {}


# --- Shapes ------------------------------------------------------------------------------------------------------


def iso(value):
    return timezone.localtime(value).isoformat() if value else None


def shown_status(coupon, today=None):
    """An unused coupon past its last day shows as expired before the nightly job marks it."""
    today = today or business_date()
    if coupon.status == CouponStatus.UNUSED and coupon.valid_until < today:
        return CouponStatus.EXPIRED
    return coupon.status


def coupon_terms(coupon):
    template = coupon.template
    return {
        "code": coupon.code,
        "template": str(template.pk),
        "name": template.name,
        "kind": template.kind,
        "member": str(coupon.member_id),
        "valid_from": coupon.valid_from.isoformat(),
        "valid_until": coupon.valid_until.isoformat(),
        "stackable_with_points": template.stackable_with_points,
    }


def coupon_representation(coupon, today=None):
    return {
        **coupon_terms(coupon),
        "status": shown_status(coupon, today),
        "source": coupon.source,
        "issued_at": iso(coupon.issued_at),
        "used_at": iso(coupon.used_at),
        "order_no": coupon.order_no or None,
        "discount": money(coupon.discount),
        "store": coupon.store.code if coupon.store_id else None,
    }


def redemption_representation(coupon):
    return {
        "code": coupon.code,
        "order_no": coupon.order_no,
        "discount": money(coupon.discount),
        "status": coupon.status,
        "member": str(coupon.member_id),
        "template": str(coupon.template_id),
        "store": coupon.store.code if coupon.store_id else None,
        "amount": money(coupon.order_amount),
        "used_at": iso(coupon.used_at),
    }
