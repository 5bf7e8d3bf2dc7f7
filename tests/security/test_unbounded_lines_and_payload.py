"""Low finding: purchase `lines` (also the preview's and a refund's) and an event's `payload` were unbounded
(20,000 lines were accepted). Now at most 500 lines and a 16 KB payload (its JSON), else 400 `invalid` naming the
field; nothing written."""

import json

import pytest

from members.models import Purchase
from points.models import LedgerEntry

pytestmark = pytest.mark.django_db

PURCHASES = "/api/v1/purchases/"


def post(client, path, body, key):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def lines(count):
    return [{"sku": f"S{i}", "quantity": "1", "unit_price": "0.01"} for i in range(count)]


def assert_invalid(response, field):
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == [field]


def test_the_limits():
    from points.serializers import MAX_LINES, MAX_PAYLOAD_BYTES

    assert (MAX_LINES, MAX_PAYLOAD_BYTES) == (500, 16 * 1024)


@pytest.mark.parametrize("path", [PURCHASES, PURCHASES + "preview/"])
def test_501_purchase_lines_are_400_naming_lines(pos_a, member_a, path):
    body = {"member": str(member_a.pk), "order_no": "L1", "amount": "5.01", "lines": lines(501)}

    assert_invalid(post(pos_a, path, body, key="l501"), "lines")
    assert not Purchase.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_500_purchase_lines_are_accepted(pos_a, member_a):
    body = {"member": str(member_a.pk), "order_no": "L2", "amount": "5.00", "lines": lines(500)}

    response = post(pos_a, PURCHASES, body, key="l500")

    assert response.status_code == 201
    assert Purchase.objects.get().order_no == "L2"


def test_501_refund_lines_are_400_naming_lines(pos_a, member_a):
    created = post(pos_a, PURCHASES, {"member": str(member_a.pk), "order_no": "R1", "amount": "10.00"}, key="r1")
    assert created.status_code == 201
    refund_lines = [{"sku": f"S{i}", "quantity": "1"} for i in range(501)]

    response = post(
        pos_a,
        f"{PURCHASES}{created.json()['id']}/refunds/",
        {"amount": "1.00", "refund_no": "RF1", "lines": refund_lines},
        key="rf1",
    )

    assert_invalid(response, "lines")
    assert not LedgerEntry.objects.filter(kind="refund").exists()


def payload_of_size(size):
    payload = {"note": ""}
    payload["note"] = "x" * (size - len(json.dumps(payload, separators=(",", ":"))))
    assert len(json.dumps(payload, separators=(",", ":")).encode()) == size
    return payload


def test_an_event_payload_of_16_kb_plus_one_is_400_naming_payload(pos_a, member_a):
    body = {"member": str(member_a.pk), "type": "share", "payload": payload_of_size(16 * 1024 + 1)}

    assert_invalid(post(pos_a, "/api/v1/events/", body, key="p1"), "payload")
    assert not LedgerEntry.objects.exists()


def test_an_event_payload_of_16_kb_is_accepted(pos_a, member_a):
    body = {"member": str(member_a.pk), "type": "share", "payload": payload_of_size(16 * 1024)}

    response = post(pos_a, "/api/v1/events/", body, key="p2")

    assert response.status_code in (200, 201), response.json()
