"""Low finding: `X-Forwarded-Proto` was trusted without a proxy. Production set SECURE_PROXY_SSL_HEADER whatever
NUM_PROXIES said, so a client talking plain http could write `X-Forwarded-Proto: https` itself and be taken for an
https request: no HTTPS redirect, and the secure-only cookies sent over http. The header is trusted only behind
NUM_PROXIES > 0 proxies of ours (as X-Forwarded-For is). The settings are read at start, so each case starts its own
production process (manage.py shell) and calls the API through Django's test client, as a client would."""

import json

import pytest

from tests.loyalty.test_settings import SAFE_SECRET, run_django

PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": SAFE_SECRET,
    "ALLOWED_HOSTS": "testserver",
    "SMS_BACKEND": "loyalty.messaging.HttpSmsBackend",
}

# A plain-http GET of /api/v1/me/ (no credentials) that claims https, and what the process made of it.
SNIPPET = """
import json
from django.conf import settings
from django.test import Client, RequestFactory
response = Client().get("/api/v1/me/", headers={"X-Forwarded-Proto": "https"})
request = RequestFactory().get("/api/v1/me/", headers={"X-Forwarded-Proto": "https"})
print("RESULT " + json.dumps({
    "header": getattr(settings, "SECURE_PROXY_SSL_HEADER", None),
    "is_secure": request.is_secure(),
    "status": response.status_code,
    "location": response.get("Location"),
}))
"""


def spoofed_https(num_proxies):
    result = run_django({**PRODUCTION, "NUM_PROXIES": str(num_proxies)}, "shell", "--no-imports", "-c", SNIPPET)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_without_a_proxy_a_client_written_x_forwarded_proto_is_ignored():
    assert spoofed_https(0) == {
        "header": None,
        "is_secure": False,
        "status": 301,  # the HTTPS redirect, as for any plain-http request
        "location": "https://testserver/api/v1/me/",
    }


@pytest.mark.parametrize("num_proxies", [1, 2])
def test_behind_our_proxies_their_x_forwarded_proto_says_https(num_proxies):
    assert spoofed_https(num_proxies) == {
        "header": ["HTTP_X_FORWARDED_PROTO", "https"],
        "is_secure": True,
        "status": 401,  # served (over https, as the proxy says): no credentials
        "location": None,
    }
