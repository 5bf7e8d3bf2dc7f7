"""Registering, updating, tagging and freezing members."""

import hmac
import logging
import secrets

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, CharField, F, Q, Value, When
from django.db.models.functions import Concat, Replace
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import events
from loyalty.access import ROLE_ADMIN
from loyalty.audit import REDACTED, audit_values_under, record_audit, redact_audit
from loyalty.errors import DomainError, InvalidInput, NotFoundError, PermissionDeniedError
from members.locking import lock_members
from members.models import (
    ErasedIdentity,
    ErasedIdentityKind,
    Member,
    MemberStatus,
    MemberTag,
    Tag,
    TagKind,
    WechatIdentity,
)
from members.phone_numbers import mask_phone, phone_forms

CARD_NUMBER_LENGTH = 12
ERASURE_KEY_PURPOSE = b"loyalty.members.ErasedIdentity"
REFERRAL_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud at the counter


logger = logging.getLogger(__name__)


class MemberExists(DomainError):
    code = "member_exists"
    default_detail = _("A member with this phone or external id already exists.")


class MemberFrozen(DomainError):
    code = "member_frozen"
    default_detail = _("The member is frozen.")


class MemberAnonymised(DomainError):
    code = "member_anonymised"
    default_detail = _("The member is anonymised.")


class MemberMerged(DomainError):
    """The member was merged into another (`merged_into`): she is closed, and the survivor acts in her place."""

    code = "member_merged"
    default_detail = _("The member was merged into another member; use that member.")


def refuse_merged(member):
    if member.merged_into_id is not None:
        raise MemberMerged(merged_into=str(member.merged_into_id))


def ensure_member_active(member):
    """Frozen members earn nothing and cannot redeem; anonymised and merged ones do nothing at all."""
    if member.status == MemberStatus.FROZEN:
        raise MemberFrozen()
    if member.status == MemberStatus.ANONYMISED:
        raise MemberAnonymised()
    refuse_merged(member)


def _luhn_check_digit(digits):
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return str((10 - total % 10) % 10)


def generate_member_no():
    """A random 12-digit card number whose last digit is a Luhn check digit (catches a mistyped digit)."""
    body = str(secrets.randbelow(9 * 10 ** (CARD_NUMBER_LENGTH - 2)) + 10 ** (CARD_NUMBER_LENGTH - 2))
    return body + _luhn_check_digit(body)


def is_valid_member_no(value):
    return len(value) == CARD_NUMBER_LENGTH and value.isdigit() and _luhn_check_digit(value[:-1]) == value[-1]


def generate_referral_code():
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(8))


def member_actor(member):
    """How audit rows and ledger entries name a member who acts herself: `member:<id>`, as her member token does
    (loyalty.access.MemberPrincipal)."""
    return f"member:{member.pk}"


def _existing_member(phone, external_id):
    condition = Q(pk__in=[])
    if phone:
        condition |= Q(phone=phone)
    if external_id:
        condition |= Q(external_id=external_id)
    member = Member.objects.filter(condition).order_by("pk").first()
    return member.surviving_member() if member else None  # a merged duplicate's identifiers lead to her survivor


def _raise_exists(member):
    raise MemberExists(id=str(member.pk), member_no=member.member_no)


def register_member(
    *,
    actor,
    phone=None,
    external_id=None,
    name="",
    gender="unknown",
    birthday=None,
    email="",
    store=None,
    channel="store",
    referral_code=None,
    consents=None,
):
    """Register a member. `phone` must already be normalised (E.164).

    `actor` labels the audit row; `member_actor` (a callable) labels it with the new member herself, as a member
    who registers by logging in (never her phone: no actor names a phone).

    Raises MemberExists (409, with the existing member's id) when the phone or external id is taken, also when a
    concurrent registration wins the race (the unique constraints decide). Raises InvalidInput for an unknown
    referral code.
    """
    if not phone and not external_id:
        raise InvalidInput({"phone": [gettext("Give a phone or an external_id.")]})
    existing = _existing_member(phone, external_id)
    if existing:
        _raise_exists(existing)
    referrer = None
    if referral_code:
        referrer = Member.objects.filter(referral_code=referral_code.strip().upper()).first()
        if referrer is None:
            raise InvalidInput({"referral_code": [gettext("No member has this referral code.")]})
        referrer = referrer.surviving_member()
    consents = consents or {}
    for _attempt in range(5):
        member = Member(
            member_no=generate_member_no(),
            referral_code=generate_referral_code(),
            phone=phone or None,
            external_id=external_id or None,
            name=name or "",
            gender=gender or "unknown",
            birthday=birthday,
            email=email or "",
            home_store=store,
            channel=channel or "store",
            referrer=referrer,
            consent_sms=bool(consents.get("sms", False)),
            consent_wechat=bool(consents.get("wechat", False)),
            consent_email=bool(consents.get("email", False)),
        )
        try:
            with transaction.atomic(durable=True):
                member.save()
                record_audit(
                    actor=actor(member) if callable(actor) else actor,
                    action="member.registered",
                    target=member,
                    new={
                        "phone": member.phone,
                        "external_id": member.external_id,
                        "store": store.code if store else None,
                        "channel": member.channel,
                    },
                )
                events.emit(
                    "member.created",
                    {
                        **member_event_data(member),
                        "channel": member.channel,
                        "store": store.code if store else None,
                        "referrer": str(referrer.pk) if referrer else None,
                        "joined_at": member.joined_at,
                    },
                    member_id=member.pk,
                )
            _after_registration(member)
            return member
        except IntegrityError:
            existing = _existing_member(phone, external_id)
            if existing:
                _raise_exists(existing)
            # A generated card number or referral code collided; draw again.
    raise RuntimeError("Could not generate a unique card number after 5 attempts.")


def member_event_data(member, changed=None):
    """What the member.* events say about her: who she is by id and card number, and her status; never her personal
    data (a receiver that needs her profile reads it through the API, so an erasure needs no clean-up there).
    `changed`: the names of the fields that changed (member.updated)."""
    data = {"member": str(member.pk), "member_no": member.member_no, "status": member.status}
    if changed is not None:
        data["changed"] = sorted(changed)
    return data


def emit_member_updated(member, changed):
    events.emit("member.updated", member_event_data(member, changed), member_id=member.pk)


def _after_registration(member):
    from members.extensions import member_registered

    for listener in member_registered:
        try:
            listener(member)
        except Exception:  # the member is registered; a bonus that failed is logged, never a failed registration
            logger.exception("a registration listener failed for member %s", member.pk)


UPDATABLE_FIELDS = ("phone", "external_id", "name", "gender", "birthday", "email", "home_store")


def update_member(*, actor, member, changes, consents=None):
    """Apply profile changes ({field: value}) and consent changes ({"sms": bool, ...}) with one audit row.

    Raises MemberExists when the new phone or external id belongs to another member, MemberAnonymised for an
    erased member (her personal data stays erased), MemberMerged for a merged duplicate (closed: her survivor is
    the one to change). Takes her locks in the written order (members.locking), as a merge does, so an identity
    change and a merge of the same member are serialised.
    """
    old, new = {}, {}
    with transaction.atomic(durable=True):
        member = lock_members([member.pk])[member.pk]
        if member.status == MemberStatus.ANONYMISED:
            raise MemberAnonymised()
        refuse_merged(member)
        for field, value in changes.items():
            if field not in UPDATABLE_FIELDS:
                raise ValueError(f"{field} cannot be updated here")
            current = getattr(member, field)
            if current != value:
                old[field], new[field] = _audit_value(current), _audit_value(value)
                setattr(member, field, value)
        for channel, value in (consents or {}).items():
            field = f"consent_{channel}"
            if getattr(member, field) != bool(value):
                old[field], new[field] = getattr(member, field), bool(value)
                setattr(member, field, bool(value))
        if not new:
            return member
        if "phone" in new:
            member.token_version += 1  # her tokens were given to whoever held the old phone: they end here
        clash = (
            Member.objects.exclude(pk=member.pk)
            .filter(
                Q(phone=member.phone, phone__isnull=False)
                | Q(external_id=member.external_id, external_id__isnull=False)
            )
            .first()
        )
        if clash:
            _raise_exists(clash)
        member.save()
        record_audit(actor=actor, action="member.updated", target=member, old=old, new=new)
        emit_member_updated(member, new)
    return member


def _audit_value(value):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "code"):
        return value.code
    return value


def add_member_tag(*, actor, member, tag):
    """Tag a member by hand. Returns True when the tag was added, False when the member already had it.

    Rule-based tags are assigned by their rule only (InvalidInput).
    """
    if tag.kind == TagKind.RULE:
        raise InvalidInput({"tag": [gettext("This tag is rule-based; its rule assigns it.")]})
    refuse_merged(member)
    with transaction.atomic(durable=True):
        _, created = MemberTag.objects.get_or_create(member=member, tag=tag, defaults={"added_by": actor})
        if created:
            record_audit(actor=actor, action="member.tag_added", target=member, new={"tag": tag.code})
    return created


def remove_member_tag(*, actor, member, tag_code):
    """Remove a manual tag. Removing a tag the member does not have is a no-op (safe to retry)."""
    tag = Tag.objects.filter(code=tag_code).first()
    if tag is None:
        raise NotFoundError(gettext("No tag with this code."))
    if tag.kind == TagKind.RULE:
        raise InvalidInput({"tag": [gettext("This tag is rule-based; its rule removes it.")]})
    with transaction.atomic(durable=True):
        deleted, _ = MemberTag.objects.filter(member=member, tag=tag).delete()
        if deleted:
            record_audit(actor=actor, action="member.tag_removed", target=member, old={"tag": tag.code})
    return bool(deleted)


class WechatIdentityTaken(DomainError):
    code = "wechat_identity_taken"
    default_detail = _("This openid of this app already belongs to another member.")


def add_wechat_identity(*, actor, member, app_id, openid, unionid=""):
    """Bind a WeChat identity (her openid in app `app_id`, and her unionid when WeChat gives one) to a member.
    Returns (identity, created). The same openid again for her is a no-op (a new unionid is kept); for another
    member it is refused (WechatIdentityTaken). A merged or anonymised member takes none (MemberMerged,
    MemberAnonymised). Audited."""
    with transaction.atomic(durable=True):
        member = _locked(member.pk)
        if member.status == MemberStatus.ANONYMISED:
            raise MemberAnonymised()
        refuse_merged(member)
        identity = WechatIdentity.objects.select_for_update().filter(app_id=app_id, openid=openid).first()
        if identity is not None and identity.member_id != member.pk:
            raise WechatIdentityTaken()
        if identity is not None:
            if unionid and identity.unionid != unionid:
                identity.unionid = unionid
                identity.save(update_fields=["unionid"])
            return identity, False
        try:
            with transaction.atomic():
                identity = WechatIdentity.objects.create(member=member, app_id=app_id, openid=openid, unionid=unionid)
        except IntegrityError:  # bound at the same moment by another request
            raise WechatIdentityTaken() from None
        record_audit(
            actor=actor,
            action="member.wechat_identity_added",
            target=member,
            new={"app_id": app_id, "openid": openid, "unionid": unionid},
        )
    return identity, True


def _locked(member_id):
    """Her row, fresh, after every lock of hers in the documented order; Member.DoesNotExist if there is none."""
    member = lock_members([member_id]).get(member_id)
    if member is None:
        raise Member.DoesNotExist()
    return member


# Who may freeze, unfreeze or anonymise a member (API.md: admin), in the API and in the admin alike.
STATUS_CHANGE_ROLES = frozenset({ROLE_ADMIN})


def may_change_status(role):
    """`role`: the caller's staff role, or her Access (loyalty.access); client apps and members have none."""
    return getattr(role, "role", role) in STATUS_CHANGE_ROLES


def _refuse_unless_may_change_status(role):
    if not may_change_status(role):
        raise PermissionDeniedError(gettext("Only an admin may freeze, unfreeze or anonymise a member."))


def _set_status(*, actor, member, status, reason, action, role):
    """Change her status under all her locks (members.locking: her points account first), so every purchase,
    redemption or other points change of hers either committed before the change or sees it."""
    _refuse_unless_may_change_status(role)
    with transaction.atomic(durable=True):
        member = _locked(member.pk)
        if member.status == MemberStatus.ANONYMISED:
            raise MemberAnonymised()
        refuse_merged(member)  # a merged duplicate stays closed
        if member.status != status:
            old = member.status
            member.status = status
            if status == MemberStatus.FROZEN:
                member.token_version += 1  # her member tokens end with the freeze
            member.save(update_fields=["status", "token_version", "updated_at"])
            record_audit(
                actor=actor, action=action, target=member, old={"status": old}, new={"status": status, "reason": reason}
            )
            emit_member_updated(member, ["status"])
    return member


def freeze_member(*, actor, member, reason, role):
    """Freeze a member: she earns nothing and cannot redeem until unfrozen. Idempotent. Raises MemberAnonymised,
    MemberMerged; PermissionDeniedError (403) unless `role` (a role or an Access) may (STATUS_CHANGE_ROLES)."""
    return _set_status(
        actor=actor, member=member, status=MemberStatus.FROZEN, reason=reason, action="member.frozen", role=role
    )


def erasure_keys():
    """[(key_id, key)] for ErasedIdentity digests: the key derived from SECRET_KEY first (new erasures are hashed
    with it), then those derived from SECRET_KEY_FALLBACKS (old erasures still match). See ErasedIdentity."""
    keys = []
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        key = hmac.digest(secret.encode() if isinstance(secret, str) else secret, ERASURE_KEY_PURPOSE, "sha256")
        keys.append((hmac.digest(key, b"key id", "sha256").hex()[:16], key))
    return keys


def identity_digest(key, kind, value):
    """HMAC-SHA256 of "kind:value" under an erasure key, in hex. `value`: a normalised (E.164) phone, or an
    external id as stored."""
    return hmac.digest(key, f"{kind}:{value}".encode(), "sha256").hex()


def _remember_erased_identities(*, phone, external_id):
    key_id, key = erasure_keys()[0]
    erased = [
        ErasedIdentity(kind=kind, digest=identity_digest(key, kind, value), key_id=key_id)
        for kind, value in ((ErasedIdentityKind.PHONE, phone), (ErasedIdentityKind.EXTERNAL_ID, external_id))
        if value
    ]
    # the same identifier erased twice (a member erased, back through registration, erased again) is kept once
    ErasedIdentity.objects.bulk_create(erased, ignore_conflicts=True)


def anonymise_member(*, actor, member, reason, role):
    """Erase a member's personal data on her request (PIPL / GDPR): name, phone, email, birthday, external id,
    consents, household, tags, WeChat identities, login codes and the recipients and bodies of her messages. Her
    card number, ledger, purchases and amounts stay (the merchant's books). Irreversible; idempotent. She can no
    longer log in.

    What else kept her data is scrubbed in the same transaction, with set-based updates (scrub_personal_traces):
    her messages and those sent to no member at any phone or email she ever had (the first login code, sent before
    she was a member), her login codes, and her audit rows: the values of her personal fields are replaced with
    loyalty.audit.REDACTED (which fields changed, by whom and when stay), and no actor names her phone. Members
    merged into her (status `merged`, `merged_into` her) are the same person: their personal data is erased with
    hers, and they stay closed.

    Her phone and external id are kept as keyed hashes (ErasedIdentity), written in the same transaction, so that
    importing an old members or purchases file does not create her again. They do not stop her from registering
    again herself (register_member): that is a new, freely given registration, which the erasure does not
    forbid; refusing it would tell whoever types a phone that its owner was erased, and would lock out the next
    owner of a recycled number. Takes all her locks first, as a freeze does, so no points change of hers commits
    after it. PermissionDeniedError (403) unless `role` (a role or an Access) may (STATUS_CHANGE_ROLES)."""
    _refuse_unless_may_change_status(role)

    with transaction.atomic(durable=True):
        member = _locked(member.pk)
        if member.status == MemberStatus.ANONYMISED:
            return member
        # Her merged duplicates are closed (every writer refuses them), so their rows need no lock of their own.
        duplicates = list(Member.objects.filter(merged_into=member).order_by("pk"))
        people = [member, *duplicates]
        scrub_personal_traces(people)
        for person in people:
            _remember_erased_identities(phone=person.phone, external_id=person.external_id)
        member.phone = member.external_id = None
        member.name, member.email, member.birthday, member.gender = "", "", None, "unknown"
        member.consent_sms = member.consent_wechat = member.consent_email = False
        member.household = None  # who her family is is personal data too
        member.status = MemberStatus.ANONYMISED
        member.token_version += 1  # her member tokens end with her data
        member.save()
        if duplicates:
            Member.objects.filter(pk__in=[duplicate.pk for duplicate in duplicates]).update(
                phone=None,
                external_id=None,
                name="",
                email="",
                birthday=None,
                gender="unknown",
                consent_sms=False,
                consent_wechat=False,
                consent_email=False,
                household=None,
                updated_at=timezone.now(),
            )
        MemberTag.objects.filter(member__in=people).delete()
        WechatIdentity.objects.filter(member__in=people).delete()  # an openid identifies her
        record_audit(
            actor=actor,
            action="member.anonymised",
            target=member,
            new={"reason": reason, "merged_members": [str(duplicate.pk) for duplicate in duplicates]},
        )
        emit_member_updated(member, ["status", *PERSONAL_FIELDS])
    return member


# The profile fields an erasure empties (member.updated names them as changed).
PERSONAL_FIELDS = (
    "phone",
    "external_id",
    "name",
    "email",
    "birthday",
    "gender",
    "consent_sms",
    "consent_wechat",
    "consent_email",
    "household",
)
# The member fields whose values are personal data, as audit rows name them (update_member, register_member, merge).
PERSONAL_AUDIT_KEYS = frozenset({"phone", "external_id", "name", "email", "birthday", "gender", "household"})
ANONYMISED_RECIPIENT = "anonymised"
# Logins that registered a member were audited as `member-login:<phone>` before they named the member she became.
LEGACY_LOGIN_ACTOR_PREFIX = "member-login:"


def scrub_personal_traces(people):
    """Scrub what the message log, login codes and audit log keep of `people` (one person: a member and her
    merged duplicates), before their rows are erased. Set-based: one UPDATE or DELETE per table (audit values:
    one bulk UPDATE), never a save per row.

    - Her identifiers: the phones, emails and external ids on her rows now and every one her audit rows recorded
      (a phone she changed away from included).
    - Messages: those to her (`member`), and those to one of her phones or emails that went to no member (the
      first login code, sent before she registered): recipient ANONYMISED_RECIPIENT, no subject, no body. Messages
      to another member stay his, also when he holds a number that was hers.
    - Login codes (OtpChallenge) for her phones: deleted, but for a phone another member holds now (his login).
    - Audit rows about her: the values of PERSONAL_AUDIT_KEYS, and any text holding one of her identifiers or equal
      to her name or birthday, become REDACTED; an actor holding one of her phones becomes `member:<id>` of the
      row's member when it is a login that registered her (`member-login:<phone>`, before actors named the
      member), and holds the phone masked otherwise.
    """
    from loyalty.models import AuditEntry, Message
    from members.models import OtpChallenge

    ids = [person.pk for person in people]
    label = Member._meta.label_lower
    audit_rows = AuditEntry.objects.filter(target_type=label, target_id__in=[str(pk) for pk in ids])
    recorded = {key: values - {REDACTED} for key, values in audit_values_under(audit_rows, PERSONAL_AUDIT_KEYS).items()}
    phones = {person.phone for person in people if person.phone} | recorded["phone"]
    emails = {person.email for person in people if person.email} | recorded["email"]
    external_ids = {person.external_id for person in people if person.external_id} | recorded["external_id"]
    names = {person.name for person in people if person.name} | recorded["name"]
    birthdays = {person.birthday.isoformat() for person in people if person.birthday} | recorded["birthday"]

    Message.objects.filter(Q(member_id__in=ids) | Q(member__isnull=True, recipient__in=phones | emails)).update(
        recipient=ANONYMISED_RECIPIENT, subject="", body=""
    )
    taken = Member.objects.exclude(pk__in=ids).filter(phone__in=phones).values_list("phone", flat=True)
    OtpChallenge.objects.filter(phone__in=phones - set(taken)).delete()

    if phones:
        named_by_phone, masked = Q(), F("actor")
        for phone in sorted(phones):
            named_by_phone |= Q(actor__contains=phone)
            masked = Replace(masked, Value(phone), Value(mask_phone(phone)))
        # Only her rows (the target index): no code names a phone as an actor any more, and migration
        # loyalty.0004 renamed the legacy login actors of every member.
        audit_rows.filter(named_by_phone).update(
            actor=Case(
                When(
                    actor__startswith=LEGACY_LOGIN_ACTOR_PREFIX,
                    then=Concat(Value("member:"), F("target_id"), output_field=CharField()),
                ),
                default=masked,
            )
        )
    redact_audit(
        audit_rows,
        keys=PERSONAL_AUDIT_KEYS,
        traces={form for phone in phones for form in phone_forms(phone)} | emails | external_ids,
        exact=names | birthdays,
    )


def unfreeze_member(*, actor, member, reason="", role):
    """Lift a freeze. Idempotent. Never reopens a merged duplicate (MemberMerged). PermissionDeniedError (403)
    unless `role` (a role or an Access) may (STATUS_CHANGE_ROLES)."""
    return _set_status(
        actor=actor, member=member, status=MemberStatus.ACTIVE, reason=reason, action="member.unfrozen", role=role
    )
