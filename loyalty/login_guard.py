"""Staff logins (the API's staff token and the admin login page) against password guessing.

Each attempt counts against two rates, per client address (settings.STAFF_LOGIN_RATE, the address from
loyalty.network.client_ip) and per username (STAFF_LOGIN_USERNAME_RATE): fixed windows counted with the cache's
atomic incr (Redis when REDIS_URL is set, shared by every process; else each process counts its own), 429
`throttled` beyond. A cache that is down lets the attempt through (logged): the lock below still holds.

The lock is in the database (LoginLock, one row per username as typed, case-folded, whether or not such a user
exists, so the answers never tell which usernames exist): the row is locked while the password is checked, so
parallel attempts are counted one after the other. STAFF_LOGIN_MAX_FAILURES wrong passwords within
STAFF_LOGIN_FAILURE_WINDOW lock the username for STAFF_LOGIN_LOCK_DURATION: while locked the password is not even
checked and every attempt gets the same 429 `login_locked`, so the answer cannot tell a right password from a wrong
one. The lock is audited (staff_login.locked); an admin may lift it early (unlock_staff_login, audited as
staff_login.unlocked).
"""

import hashlib
import logging
import time

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from loyalty.audit import record_audit
from loyalty.errors import Throttled
from loyalty.models import LoginLock
from loyalty.network import client_ip

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class LoginLocked(Throttled):
    code = "login_locked"
    default_detail = gettext_lazy("Too many failed logins for this username; try again later.")


def parse_rate(rate):
    """'20/min' -> (20, 60): DRF's rate format, N per sec, min, hour or day."""
    count, _slash, period = rate.partition("/")
    return int(count), PERIODS[period[:1]]


def lock_key(username):
    return username.casefold()[: LoginLock._meta.get_field("username").max_length]


def _count_attempt(kind, value, rate):
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    key = f"staff-login:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}:{window}"
    try:
        cache.add(key, 0, timeout=period + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add and incr: this is the window's first attempt
            cache.add(key, 1, timeout=period + 1)
            count = 1
    except Exception:  # the cache backend's connection errors
        logger.warning("staff login rate limit skipped: cache unavailable", exc_info=True)
        return
    if count > limit:
        raise Throttled(_("Too many login attempts; try again later."), retry_after=max(1, (window + 1) * period - now))


def authenticate_staff(request, *, username, password):
    """The user a username and password log in, or None; raises Throttled (429 `throttled`) past a rate and
    LoginLocked (429 `login_locked`) while the username is locked, whatever the password."""
    address = client_ip(request)
    _count_attempt("address", address or "unknown", settings.STAFF_LOGIN_RATE)
    key = lock_key(username)
    _count_attempt("username", key, settings.STAFF_LOGIN_USERNAME_RATE)
    now = timezone.now()
    locked_until = None
    with transaction.atomic(durable=True):
        LoginLock.objects.bulk_create([LoginLock(username=key)], ignore_conflicts=True)
        lock = LoginLock.objects.select_for_update().get(username=key)
        if lock.locked_until is not None and lock.locked_until > now:
            locked_until = lock.locked_until
            user = None
        else:
            user = authenticate(request, username=username, password=password)
            if user is None:
                _record_failure(lock, now, address)
            elif lock.failures or lock.locked_until:
                lock.failures, lock.window_started_at, lock.locked_until = 0, None, None
                lock.save(update_fields=["failures", "window_started_at", "locked_until"])
    if locked_until is not None:
        raise LoginLocked(
            _("Too many failed logins for this username; try again later."),
            retry_after=max(1, (locked_until - now).total_seconds()),
        )
    return user


def _record_failure(lock, now, address):
    if lock.window_started_at is None or now - lock.window_started_at >= settings.STAFF_LOGIN_FAILURE_WINDOW:
        lock.failures, lock.window_started_at = 0, now
    lock.failures += 1
    lock.locked_until = None
    if lock.failures >= settings.STAFF_LOGIN_MAX_FAILURES:
        lock.locked_until = now + settings.STAFF_LOGIN_LOCK_DURATION
        record_audit(
            actor=f"staff-login:{address or 'unknown'}",
            action="staff_login.locked",
            target=lock,
            new={
                "username": lock.username,
                "failures": lock.failures,
                "locked_until": lock.locked_until,
                "address": address,
            },
        )
        lock.failures, lock.window_started_at = 0, None
    lock.save(update_fields=["failures", "window_started_at", "locked_until"])


def unlock_staff_login(*, username, actor):
    """Lift the lock of a username now (audited as staff_login.unlocked). False when it was not locked."""
    key = lock_key(username)
    now = timezone.now()
    with transaction.atomic(durable=True):
        lock = LoginLock.objects.select_for_update().filter(username=key).first()
        if lock is None or lock.locked_until is None or lock.locked_until <= now:
            return False
        old = {"username": key, "locked_until": lock.locked_until}
        lock.failures, lock.window_started_at, lock.locked_until = 0, None, None
        lock.save(update_fields=["failures", "window_started_at", "locked_until"])
        new = {"username": key, "locked_until": None}
        record_audit(actor=actor, action="staff_login.unlocked", target=lock, old=old, new=new)
    return True
