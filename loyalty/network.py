"""Who is calling, by address: the one place that reads the client's IP address (login throttles, the OTP limits,
logs). X-Forwarded-For is written by the client unless a proxy of ours rewrote it, so it is trusted only behind
settings.NUM_PROXIES proxies (DRF's NUM_PROXIES semantics, 0: none, the header is ignored). X-Forwarded-Proto is
trusted on the same condition (settings.SECURE_PROXY_SSL_HEADER is set only when NUM_PROXIES > 0)."""

import ipaddress

from django.conf import settings


def client_ip(request):
    """The caller's address: REMOTE_ADDR, or behind NUM_PROXIES proxies the X-Forwarded-For entry the outermost of
    them appended (the NUM_PROXIES-th from the right; the first when there are fewer). An entry that is not an IP
    address falls back to REMOTE_ADDR. None when there is no address at all."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    entries = forwarded.split(",")
    candidate = entries[-min(proxies, len(entries))].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
