"""Member logins: one-time codes by SMS and the signed member tokens they give."""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from loyalty.errors import DomainError, Throttled
from loyalty.messaging import send_message
from members.models import Channel, Member, MemberStatus, OtpChallenge

from .membership import MemberExists, member_actor, register_member

MEMBER_TOKEN_SALT = "members.member-token"  # noqa: S105 - a namespace, the key is SECRET_KEY


# --- Member tokens --------------------------------------------------------------------------------------------


def _member_token(member, kind):
    return signing.dumps({"m": member.pk, "k": kind}, salt=MEMBER_TOKEN_SALT)


def issue_member_tokens(member):
    return {"access": _member_token(member, "access"), "refresh": _member_token(member, "refresh")}


def read_member_token(token, kind="access"):
    """The member a signed token names, or None when it is forged, expired, of the other kind, or the member is
    anonymised or merged away (her survivor logs in afresh by phone). Access tokens live MEMBER_ACCESS_TOKEN_TTL,
    refresh tokens MEMBER_REFRESH_TOKEN_TTL."""
    max_age = settings.MEMBER_ACCESS_TOKEN_TTL if kind == "access" else settings.MEMBER_REFRESH_TOKEN_TTL
    try:
        claims = signing.loads(token, salt=MEMBER_TOKEN_SALT, max_age=max_age)
    except signing.BadSignature:
        return None
    if not isinstance(claims, dict) or claims.get("k") != kind:
        return None
    return (
        Member.objects.filter(pk=claims.get("m"))
        .exclude(status__in=[MemberStatus.ANONYMISED, MemberStatus.MERGED])
        .first()
    )


def refresh_member_access(refresh_token):
    member = read_member_token(refresh_token, kind="refresh")
    if member is None:
        raise DomainError("The refresh token is invalid or expired.", code="not_authenticated", status=401)
    return {"access": _member_token(member, "access")}


# --- One-time login codes -------------------------------------------------------------------------------------


class CodeInvalid(DomainError):
    status = 400
    code = "otp_invalid"
    default_detail = "The code is wrong or has already been used."


class CodeExpired(DomainError):
    status = 400
    code = "otp_expired"
    default_detail = "The code has expired; ask for a new one."


def _code_hash(phone, code):
    return hmac.new(settings.SECRET_KEY.encode(), f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()


def request_login_code(*, phone, ip_address=None):
    """Send a 6-digit login code by SMS. Limits: one per OTP_RESEND_INTERVAL and OTP_MAX_PER_PHONE_PER_HOUR per
    phone, OTP_MAX_PER_IP_PER_HOUR per IP address (429 throttled beyond). A phone with no member gets a code
    too (logging in registers her), so the answer never tells whether a phone is a member."""
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    recent = OtpChallenge.objects.filter(phone=phone, created_at__gte=hour_ago)
    last = recent.order_by("-created_at").values_list("created_at", flat=True).first()
    if last and now - last < settings.OTP_RESEND_INTERVAL:
        wait = (settings.OTP_RESEND_INTERVAL - (now - last)).total_seconds()
        raise Throttled("A code was sent to this phone moments ago.", retry_after=max(1, wait))
    if recent.count() >= settings.OTP_MAX_PER_PHONE_PER_HOUR:
        raise Throttled("Too many codes for this phone; try again in an hour.", retry_after=3600)
    if (
        ip_address
        and OtpChallenge.objects.filter(ip_address=ip_address, created_at__gte=hour_ago).count()
        >= settings.OTP_MAX_PER_IP_PER_HOUR
    ):
        raise Throttled("Too many codes from this address; try again later.", retry_after=3600)
    code = f"{secrets.randbelow(10**6):06d}"
    with transaction.atomic(durable=True):
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
            body=f"Your login code is {code}. It expires in {minutes} minutes. Do not share it.",
            secrets=[code],
        )
    return challenge


def _member_by_phone(phone):
    member = Member.objects.filter(phone=phone).first()
    return member.surviving_member() if member else None


def verify_login_code(*, phone, code):
    """Check a login code and return (member, created). The newest unused code for the phone counts; each wrong
    try counts against it, and after OTP_MAX_ATTEMPTS it is dead (429). A right code works once.
    A phone with no member registers one (channel mini_program); a merged duplicate's phone logs her survivor in."""
    now = timezone.now()
    refusal = None
    with transaction.atomic(durable=True):
        challenge = (
            OtpChallenge.objects.select_for_update()
            .filter(phone=phone, used_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        if challenge is None:
            refusal = CodeInvalid()
        elif challenge.attempts >= settings.OTP_MAX_ATTEMPTS:
            refusal = Throttled("Too many wrong codes; ask for a new one.")
        elif challenge.expires_at <= now:
            refusal = CodeExpired()
        elif not hmac.compare_digest(challenge.code_hash, _code_hash(phone, str(code))):
            # Committed before the refusal is raised: a wrong try must count.
            OtpChallenge.objects.filter(pk=challenge.pk).update(attempts=F("attempts") + 1)
            refusal = CodeInvalid()
        else:
            challenge.used_at = now
            challenge.save(update_fields=["used_at"])
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
