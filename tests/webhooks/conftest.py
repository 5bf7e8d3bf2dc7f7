"""A real HTTP receiver for the webhook tests: http.server in a thread of this process, on a free port of its own
(bound to 127.0.0.1), recording every request (headers and raw body) and every connection, answering with the
statuses a test gives it in turn. Stopped at the end of each test.

Delivery is driven by the tests (loyalty.webhooks.deliver_everything_due with a clock of their own): the nudge after
commit is off here, except where a test turns it on.
"""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loyalty import webhooks
from tests.jobs.conftest import broker, redis_server, start_worker  # noqa: F401 - the worker test's fixtures

SECRET = "receiver-secret-0123456789"


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def event_id(self):
        return self.headers["Loyalty-Event-Id"]


@dataclass
class Receiver:
    """The statuses to answer with, in turn (then `default_status`); `hold`: a threading.Event the handler waits on
    before answering (a receiver that hangs), `arrived`: set when a request has come in."""

    server: ThreadingHTTPServer = None
    statuses: list = field(default_factory=list)
    default_status: int = 200
    requests: list = field(default_factory=list)
    connections: int = 0
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)
    extra_headers: dict = field(default_factory=dict)

    @property
    def port(self):
        return self.server.server_address[1]

    def url(self, path="/hooks"):
        return f"http://127.0.0.1:{self.port}{path}"

    def event_ids(self):
        return [request.event_id for request in self.requests]

    def types(self):
        return [request.json["type"] for request in self.requests]


def _handler(receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            receiver.arrived.set()
            if receiver.hold is not None and len(receiver.requests) == 1:
                receiver.hold.wait(60)
            status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
            self.send_response(status)
            for name, value in receiver.extra_headers.items():
                self.send_header(name, value)
            answer = b"ok" if status < 300 else b"receiver says no"
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format, *args):
            pass

    return Handler


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def verify_request(self, request, client_address):
        self.receiver.connections += 1
        return True


@pytest.fixture
def receiver():
    state = Receiver()
    server = _CountingServer(("127.0.0.1", 0), _handler(state))
    server.receiver = state
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(autouse=True)
def _delivery_driven_by_the_tests(settings):
    settings.WEBHOOKS_KICK_ON_COMMIT = False
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True


@pytest.fixture
def subscribe(db):
    """subscribe(url, events=["*"], secret=SECRET): a subscription made through the service."""

    def make(url, events=("*",), secret=SECRET, **values):
        subscription, _ = webhooks.create_subscription(
            actor="test", values={"url": url, "events": list(events), "secret": secret, **values}
        )
        return subscription

    return make
