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


# --- The purchase's common body validated without the serializer (points.serializers.fast_purchase_input) -------

near_valid = {
    "member": st.one_of(
        st.integers(min_value=-5, max_value=10**19),
        st.from_regex(r"\A[0-9]{1,20}\Z"),
        st.sampled_from(["", " 12", "12 ", "１２", "+5", "-5", "1.0", "0x1f", True, None, 12.0]),
    ),
    "order_no": st.one_of(
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_./:-]{0,66}\Z"),
        st.sampled_from(["", " ORD-1", "ORD-1 ", "ORD-1\n", "-bad", "a" * 64, "a" * 65, "ORD 1", 12, None, "é1"]),
    ),
    "amount": st.one_of(
        st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{0,3})?\Z"),
        st.decimals(min_value=Decimal("-1"), max_value=Decimal("99999999999"), places=2).map(str),
        st.sampled_from(["0", "0.00", "0.01", "0.001", " 5", "5 ", "1e3", "NaN", "-1", "00.10", 5, 5.5, None]),
    ),
    "store": st.sampled_from(["BENCH01", "NOPE", "", None, 1, "bench01", "OFF01"]),
    "channel": st.sampled_from(["offline", "online", "app", "", "OFFLINE", None, 1, "wechat"]),
    "points_used": st.sampled_from([0, 1, None, "0"]),
    "lines": st.sampled_from([[], None]),
    "occurred_at": st.sampled_from(["2026-03-10T12:00:00+08:00"]),
    "member_no": st.sampled_from(["123"]),
    "unknown": st.sampled_from(["x"]),
}
purchase_bodies = st.fixed_dictionaries(
    {key: near_valid[key] for key in ("member", "order_no", "amount")},
    optional={key: near_valid[key] for key in ("store", "channel", "points_used", "lines", "occurred_at", "unknown")},
)


def _typed(data):
    """The validated data with each value's type and repr (Decimal('5.00') is not Decimal('5'); an enum member is
    not its string)."""
    return {
        key: (type(value), repr(value) if key != "store" else value.pk if value is not None else None)
        for key, value in data.items()
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=purchase_bodies, chinese=st.booleans())
def test_the_fast_purchase_input_is_the_serializers(store, body, chinese):
    from points.serializers import fast_purchase_input

    StoreFactory(code="OFF01", is_active=False) if not type(store).objects.filter(code="OFF01").exists() else None
    with translation.override("zh-hans" if chinese else "en"):
        fast = fast_purchase_input(body)
        reference = PurchaseInputSerializer(data=body, context={"reference": True})
        valid = reference.is_valid()
    if fast is None:
        return  # the view asks the serializer: its answer, errors included
    assert valid, (body, reference.errors)
    assert list(fast) == list(reference.validated_data)  # same keys, same order
    assert _typed(fast) == _typed(reference.validated_data)
    assert fast == reference.validated_data


def test_the_fast_purchase_input_takes_the_common_bodies(store):
    from members.models import PurchaseChannel
    from points.serializers import fast_purchase_input

    common = {"member": "17", "order_no": "BD-1", "amount": "129.90", "store": "BENCH01", "channel": "offline"}
    assert fast_purchase_input(common) == {
        "member": 17,
        "order_no": "BD-1",
        "amount": Decimal("129.90"),
        "store": store,
        "channel": "offline",
        "lines": [],
        "points_used": 0,
    }
    short = fast_purchase_input({"member": 17, "order_no": "A", "amount": "5"})
    assert short["amount"] == Decimal("5.00") and str(short["amount"]) == "5.00"
    assert short["channel"] is PurchaseChannel.OFFLINE and "store" not in short
    # Anything else is left to the serializer.
    for body in (
        {**common, "points_used": 0},
        {**common, "store": "NOPE"},
        {**common, "amount": 5},
        {**common, "member": " 17"},
        {**common, "extra": 1},
        [common],
    ):
        assert fast_purchase_input(body) is None, body


def test_an_error_rendered_in_one_language_first_does_not_stick_to_the_others(store):
    # DRF's range and length messages keep the text of their first rendering: shared across languages, the first
    # request's language would answer every later one.
    body = {"member": "1", "order_no": "A", "amount": "0"}
    answers = {}
    for language in ("zh-hans", "en", "zh-hans"):
        with translation.override(language):
            shared, reference = _both(PurchaseInputSerializer, body)
        assert shared == reference
        answers.setdefault(language, shared)
    assert answers["en"][1]["amount"] == ["Ensure this value is greater than or equal to 0.01."]
    assert answers["zh-hans"][1]["amount"] != answers["en"][1]["amount"]
