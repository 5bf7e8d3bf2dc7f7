"""The production backends against a real HTTP server of the test's own: what WeChat's template message and the
SMS gateway are sent, and how their answers become sent, retried or failed."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loyalty.messaging import DeliveryFailed, HttpSmsBackend, HttpWechatBackend
from loyalty.models import Message, MessageTemplate


class Provider(BaseHTTPRequestHandler):
    answers: list = []
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Provider.received.append((self.headers["Authorization"], body))
        status, answer = Provider.answers.pop(0)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    Provider.answers, Provider.received = [], []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/send"
    finally:
        httpd.shutdown()
        httpd.server_close()


def wechat_message(template_id="TPL-42"):
    template = MessageTemplate.objects.get(kind="tier_up", channel="wechat", language="en")
    template.provider_template_id = template_id
    template.save()
    return Message(
        pk=7,
        channel="wechat",
        kind="tier_up",
        recipient="o-li",
        template=template,
        body="first: You are now Gold!\nkeyword1: Silver\nkeyword2: Gold\nremark: until 2027-06-30.",
    )


@pytest.mark.django_db
def test_wechat_gets_its_template_message_and_its_msgid_is_kept(server, settings):
    settings.WECHAT_HTTP_URL, settings.WECHAT_HTTP_TOKEN = server, "relay-token"
    Provider.answers = [(200, {"errcode": 0, "errmsg": "ok", "msgid": 200228332})]
    message = wechat_message()
    assert HttpWechatBackend().deliver(message, message.body) == "200228332"
    assert Provider.received == [
        (
            "Bearer relay-token",
            {
                "touser": "o-li",
                "template_id": "TPL-42",
                "data": {
                    "first": {"value": "You are now Gold!"},
                    "keyword1": {"value": "Silver"},
                    "keyword2": {"value": "Gold"},
                    "remark": {"value": "until 2027-06-30."},
                },
            },
        )
    ]


@pytest.mark.django_db
def test_a_wechat_error_code_is_a_failure_with_wechats_answer(server, settings):
    settings.WECHAT_HTTP_URL = server
    Provider.answers = [(200, {"errcode": 43004, "errmsg": "require subscribe"})]
    message = wechat_message()
    with pytest.raises(DeliveryFailed) as failed:
        HttpWechatBackend().deliver(message, message.body)
    assert (str(failed.value), failed.value.permanent) == ("errcode 43004: require subscribe", False)
    with pytest.raises(DeliveryFailed) as no_template:
        HttpWechatBackend().deliver(wechat_message(template_id=""), "first: x")
    assert (str(no_template.value), no_template.value.permanent) == (
        "the WeChat template has no provider template id",
        True,
    )


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)])
def test_the_sms_gateways_http_errors_are_failures_retried_unless_the_request_was_refused(
    server, settings, status, permanent
):
    settings.SMS_HTTP_URL = server
    Provider.answers = [(status, {"error": "no"})]
    with pytest.raises(DeliveryFailed) as failed:
        HttpSmsBackend().deliver(Message(channel="sms", recipient="+8613800138000"), "hi")
    assert (str(failed.value), failed.value.permanent) == (f'HTTP {status}: {{"error": "no"}}', permanent)
