"""Low finding: the SMS client forwarded its bearer token on redirects. urllib follows a 301/302/303 answer to a POST
with a GET to the Location, Authorization header and all, whatever the host: a gateway (or whoever answers in its
name) could send the token anywhere. HttpSmsBackend follows no redirect: the answer is a failed send, logged with
its status only, and the token never leaves for the other host."""

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loyalty.models import Message, MessageStatus

pytestmark = pytest.mark.django_db

OTP_URL = "/api/v1/auth/otp"
PHONE = "+8613800138000"  # member_a's phone
TOKEN = "gateway-token-7f3c9a"
CODE_RE = re.compile(r"\b(\d{6})\b")


class _Recorder(BaseHTTPRequestHandler):
    """Records every request it gets (method, path, headers, body), then answers `answer`: a status and headers."""

    requests = None
    answer = (200, {})

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": self.rfile.read(length) if length else b"",
            }
        )
        status, headers = self.answer
        body = b'{"id": "sent-elsewhere"}' if status == 200 else b"moved"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _handle  # noqa: N815 - http.server's naming

    def log_message(self, *args):
        pass


class _Server:
    """A local HTTP server on a free port of its own, in a thread; stopped by close()."""

    def __init__(self, answer):
        self.requests = []
        handler = type("Handler", (_Recorder,), {"requests": self.requests, "answer": answer})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def servers(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    started = []

    def start(answer):
        server = _Server(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirecting_gateway_never_gets_the_token_sent_elsewhere_and_the_send_fails(
    status, settings, servers, anonymous, member_a, caplog, django_capture_on_commit_callbacks
):
    elsewhere = servers((200, {}))
    gateway = servers((status, {"Location": f"{elsewhere.url}/collect"}))
    settings.MESSAGE_BACKENDS = {**settings.MESSAGE_BACKENDS, "sms": "loyalty.messaging.HttpSmsBackend"}
    settings.SMS_HTTP_URL = f"{gateway.url}/send"
    settings.SMS_HTTP_TOKEN = TOKEN

    with caplog.at_level(logging.DEBUG), django_capture_on_commit_callbacks(execute=True):
        response = anonymous.post(OTP_URL, {"phone": PHONE}, format="json")

    assert response.status_code == 202
    # The gateway got the one POST, with the token (it is the operator's gateway) ...
    assert [(r["method"], r["path"], r["headers"]["Authorization"]) for r in gateway.requests] == [
        ("POST", "/send", f"Bearer {TOKEN}")
    ]
    # ... and the host it redirected to got nothing at all: no token, no code.
    assert elsewhere.requests == []
    message = Message.objects.get(recipient=PHONE, kind="otp")
    assert message.status == MessageStatus.FAILED
    assert message.status_reason == f"attempt 1: the SMS gateway answered {status} (a redirect, not followed)"
    assert message.provider_message_id == ""
    assert message.sent_at is None
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"message {message.pk} not sent: the SMS gateway answered {status} (a redirect)" in logged
    code = CODE_RE.search(gateway.requests[0]["body"].decode()).group(1)
    for secret in (code, TOKEN, PHONE, "moved"):
        assert secret not in logged
