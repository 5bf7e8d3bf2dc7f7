"""The hot paths' input serializers share their bound fields between instances (loyalty.api.SharedFieldsSerializer:
no per-request deep copy of every field). The same bodies must give exactly what DRF's own per-instance copies
give: the same validity, the same validated data, the same errors (messages, order, nesting), in English and in
Chinese, also with many threads validating at once.

A serializer made with a context takes its own copies (DRF's way): that is the reference each body is compared
with here."""

import threading
from decimal import Decimal

import pytest
from django.utils import timezone, translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.api import SharedFieldsSerializer, flatten_errors
from points.serializers import (
    EventInputSerializer,
    MyRedemptionInputSerializer,
    PurchaseInputSerializer,
    RedemptionInputSerializer,
    RefundInputSerializer,
    SignInInputSerializer,
)
from tests.factories import StoreFactory

pytestmark = pytest.mark.django_db

SERIALIZERS = [
    PurchaseInputSerializer,
    RefundInputSerializer,
    EventInputSerializer,
    SignInInputSerializer,
    RedemptionInputSerializer,
    MyRedemptionInputSerializer,
]


def _outcome(serializer):
    valid = serializer.is_valid()
    if valid:
        data = dict(serializer.validated_data)
        if data.get("store") is not None:
            data["store"] = ("store", data["store"].pk)
        return True, data
    return False, flatten_errors(serializer.errors)


def _both(serializer_class, body):
    shared = serializer_class(data=body)
    reference = serializer_class(data=body, context={"reference": True})
    assert shared.fields is serializer_class(data=body).fields  # built once, shared
    assert reference.fields is not shared.fields
    return _outcome(shared), _outcome(reference)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "12",
            " 42 ",
            "1" * 19,
            "129.9",
            "129.90",
            "0.001",
            "1e3",
            "NaN",
            "-5",
            "9999999999.99",
            "10000000000.00",
            "ORD-1",
            "ord/2:x.y_z",
            "-bad",
            "a" * 65,
            "BENCH01",
            "NOPE",
            "offline",
            "online",
            "sign_in",
            "review",
            "2026-03-10T12:00:00+08:00",
            "1999-12-31T23:59:59Z",
            "2126-01-01T00:00:00Z",
            "not a date",
            "\x00",
            "\ud800",
            "１２",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
line = st.dictionaries(st.sampled_from(["sku", "category", "quantity", "unit_price", "extra"]), values, max_size=5)
FIELDS = [
    "member",
    "member_no",
    "order_no",
    "amount",
    "store",
    "channel",
    "occurred_at",
    "lines",
    "points_used",
    "refund_no",
    "type",
    "payload",
    "reward",
    "quantity",
    "unknown",
]
field_values = st.one_of(values, st.lists(line, max_size=3))
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=10),
    values,  # not an object at all
)


@pytest.fixture
def store(db):
    return StoreFactory(code="BENCH01")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, serializer_class=st.sampled_from(SERIALIZERS), chinese=st.booleans())
def test_shared_fields_give_what_copies_give(store, body, serializer_class, chinese):
    with translation.override("zh-hans" if chinese else "en"):
        shared, reference = _both(serializer_class, body)
    assert shared == reference


def test_a_valid_purchase_and_its_errors(store):
    body = {"member": "12", "order_no": "ORD-1", "amount": "129.9", "store": "BENCH01", "lines": []}
    shared, reference = _both(PurchaseInputSerializer, body)
    assert shared == reference
    assert shared == (
        True,
        {
            "member": 12,
            "order_no": "ORD-1",
            "amount": Decimal("129.90"),
            "store": ("store", store.pk),
            "channel": "offline",
            "lines": [],
            "points_used": 0,
        },
    )
    bad = {"member": "x", "amount": "0", "lines": [{"sku": "", "quantity": "1"}], "points_used": 1.5}
    shared, reference = _both(PurchaseInputSerializer, bad)
    assert shared == reference
    assert shared == (
        False,
        {
            "member": ["An id is a string of digits."],
            "order_no": ["This field is required."],
            "amount": ["Ensure this value is greater than or equal to 0.01."],
            "lines.0.sku": ["This field may not be blank."],
            "lines.0.unit_price": ["This field is required."],
            "points_used": ["A whole number is required."],
        },
    )


def test_threads_validating_at_once(store):
    """Many threads on the shared fields at once (gunicorn's threads do): each gets its own body's answer."""
    now = timezone.now().isoformat()
    cases = [
        {"member": str(i), "order_no": f"T-{i}", "amount": f"{i}.5", "occurred_at": now, "store": "BENCH01"}
        if i % 3
        else {"member": "-1", "order_no": f"-{i}", "amount": "x", "lines": [{"sku": "a" * (60 + i)}]}
        for i in range(1, 25)
    ]
    expected = [_both(PurchaseInputSerializer, body)[1] for body in cases]
    failures = []

    def work(offset):
        for round_ in range(40):
            index = (offset + round_) % len(cases)
            got = _outcome(PurchaseInputSerializer(data=cases[index]))
            if got != expected[index]:
                failures.append((index, got))

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_context_or_partial_takes_own_copies():
    assert issubclass(PurchaseInputSerializer, SharedFieldsSerializer)
    shared = PurchaseInputSerializer(data={}).fields
    assert PurchaseInputSerializer(data={}, partial=True).fields is not shared
    assert PurchaseInputSerializer(data={}, context={"request": None}).fields is not shared
