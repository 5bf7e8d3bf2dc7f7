"""The top categories and SKUs of the standard ranges come from the lists the report_results job stores, answered
byte for byte as the live computation answers them (the shop of conftest.py; the job runs for 9 April, so the
ranges are 11 March … 9 April and 10 January … 9 April).

In both ranges Eve's P10 (GIFT1) was refunded in full on 2 April and does not count, nor does Bob's P4. The 90 days
hold every March line of test_top.py but GIFT1; the 30 days hold P3 (TEA1 tea 1×30, CAKE1 cake 1×50) and P7
(CAKE2 cake 2×100; its 50.00 refund returned no line).
"""

import pytest

from loyalty.scheduling import run_inline
from reports import report_results
from reports.models import ReportResult

from .conftest import Shop, line, local
from .test_stored_results import AS_OF
from .test_top import row

pytestmark = pytest.mark.django_db

LAST_30 = {"from": "2026-03-11", "to": "2026-04-09"}
LAST_90 = {"from": "2026-01-10", "to": "2026-04-09"}
EXPECTED = {
    ("categories", "amount", "30"): [row("cake", 2, "3.000", "250.00"), row("tea", 1, "1.000", "30.00")],
    ("categories", "quantity", "30"): [row("cake", 2, "3.000", "250.00"), row("tea", 1, "1.000", "30.00")],
    ("skus", "amount", "30"): [
        row("CAKE2", 1, "2.000", "200.00"),
        row("CAKE1", 1, "1.000", "50.00"),
        row("TEA1", 1, "1.000", "30.00"),
    ],
    ("skus", "quantity", "30"): [  # CAKE1 and TEA1: 1 each, the larger amount first
        row("CAKE2", 1, "2.000", "200.00"),
        row("CAKE1", 1, "1.000", "50.00"),
        row("TEA1", 1, "1.000", "30.00"),
    ],
    ("categories", "amount", "90"): [
        row("cake", 3, "4.000", "300.00"),
        row("tea", 5, "6.500", "219.99"),
        row("cups", 2, "2.000", "70.00"),
    ],
    ("categories", "quantity", "90"): [
        row("tea", 5, "6.500", "219.99"),
        row("cake", 3, "4.000", "300.00"),
        row("cups", 2, "2.000", "70.00"),
    ],
    ("skus", "amount", "90"): [
        row("CAKE2", 1, "2.000", "200.00"),
        row("TEA1", 3, "4.000", "120.00"),
        row("CAKE1", 2, "2.000", "100.00"),
        row("TEA2", 2, "2.500", "99.99"),
        row("CUP1", 2, "2.000", "70.00"),
    ],
    ("skus", "quantity", "90"): [  # CAKE2, CAKE1, CUP1: 2 each, by amount
        row("TEA1", 3, "4.000", "120.00"),
        row("TEA2", 2, "2.500", "99.99"),
        row("CAKE2", 1, "2.000", "200.00"),
        row("CAKE1", 2, "2.000", "100.00"),
        row("CUP1", 2, "2.000", "70.00"),
    ],
}
RANGES = {"30": LAST_30, "90": LAST_90}


def ask(api, kind, order_by, days, **query):
    return api.get("/api/v1/reports/top/", {**RANGES[days], "kind": kind, "order_by": order_by, **query})


def every_request():
    """(kind, order_by, days, query items) of every standard list, whole, cut to 1, 2 and 500 rows, and as CSV."""
    for kind, order_by, days in EXPECTED:
        for query in ((), (("limit", "1"),), (("limit", "2"),), (("limit", "500"),), (("format", "csv"),)):
            yield kind, order_by, days, query


def content(response):
    assert response.status_code == 200
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def test_the_job_stores_both_orders_of_each_kind_and_range(shop):
    run_inline("report_results", AS_OF)
    stored = ReportResult.objects.filter(report="top")
    assert stored.count() == 8
    for (kind, order_by, days), rows in EXPECTED.items():
        result = stored.get(params__kind=kind, params__order_by=order_by, params__from=RANGES[days]["from"]).result
        assert result == {
            **RANGES[days],
            "store": None,
            "channel": None,
            "kind": kind,
            "order_by": order_by,
            "rows": rows,
        }


def test_the_standard_ranges_are_answered_from_the_stored_lists(shop, marketer_api, django_assert_max_num_queries):
    run_inline("report_results", AS_OF)
    marketer_api.get("/api/v1/reports/behaviour/")  # a first request: what authentication caches
    for (kind, order_by, days), rows in EXPECTED.items():
        with django_assert_max_num_queries(3) as captured:
            body = ask(marketer_api, kind, order_by, days).json()
        assert body["rows"] == rows
        assert not any("members_purchaseline" in query["sql"] for query in captured.captured_queries)
    # The default request (kind only: the last 30 days by amount, 20 rows) is a standard one.
    default = marketer_api.get("/api/v1/reports/top/", {"kind": "skus"}).json()
    assert (default["from"], default["rows"]) == ("2026-03-11", EXPECTED["skus", "amount", "30"])
    # A purchase recorded after the job is not in the stored lists; a request with a filter counts it, live.
    Shop(shop.store_a, shop.store_b).buy(
        shop.people["fay"], local(2026, 4, 9, 20), "500.00", lines=[line("CUP9", "cups", 1, "500")]
    )
    assert ask(marketer_api, "skus", "amount", "30").json()["rows"] == EXPECTED["skus", "amount", "30"]
    live = ask(marketer_api, "skus", "amount", "30", channel="offline").json()
    assert [item["key"] for item in live["rows"]] == ["CUP9", "CAKE2"]  # P3 was online
    narrower = marketer_api.get("/api/v1/reports/top/", {"kind": "skus", "from": "2026-03-12"}).json()
    assert narrower["rows"][0] == row("CUP9", 1, "1.000", "500.00")


def test_stored_and_live_answers_are_the_same_bytes(shop, marketer_api):
    live = {
        (kind, order_by, days, query): content(ask(marketer_api, kind, order_by, days, **dict(query)))
        for kind, order_by, days, query in every_request()
    }
    run_inline("report_results", AS_OF)
    assert ReportResult.objects.filter(report="top").count() == 8
    for (kind, order_by, days, query), body in live.items():
        assert content(ask(marketer_api, kind, order_by, days, **dict(query))) == body, (kind, order_by, days, query)
    # The figures are the hand-computed ones, cut to the limit.
    assert (
        live["skus", "quantity", "90", (("limit", "2"),)]
        .decode()
        .endswith(
            '"rows":[{"key":"TEA1","name":null,"count":3,"quantity":"4.000","amount":"120.00","points":null},'
            '{"key":"TEA2","name":null,"count":2,"quantity":"2.500","amount":"99.99","points":null}]}'
        )
    )


def test_a_limit_beyond_the_stored_rows_is_computed_live(shop, marketer_api, monkeypatch):
    monkeypatch.setattr(report_results, "TOP_LIMIT", 2)
    run_inline("report_results", AS_OF)
    stored = ReportResult.objects.get(
        report="top", params__kind="skus", params__order_by="amount", params__from="2026-01-10"
    )
    assert [item["key"] for item in stored.result["rows"]] == ["CAKE2", "TEA1"]
    stored.result["rows"][0]["count"] = 99  # marks the stored answer
    stored.save()
    assert [item["count"] for item in ask(marketer_api, "skus", "amount", "90", limit="2").json()["rows"]] == [99, 3]
    three = ask(marketer_api, "skus", "amount", "90", limit="3").json()["rows"]
    assert three == EXPECTED["skus", "amount", "90"][:3]


def test_top_rewards_are_always_live(shop, marketer_api):
    run_inline("report_results", AS_OF)
    assert not ReportResult.objects.filter(report="top", params__kind="rewards").exists()
    assert marketer_api.get("/api/v1/reports/top/", {"kind": "rewards"}).json()["rows"] == []
