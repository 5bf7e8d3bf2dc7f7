"""Merging a duplicate member into the one who survives (SPEC §1: ledgers move, balances add, the duplicate is
closed).

One durable transaction locks both members' rows in the written order (members.locking), checks them, then asks
each higher app to move its part (points: lots, balances, redemptions; tiers: growth and the better tier) through
`merge_steps`, and finally moves what members owns (purchases, tags, referrals, the identifiers the survivor lacks)
and closes the duplicate: status `merged`, `merged_into` the survivor. She keeps her card number (and any phone or
external id the survivor already has one of) on the closed row, where they stay reserved and lead to the survivor.
"""

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import events
from loyalty.audit import record_audit
from loyalty.errors import DomainError, InvalidInput, NotFoundError
from loyalty.registry import ExtensionPoint
from members.locking import lock_members
from members.models import Member, MemberMerge, MemberStatus, MemberTag, Purchase, WechatIdentity

from .membership import MemberAnonymised, MemberFrozen, MemberMerged, _audit_value, member_event_data

merge_steps = ExtensionPoint(
    "member_merge_steps",
    "step(merge: MergeContext) -> dict moves the registering app's rows of merge.duplicate to merge.survivor, in the "
    "merge's transaction after both members are locked (members.locking), writing through that app's own services; "
    "it returns what it moved ({name: value}), which goes into the merge's answer and audit row. Registered in "
    "AppConfig.ready() (INSTALLED_APPS order: points, then tiers, then stored value).",
)

# Profile fields a survivor takes from her duplicate when she has none (her own values always win).
PROFILE_FIELDS = ("name", "email", "birthday", "home_store")


class AlreadyMerged(DomainError):
    code = "already_merged"
    default_detail = _("The duplicate was already merged into another member.")


class MergeRequestConflict(DomainError):
    code = "idempotency_conflict"
    default_detail = _("This idempotency key was used with a different request.")


@dataclass
class MergeContext:
    """What a merge step works with: both members (locked), the merge row (its id makes references), who and why."""

    survivor: Member
    duplicate: Member
    record: MemberMerge
    actor: str
    reason: str
    now: datetime
    moved: dict = field(default_factory=dict)

    @property
    def reference(self):
        return f"merge:{self.record.pk}"


@dataclass
class MergeOutcome:
    result: dict
    replayed: bool = False
    status_code: int = 201


def merge_fingerprint(survivor_id, duplicate_id, reason):
    text = json.dumps([str(survivor_id), str(duplicate_id), reason], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def merge_members(*, actor, survivor_id, duplicate_id, reason, idempotency_scope="", idempotency_key=""):
    """Merge the member `duplicate_id` into `survivor_id`. Returns a MergeOutcome (201, or the original answer).

    Locks both members (members.locking: both points accounts, both tier rows, both member rows, in id order),
    then checks under the locks. Idempotent: the same duplicate merged into the same survivor again answers the
    original result (200, replayed); the same Idempotency-Key with the same request answers it with its original
    status, with another request MergeRequestConflict (409 idempotency_conflict).
    Raises InvalidInput (into herself, no such duplicate), NotFoundError (no such survivor), AlreadyMerged (the
    duplicate was merged into someone else), MemberMerged (the survivor is herself a merged duplicate: merge into
    her survivor), MemberAnonymised, MemberFrozen (either member: unfreeze first, so frozen points stay frozen).
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput({"reason": [gettext("Say why these members are merged.")]})
    if str(survivor_id) == str(duplicate_id):
        raise InvalidInput({"duplicate": [gettext("A member cannot be merged into herself.")]})
    fingerprint = merge_fingerprint(survivor_id, duplicate_id, reason)
    now = timezone.now()
    with transaction.atomic(durable=True):
        if idempotency_key:
            earlier = MemberMerge.objects.filter(
                idempotency_scope=idempotency_scope, idempotency_key=idempotency_key
            ).first()
            if earlier is not None:
                return _replay_for_key(earlier, fingerprint)
        members = lock_members([survivor_id, duplicate_id])
        survivor, duplicate = members.get(int(survivor_id)), members.get(int(duplicate_id))
        if survivor is None:
            raise NotFoundError(gettext("No member with this id."))
        if duplicate is None:
            raise InvalidInput({"duplicate": [gettext("No member with this id.")]})
        if duplicate.merged_into_id is not None:
            return _answer_merged_duplicate(duplicate, survivor, idempotency_scope, idempotency_key, fingerprint)
        _check_mergeable(survivor, duplicate)
        record = _claim(
            survivor=survivor,
            duplicate=duplicate,
            actor=actor,
            reason=reason,
            now=now,
            scope=idempotency_scope,
            key=idempotency_key,
            fingerprint=fingerprint,
        )
        merge = MergeContext(survivor=survivor, duplicate=duplicate, record=record, actor=actor, reason=reason, now=now)
        for step in merge_steps:
            merge.moved.update(step(merge) or {})
        merge.moved.update(_move_member_rows(merge))
        result = _result(merge)
        _close_duplicate(merge)
        record.result = json.dumps(result, cls=DjangoJSONEncoder, ensure_ascii=False)
        record.save(update_fields=["result"])
    return MergeOutcome(result)


def _replay_for_key(earlier, fingerprint):
    if earlier.request_hash != fingerprint:
        raise MergeRequestConflict()
    return MergeOutcome(earlier.answer, replayed=True, status_code=201)


def _answer_merged_duplicate(duplicate, survivor, scope, key, fingerprint):
    """The duplicate is closed already: the same merge again answers its original result, another is refused."""
    record = MemberMerge.objects.filter(duplicate=duplicate).first()
    if record is None or record.survivor_id != survivor.pk:
        raise AlreadyMerged(merged_into=str(duplicate.merged_into_id))
    if key and record.idempotency_key == key and record.idempotency_scope == scope:
        return _replay_for_key(record, fingerprint)  # a concurrent retry that waited for the first one's locks
    return MergeOutcome(record.answer, replayed=True, status_code=200)


def _check_mergeable(survivor, duplicate):
    if survivor.merged_into_id is not None:
        raise MemberMerged(
            gettext("The survivor was herself merged into another member; merge into that member."),
            merged_into=str(survivor.merged_into_id),
        )
    for member in (survivor, duplicate):
        if member.status == MemberStatus.ANONYMISED:
            raise MemberAnonymised(member=str(member.pk))
        if member.status == MemberStatus.FROZEN:
            raise MemberFrozen(gettext("A frozen member cannot be merged; unfreeze her first."), member=str(member.pk))


def _claim(*, survivor, duplicate, actor, reason, now, scope, key, fingerprint):
    try:
        with transaction.atomic():  # a savepoint: the same key taken by a concurrent merge of another pair
            return MemberMerge.objects.create(
                survivor=survivor,
                duplicate=duplicate,
                reason=reason[:200],
                actor=actor[:120],
                idempotency_scope=scope if key else "",
                idempotency_key=key,
                request_hash=fingerprint,
                created_at=now,
            )
    except IntegrityError:
        raise MergeRequestConflict() from None


def _move_member_rows(merge):
    """What members owns: purchases, tags (union), referrals, the survivor's missing identifiers, profile and
    household (the duplicate leaves hers; the survivor joins it when she has none)."""
    survivor, duplicate = merge.survivor, merge.duplicate
    purchases = Purchase.objects.filter(member=duplicate).update(member=survivor)
    have = set(MemberTag.objects.filter(member=survivor).values_list("tag_id", flat=True))
    theirs = list(MemberTag.objects.filter(member=duplicate).select_related("tag").order_by("tag__code"))
    MemberTag.objects.bulk_create(
        [
            MemberTag(member=survivor, tag_id=row.tag_id, added_at=row.added_at, added_by=row.added_by)
            for row in theirs
            if row.tag_id not in have
        ]
    )
    MemberTag.objects.filter(member=duplicate).delete()
    referrals = Member.objects.filter(referrer=duplicate).exclude(pk=survivor.pk).update(referrer=survivor)
    if survivor.referrer_id == duplicate.pk:
        survivor.referrer = None
    # Members merged into the duplicate before now lead to the survivor (lookups follow one pointer).
    Member.objects.filter(merged_into=duplicate).update(merged_into=survivor)
    household = duplicate.household_id if duplicate.household_id and not survivor.household_id else None
    identifiers = [
        name
        for name in ("phone", "external_id")
        if getattr(survivor, name) is None and getattr(duplicate, name) is not None
    ]
    profile = [name for name in PROFILE_FIELDS if not getattr(survivor, name) and getattr(duplicate, name)]
    if survivor.gender == "unknown" and duplicate.gender != "unknown":
        profile.append("gender")
    moved = {
        "purchases": purchases,
        "tags": [row.tag.code for row in theirs if row.tag_id not in have],
        "referrals": referrals,
        "identifiers": identifiers,
        "profile": profile,
        "household": str(household) if household else None,
    }
    # Her WeChat identities are the same person's: the survivor is found by them, and the wechat channel reaches
    # her through them.
    wechat = WechatIdentity.objects.filter(member=duplicate).update(member=survivor)
    if wechat:
        moved["wechat_identities"] = wechat
    return moved


def _close_duplicate(merge):
    """Hand the survivor what she lacks, close the duplicate, and write both audit rows."""
    survivor, duplicate, moved = merge.survivor, merge.duplicate, merge.moved
    handed = {name: getattr(duplicate, name) for name in moved["identifiers"]}
    old_status = duplicate.status
    for name in handed:
        setattr(duplicate, name, None)  # the unique phone / external id leaves the duplicate before the survivor
    left_household = duplicate.household_id
    duplicate.status, duplicate.merged_into, duplicate.household = MemberStatus.MERGED, survivor, None
    duplicate.token_version += 1  # her member tokens end: she logs in again as the survivor
    duplicate.save()
    if moved["household"]:
        survivor.household_id = left_household  # she had none: the duplicate's family is hers
    for name, value in handed.items():
        setattr(survivor, name, value)
    for name in moved["profile"]:
        setattr(survivor, name, getattr(duplicate, name))
    survivor.save()
    summary = {"merge": merge.record.pk, "reason": merge.reason, "moved": moved}
    record_audit(
        actor=merge.actor,
        action="member.merged",
        target=survivor,
        new={
            "duplicate": str(duplicate.pk),
            "duplicate_member_no": duplicate.member_no,
            "handed": {name: _audit_value(value) for name, value in handed.items()},
            "household": survivor.household_id,
            "profile": {name: _audit_value(getattr(survivor, name)) for name in moved["profile"]},
            **summary,
        },
    )
    record_audit(
        actor=merge.actor,
        action="member.merged_into",
        target=duplicate,
        old={
            "status": old_status,
            "household": left_household,
            **{name: _audit_value(value) for name, value in handed.items()},
        },
        new={
            "status": MemberStatus.MERGED,
            "merged_into": str(survivor.pk),
            "survivor_member_no": survivor.member_no,
            **summary,
        },
    )
    events.emit(
        "member.merged",
        {
            **member_event_data(survivor, changed=[*handed, *moved["profile"]]),
            "duplicate": str(duplicate.pk),
            "duplicate_member_no": duplicate.member_no,
            "merge": str(merge.record.pk),
        },
        member_id=survivor.pk,
    )


def _result(merge):
    return {
        "id": str(merge.record.pk),
        "survivor": str(merge.survivor.pk),
        "duplicate": str(merge.duplicate.pk),
        "reason": merge.reason,
        "actor": merge.actor,
        "created_at": timezone.localtime(merge.now).isoformat(),
        "moved": merge.moved,
    }
