"""/reports/basket/ against the shop of conftest.py: category pairs counted once per order, from order lines.

March's counted orders with a categorised line (N = 6): P1 {tea, cups}, P2 {tea} (its CUP2 line was returned),
P3 {tea, cake}, P5 {tea, cups, cake}, P7 {cake}, P8 {tea}. n(tea) = 5, n(cups) = 2, n(cake) = 3;
n(cups, tea) = 2, n(cake, tea) = 2, n(cake, cups) = 1.
"""

import pytest

pytestmark = pytest.mark.django_db

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def pair(a, b, orders, support, confidence, lift):
    return {"a": a, "b": b, "orders": orders, "support": support, "confidence": confidence, "lift": lift}


# support = n(a,b)/6; confidence(a→b) = n(a,b)/n(a); lift = n(a,b)·6/(n(a)·n(b)).
CUPS_TEA = [pair("cups", "tea", 2, 0.3333, 1.0, 1.2), pair("tea", "cups", 2, 0.3333, 0.4, 1.2)]
CAKE_CUPS = [pair("cups", "cake", 1, 0.1667, 0.5, 1.0), pair("cake", "cups", 1, 0.1667, 0.3333, 1.0)]
CAKE_TEA = [pair("cake", "tea", 2, 0.3333, 0.6667, 0.8), pair("tea", "cake", 2, 0.3333, 0.4, 0.8)]


def test_pairs_in_both_directions_sorted_by_lift_then_support_then_confidence(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/basket/", MARCH).json()
    assert body["pairs"] == CUPS_TEA + CAKE_CUPS + CAKE_TEA
    assert (body["orders"], body["min_support"], body["source"]) == (6, 0.01, "live")


def test_min_support_compares_the_exact_support(shop, marketer_api):
    # support(cake, cups) = 1/6 = 0.16666…: kept at 0.1666, dropped at 0.1667 (though it reads 0.1667 rounded).
    kept = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "min_support": "0.1666"}).json()
    assert kept["pairs"] == CUPS_TEA + CAKE_CUPS + CAKE_TEA
    dropped = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "min_support": "0.1667"}).json()
    assert dropped["pairs"] == CUPS_TEA + CAKE_TEA
    assert dropped["min_support"] == 0.1667
    # The other pairs' 2/6 = 0.3333… is below 0.3334.
    none = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "min_support": "0.3334"}).json()
    assert none["pairs"] == []


def test_basket_by_channel_and_store(shop, marketer_api):
    online = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "channel": "online"}).json()
    # Online: P3 {tea, cake}, P8 {tea}: N = 2, n(tea) = 2, n(cake) = 1, n(cake, tea) = 1.
    assert online["orders"] == 2
    assert online["pairs"] == [pair("cake", "tea", 1, 0.5, 1.0, 1.0), pair("tea", "cake", 1, 0.5, 0.5, 1.0)]
    at_threshold = {**MARCH, "channel": "online", "min_support": "0.5"}
    assert marketer_api.get("/api/v1/reports/basket/", at_threshold).json()["pairs"] == online["pairs"]
    above = {**MARCH, "channel": "online", "min_support": "0.5001"}
    assert marketer_api.get("/api/v1/reports/basket/", above).json()["pairs"] == []
    at_b = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "store": "B001"}).json()
    # At B001: P3 {tea, cake}, P7 {cake}: N = 2, n(cake) = 2, n(tea) = 1; lift = 1·2/(1·2) = 1.
    assert at_b["orders"] == 2
    assert at_b["pairs"] == [pair("tea", "cake", 1, 0.5, 1.0, 1.0), pair("cake", "tea", 1, 0.5, 0.5, 1.0)]


def test_limit_and_csv(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "limit": "3"}).json()
    assert body["pairs"] == CUPS_TEA + CAKE_CUPS[:1]
    response = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "limit": "2", "format": "csv"})
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert text.splitlines() == [
        "a,b,orders,support,confidence,lift",
        "cups,tea,2,0.3333,1.0,1.2",
        "tea,cups,2,0.3333,0.4,1.2",
    ]


def test_the_default_range_is_the_90_days_ending_yesterday(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/basket/").json()
    # 10 January … 9 April: March's orders less P10 (uncategorised anyway); no other lines.
    assert (body["from"], body["to"], body["orders"]) == ("2026-01-10", "2026-04-09", 6)
    assert body["pairs"] == CUPS_TEA + CAKE_CUPS + CAKE_TEA


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "abc", "NaN", "Infinity"])
def test_a_bad_min_support_is_a_400(shop, marketer_api, value):
    response = marketer_api.get("/api/v1/reports/basket/", {**MARCH, "min_support": value})
    assert response.status_code == 400
    assert response.json()["errors"] == {"min_support": ["Use a number above 0 and at most 1, e.g. 0.01."]}
