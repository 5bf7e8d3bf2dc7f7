"""Member logins: one-time codes by SMS, and the member tokens they give.

Access tokens are stateless, signed (django.core.signing) and short-lived (MEMBER_ACCESS_TOKEN_TTL): reading one
costs the member row the request reads anyway, and it carries her `token_version`, so a freeze, an anonymisation,
a merge or a phone change (each bumps the version) ends every token issued before. Refresh tokens are opaque and
kept server-side (MemberRefreshToken, only a hash): each refresh consumes its token and answers a new pair (the
same family, the same expiry: a login lasts MEMBER_REFRESH_TOKEN_TTL at most); a consumed token presented again
means it was copied, so the whole family is revoked; a logout revokes the family too.
"""

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, Max, Min
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.errors import DomainError, Throttled
from loyalty.messaging import send_message
from members.models import Channel, Member, MemberRefreshToken, MemberStatus, OtpChallenge, OtpRequestLock

from .membership import MemberExists, member_actor, register_member

MEMBER_TOKEN_SALT = "members.member-token"  # noqa: S105 - a namespace, the key is SECRET_KEY
CLOSED_STATUSES = (MemberStatus.ANONYMISED, MemberStatus.MERGED)


class NotAuthenticated(DomainError):
    status = 401
    code = "not_authenticated"
    default_detail = _("The refresh token is invalid or expired.")


# --- Member tokens --------------------------------------------------------------------------------------------


def _token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def _access_token(member_id, version):
    return signing.dumps({"m": member_id, "k": "access", "v": version}, salt=MEMBER_TOKEN_SALT)


def _new_refresh_token(*, member_id, version, family, expires_at, now):
    token = secrets.token_urlsafe(32)
    MemberRefreshToken.objects.create(
        token_hash=_token_hash(token),
        family=family,
        member_id=member_id,
        token_version=version,
        issued_at=now,
        expires_at=expires_at,
    )
    return token


def issue_member_tokens(member):
    """A new login's tokens: {"access", "refresh"}; the refresh token starts a family that lives
    MEMBER_REFRESH_TOKEN_TTL. Both carry her token version as it is in the database now."""
    version = Member.objects.filter(pk=member.pk).values_list("token_version", flat=True).get()
    now = timezone.now()
    refresh = _new_refresh_token(
        member_id=member.pk,
        version=version,
        family=uuid.uuid4(),
        expires_at=now + settings.MEMBER_REFRESH_TOKEN_TTL,
        now=now,
    )
    return {"access": _access_token(member.pk, version), "refresh": refresh}


def read_member_token(token):
    """The member an access token names, or None when it is forged, expired (MEMBER_ACCESS_TOKEN_TTL), not an
    access token, of an older token version than hers, or she is anonymised or merged away (her survivor logs in
    afresh by phone). One query: her row."""
    try:
        claims = signing.loads(token, salt=MEMBER_TOKEN_SALT, max_age=settings.MEMBER_ACCESS_TOKEN_TTL)
    except signing.BadSignature:
        return None
    if not isinstance(claims, dict) or claims.get("k") != "access":
        return None
    member = Member.objects.filter(pk=claims.get("m")).exclude(status__in=CLOSED_STATUSES).first()
    if member is None or claims.get("v") != member.token_version:
        return None
    return member


def refresh_member_tokens(refresh_token):
    """Rotate a refresh token: consume it and answer {"access", "refresh"}, the next of its family (same expiry).
    Refused (401 not_authenticated): an unknown, expired or revoked token, one of an older token version than the
    member's, or a closed member; a token already consumed revokes its whole family first (reuse: someone holds a
    copy). The token's row is locked, so of parallel refreshes with one token exactly one succeeds."""
    now = timezone.now()
    refusal, tokens = None, None
    with transaction.atomic(durable=True):
        row = (
            MemberRefreshToken.objects.select_for_update(of=("self",))  # her member row is read, not locked
            .filter(token_hash=_token_hash(refresh_token))
            .select_related("member")
            .first()
        )
        if row is None or row.revoked_at is not None:
            refusal = NotAuthenticated()
        elif row.used_at is not None:
            _revoke_family(row.family, now)  # committed with this transaction, before the refusal is raised
            refusal = NotAuthenticated(
                gettext("The refresh token was already used; this login is revoked. Log in again.")
            )
        elif row.expires_at <= now:
            refusal = NotAuthenticated()
        elif row.member.status in CLOSED_STATUSES or row.token_version != row.member.token_version:
            refusal = NotAuthenticated(gettext("The member's tokens were revoked. Log in again."))
        else:
            row.used_at = now
            row.save(update_fields=["used_at"])
            tokens = {
                "access": _access_token(row.member_id, row.token_version),
                "refresh": _new_refresh_token(
                    member_id=row.member_id,
                    version=row.token_version,
                    family=row.family,
                    expires_at=row.expires_at,
                    now=now,
                ),
            }
    if refusal is not None:
        raise refusal
    return tokens


def revoke_member_tokens(refresh_token):
    """Log out: revoke the family of this refresh token (every refresh token of that login, used or not).
    Idempotent; 401 not_authenticated for a token that was never issued. Access tokens already issued stay valid
    until they expire (MEMBER_ACCESS_TOKEN_TTL)."""
    rows = MemberRefreshToken.objects.filter(token_hash=_token_hash(refresh_token))
    family = rows.values_list("family", flat=True).first()
    if family is None:
        raise NotAuthenticated()
    _revoke_family(family, timezone.now())


def _revoke_family(family, now):
    return MemberRefreshToken.objects.filter(family=family, revoked_at__isnull=True).update(revoked_at=now)


def refresh_token_purge_bounds(cutoff):
    """The id range of the refresh tokens that expired before `cutoff` (one aggregate)."""
    bounds = MemberRefreshToken.objects.filter(expires_at__lt=cutoff).aggregate(low=Min("id"), high=Max("id"))
    return bounds["low"], bounds["high"]


def purge_refresh_tokens(start, stop, cutoff):
    """Delete the refresh tokens with ids in [start, stop) that expired before `cutoff` (one statement)."""
    deleted, _ = MemberRefreshToken.objects.filter(id__gte=start, id__lt=stop, expires_at__lt=cutoff).delete()
    return {"refresh_tokens": deleted}


def purge_login_codes(cutoff):
    """Delete login codes asked for, and request locks last seen, more than a day before `cutoff`: every limit
    counts an hour back, and a code lives OTP_TTL."""
    before = cutoff - timedelta(days=1)
    codes, _ = OtpChallenge.objects.filter(created_at__lt=before).delete()
    locks, _ = OtpRequestLock.objects.filter(seen_at__lt=before).delete()
    return {"login_codes": codes, "request_locks": locks}


# --- One-time login codes -------------------------------------------------------------------------------------


class CodeInvalid(DomainError):
    status = 400
    code = "otp_invalid"
    default_detail = _("The code is wrong or has already been used.")


class CodeExpired(DomainError):
    status = 400
    code = "otp_expired"
    default_detail = _("The code has expired; ask for a new one.")


def _code_hash(phone, code):
    return hmac.new(settings.SECRET_KEY.encode(), f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


def _request_lock_key(kind, value):
    return salted_hmac("members.otp-request-lock", f"{kind}:{value}", algorithm="sha256").hexdigest()


def _lock_requesters(keys):
    """Lock the OtpRequestLock row of each key (creating it when missing), in key order: every request takes its
    rows in this order, so two requests may wait for each other but never in a circle."""
    for key in sorted(keys):
        # The UPDATE locks the row; when there is none yet (or the purge just deleted it) insert it and lock it.
        while not OtpRequestLock.objects.filter(key=key).update(seen_at=timezone.now()):
            OtpRequestLock.objects.bulk_create([OtpRequestLock(key=key)], ignore_conflicts=True)


def request_login_code(*, phone, ip_address=None):
    """Send a 6-digit login code by SMS. Limits: one per OTP_RESEND_INTERVAL and OTP_MAX_PER_PHONE_PER_HOUR per
    phone, OTP_MAX_PER_IP_PER_HOUR per client address (loyalty.network.client_ip); 429 throttled beyond. The limits
    are counted under the row locks of the phone and the address, so parallel requests are counted one after the
    other (exact). A phone with no member gets a code too (logging in registers her), so the answer never tells
    whether a phone is a member."""
    keys = [_request_lock_key("phone", phone)]
    if ip_address:
        keys.append(_request_lock_key("address", ip_address))
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic(durable=True):
        _lock_requesters(keys)
        now = timezone.now()  # after the locks: what committed before them is counted
        hour_ago = now - timedelta(hours=1)
        recent = OtpChallenge.objects.filter(phone=phone, created_at__gte=hour_ago)
        wait = _resend_wait(phone, now)
        if wait:
            raise Throttled(gettext("A code was sent to this phone moments ago."), retry_after=wait)
        if recent.count() >= settings.OTP_MAX_PER_PHONE_PER_HOUR:
            raise Throttled(gettext("Too many codes for this phone; try again in an hour."), retry_after=3600)
        if (
            ip_address
            and OtpChallenge.objects.filter(ip_address=ip_address, created_at__gte=hour_ago).count()
            >= settings.OTP_MAX_PER_IP_PER_HOUR
        ):
            raise Throttled(gettext("Too many codes from this address; try again later."), retry_after=3600)
        challenge = OtpChallenge.objects.create(
            phone=phone,
            code_hash=_code_hash(phone, code),
            ip_address=ip_address,
            created_at=now,
            expires_at=now + settings.OTP_TTL,
        )
        minutes = int(settings.OTP_TTL.total_seconds() // 60)
        send_message(
            channel="sms",
            kind="otp",
            recipient=phone,
            member=_member_by_phone(phone),
            body=gettext("Your login code is %(code)s. It expires in %(minutes)s minutes. Do not share it.")
            % {"code": code, "minutes": minutes},
            secrets=[code],
        )
    return challenge


def _resend_wait(phone, now):
    """Seconds until the phone may be sent another code (OTP_RESEND_INTERVAL after the last one), or None."""
    last = OtpChallenge.objects.filter(phone=phone).order_by("-created_at").values_list("created_at", flat=True).first()
    if last is None or now - last >= settings.OTP_RESEND_INTERVAL:
        return None
    return max(1, (settings.OTP_RESEND_INTERVAL - (now - last)).total_seconds())


def _member_by_phone(phone):
    member = Member.objects.filter(phone=phone).first()
    return member.surviving_member() if member else None


def _challenge_for(phone, ip_address, now):
    """The code a guess from `ip_address` is checked against: the newest live code this address asked for, else
    the newest unused code of the phone. Every unused code of the phone is locked first, in id order, so the
    guesses for one phone are checked one after the other (and a login that uses them all up waits for no one)."""
    unused = list(OtpChallenge.objects.select_for_update().filter(phone=phone, used_at__isnull=True).order_by("id"))
    newest = sorted(unused, key=lambda challenge: (challenge.created_at, challenge.pk), reverse=True)
    if ip_address:
        for challenge in newest:
            if challenge.ip_address == ip_address and challenge.expires_at > now:
                return challenge
    return newest[0] if newest else None


def verify_login_code(*, phone, code, ip_address=None):
    """Check a login code and return (member, created). A right code works once, and uses up every other code of
    the phone. A phone with no member registers one (channel mini_program); a merged duplicate's phone logs her
    survivor in.

    Wrong guesses are counted on the code, apart by who guesses: OTP_MAX_ATTEMPTS from the address that asked for it
    (`attempts`) and OTP_MAX_ATTEMPTS from all other addresses together (`foreign_attempts`); past its count the
    code is burnt for that side (429 throttled, the same whether the code is right or wrong). So an attacker who
    guesses against a phone burns the codes he sees, but not a fresh code its owner asks for (after the cool-down)
    from her own address, and no code takes more than 2 x OTP_MAX_ATTEMPTS wrong guesses."""
    now = timezone.now()
    refusal = None
    with transaction.atomic(durable=True):
        challenge = _challenge_for(phone, ip_address, now)
        own = challenge is not None and ip_address is not None and challenge.ip_address == ip_address
        counter = "attempts" if own else "foreign_attempts"
        if challenge is None:
            refusal = CodeInvalid()
        elif getattr(challenge, counter) >= settings.OTP_MAX_ATTEMPTS:
            refusal = Throttled(
                gettext("Too many wrong codes; ask for a new one."), retry_after=_resend_wait(phone, now)
            )
        elif challenge.expires_at <= now:
            refusal = CodeExpired()
        elif not hmac.compare_digest(challenge.code_hash, _code_hash(phone, str(code))):
            # Committed before the refusal is raised: a wrong try must count.
            OtpChallenge.objects.filter(pk=challenge.pk).update(**{counter: F(counter) + 1})
            refusal = CodeInvalid()
        else:
            OtpChallenge.objects.filter(phone=phone, used_at__isnull=True).update(used_at=now)  # locked above
    if refusal is not None:
        raise refusal
    member = _member_by_phone(phone)
    if member is None:
        try:
            return register_member(actor=member_actor, phone=phone, channel=Channel.MINI_PROGRAM), True
        except MemberExists:  # registered by a concurrent login or a clerk a moment ago
            member = Member.objects.get(phone=phone)
    if member.status == MemberStatus.ANONYMISED:
        raise CodeInvalid()
    return member, False
