"""Posting to a webhook receiver safely (SSRF): which URLs are allowed, and a POST that connects only to an address
it has just checked.

In production (WEBHOOKS_ALLOW_PRIVATE_URLS off) a URL must be https, carry no credentials, and its host must resolve
only to public addresses: never private, loopback, link-local (the cloud metadata service at 169.254.169.254),
shared, multicast, reserved or unspecified ones (IPv4-mapped IPv6 addresses are judged by their IPv4 address). The
check runs when a subscription is saved and again before every delivery, resolving the name anew, and the delivery
connects to the very address it checked (the Host header and TLS name stay the URL's host), so a name that changes
its answer between check and connect (DNS rebinding) still cannot reach an internal address. Redirects are not
followed: a 3xx answer is a failed attempt. Development and tests (the setting on) allow http and any address.
"""

import http.client
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext

MAX_ANSWER_BYTES = 1024  # of the receiver's answer: kept (shortened) as the delivery's last error, no more read
USER_AGENT = "loyalty-webhooks/1"

_getaddrinfo = socket.getaddrinfo  # tests replace it to simulate DNS answers


class UnsafeUrl(ValueError):
    """The URL may not be called: its scheme, its credentials, or an address its host resolves to."""


def _allow_private():
    return settings.WEBHOOKS_ALLOW_PRIVATE_URLS


def is_public_address(address):
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is link-local anyway
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def parse(url):
    """(scheme, host, port, path with query) of an allowed URL's shape; UnsafeUrl otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(gettext("not a valid URL: %(error)s") % {"error": error}) from None
    allowed = ("https", "http") if _allow_private() else ("https",)
    if parts.scheme not in allowed:
        raise UnsafeUrl("the URL must use https" if parts.scheme == "http" else "the URL must be an https URL")
    if not parts.hostname:
        raise UnsafeUrl(gettext("the URL has no host"))
    if parts.username or parts.password:
        raise UnsafeUrl(gettext("the URL may not carry a user name or password"))
    port = port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.hostname, port, path


def resolve(host, port):
    """The addresses `host` resolves to, and UnsafeUrl when one of them is not public (unless private addresses are
    allowed) or it does not resolve."""
    try:
        answers = _getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        raise UnsafeUrl(
            gettext("the host %(host)s does not resolve (%(error)s)") % {"host": host, "error": error}
        ) from None
    addresses = list(dict.fromkeys(answer[4][0] for answer in answers))
    if not addresses:
        raise UnsafeUrl(gettext("the host %(host)s does not resolve") % {"host": host})
    if not _allow_private():
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            raise UnsafeUrl(
                gettext(
                    "the host %(host)s resolves to %(refused)s: not a public address (private, loopback, "
                    "link-local, multicast or reserved)"
                )
                % {"host": host, "refused": ", ".join(refused)}
            )
    return addresses


def check_url(url):
    """Refuse (UnsafeUrl) a URL a subscription may not have. In production this resolves its host now."""
    scheme, host, port, _ = parse(url)
    if not _allow_private():
        resolve(host, port)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `address`, speaking to the URL's host (the Host header stays the host name)."""

    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to `address`, the certificate checked against the URL's host name (SNI too)."""

    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url, body, headers, *, timeout):
    """POST `body` (bytes) to `url` with `headers`, connecting to an address checked just now (see the module
    docstring). Returns (status, start of the answer's body as text). Raises UnsafeUrl (nothing was sent), OSError
    or http.client.HTTPException (the attempt failed on the way)."""
    scheme, host, port, path = parse(url)
    address = resolve(host, port)[0]
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address=address, timeout=timeout)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER_BYTES)
        return response.status, answer.decode("utf-8", errors="replace")
    finally:
        connection.close()
