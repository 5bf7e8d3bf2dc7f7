"""/reports/repurchase/ and /reports/behaviour/ against the March shop (tests/reports/behaviour/conftest.py), every
figure worked out by hand there."""

import pytest

pytestmark = pytest.mark.django_db

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def figures(body, *fields):
    return {field: body[field] for field in fields}


BEHAVIOUR_FIELDS = (
    "orders",
    "revenue",
    "average_order_value",
    "purchasing_members",
    "purchase_frequency",
    "purchase_cycle_days",
)


def test_repurchase_counts_members_with_two_counted_purchases(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/repurchase/", MARCH).json()
    # Ann (P1, P2, P3) and Bob (P5, P6; P4 fully refunded) repeat; Cai, Dan (P8 at 00:30 on 1 March in Shanghai)
    # and Eve (refunded after March) bought once.
    assert body == {
        "from": "2026-03-01",
        "to": "2026-03-31",
        "store": None,
        "channel": None,
        "purchasing_members": 5,
        "repeat_members": 2,
        "repurchase_rate": 0.4,
        "source": "live",
        "computed_at": "2026-04-10T04:00:00+00:00",
    }


def test_a_refund_dated_in_the_period_uncounts_an_order_and_a_later_one_does_not(shop, marketer_api):
    # To 5 April: Eve's refund on 2 April is inside (P10 no longer counts) and Dan's P9 (1 April) counts: Dan
    # repeats too. Ann, Bob, Cai, Dan purchase; Ann, Bob, Dan repeat.
    body = marketer_api.get("/api/v1/reports/repurchase/", {"from": "2026-03-01", "to": "2026-04-05"}).json()
    assert figures(body, "purchasing_members", "repeat_members", "repurchase_rate") == {
        "purchasing_members": 4,
        "repeat_members": 3,
        "repurchase_rate": 0.75,
    }


def test_repurchase_by_store_and_channel(shop, marketer_api):
    at_a = marketer_api.get("/api/v1/reports/repurchase/", {**MARCH, "store": "A001"}).json()
    # At A001: Ann P1, P2; Bob P5, P6; Dan P8; Eve P10.
    assert figures(at_a, "store", "purchasing_members", "repeat_members", "repurchase_rate") == {
        "store": "A001",
        "purchasing_members": 4,
        "repeat_members": 2,
        "repurchase_rate": 0.5,
    }
    online = marketer_api.get("/api/v1/reports/repurchase/", {**MARCH, "channel": "online"}).json()
    assert figures(online, "channel", "purchasing_members", "repeat_members", "repurchase_rate") == {
        "channel": "online",
        "purchasing_members": 2,
        "repeat_members": 0,
        "repurchase_rate": 0.0,
    }


def test_repurchase_rate_rounds_half_up_to_four_decimals(shop, marketer_api):
    body = marketer_api.get(
        "/api/v1/reports/repurchase/", {"from": "2026-03-10", "to": "2026-03-20", "channel": "offline"}
    ).json()
    # Offline, 10-20 March: Bob P5, P6; Cai P7; Eve P10 (refunded after the period) → 1 repeat of 3 = 0.33333….
    assert figures(body, "purchasing_members", "repeat_members", "repurchase_rate") == {
        "purchasing_members": 3,
        "repeat_members": 1,
        "repurchase_rate": 0.3333,
    }


def test_behaviour_over_march(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/behaviour/", MARCH).json()
    # Counted: P1 100, P2 30 (net), P3 80, P5 120, P6 30, P7 150 (net), P8 59.99, P10 100 = 669.99 in 8 orders:
    # 83.74875 → 83.75. Gaps between consecutive purchases: Ann 2→5 March 3 days, 5→20 March 15; Bob 0 (P5 and
    # P6 the same day) → median of [0, 3, 15] = 3.
    assert body == {
        "from": "2026-03-01",
        "to": "2026-03-31",
        "store": None,
        "channel": None,
        "orders": 8,
        "revenue": "669.99",
        "average_order_value": "83.75",
        "purchasing_members": 5,
        "purchase_frequency": 1.6,
        "purchase_cycle_days": 3.0,
        "source": "live",
        "computed_at": "2026-04-10T04:00:00+00:00",
    }


def test_behaviour_median_of_an_even_count_is_the_mean_of_the_middle_two(shop, marketer_api):
    at_a = marketer_api.get("/api/v1/reports/behaviour/", {**MARCH, "store": "A001"}).json()
    # At A001: P1 100, P2 30, P5 120, P6 30, P8 59.99, P10 100 = 439.99 in 6 (73.3316… → 73.33); Ann, Bob, Dan,
    # Eve; gaps Ann 3, Bob 0 → 1.5.
    assert figures(at_a, *BEHAVIOUR_FIELDS) == {
        "orders": 6,
        "revenue": "439.99",
        "average_order_value": "73.33",
        "purchasing_members": 4,
        "purchase_frequency": 1.5,
        "purchase_cycle_days": 1.5,
    }
    # To 5 April: P10 out (refunded 2 April), P9 in (Dan, 1 April): 669.99 − 100 + 40 = 609.99 in 8; gaps Ann 3,
    # 15, Bob 0, Dan 1 March → 1 April 31 → median of [0, 3, 15, 31] = 9.
    longer = marketer_api.get("/api/v1/reports/behaviour/", {"from": "2026-03-01", "to": "2026-04-05"}).json()
    assert figures(longer, *BEHAVIOUR_FIELDS) == {
        "orders": 8,
        "revenue": "609.99",
        "average_order_value": "76.25",
        "purchasing_members": 4,
        "purchase_frequency": 2.0,
        "purchase_cycle_days": 9.0,
    }


def test_behaviour_average_order_value_rounds_half_up_and_cycle_is_null_without_repeats(shop, marketer_api):
    online = marketer_api.get("/api/v1/reports/behaviour/", {**MARCH, "channel": "online"}).json()
    # Online: P3 80.00 (Ann), P8 59.99 (Dan): 139.99 / 2 = 69.995 → 70.00; nobody bought twice online.
    assert figures(online, *BEHAVIOUR_FIELDS) == {
        "orders": 2,
        "revenue": "139.99",
        "average_order_value": "70.00",
        "purchasing_members": 2,
        "purchase_frequency": 1.0,
        "purchase_cycle_days": None,
    }
    empty = marketer_api.get("/api/v1/reports/behaviour/", {"from": "2025-01-01", "to": "2025-01-31"}).json()
    assert figures(empty, *BEHAVIOUR_FIELDS) == {
        "orders": 0,
        "revenue": "0.00",
        "average_order_value": "0.00",
        "purchasing_members": 0,
        "purchase_frequency": 0.0,
        "purchase_cycle_days": None,
    }


def test_the_default_period_is_the_30_days_ending_yesterday(shop, marketer_api):
    # Today is 10 April: 11 March … 9 April. Counted: P3 80 (Ann), P7 150 (Cai), P9 40 (Dan); P10 (12 March) was
    # refunded on 2 April, inside.
    body = marketer_api.get("/api/v1/reports/behaviour/").json()
    assert figures(body, "from", "to", "orders", "revenue", "purchasing_members") == {
        "from": "2026-03-11",
        "to": "2026-04-09",
        "orders": 3,
        "revenue": "270.00",
        "purchasing_members": 3,
    }
    assert marketer_api.get("/api/v1/reports/repurchase/").json()["purchasing_members"] == 3


def test_csv_downloads_carry_the_same_figures(shop, marketer_api):
    response = marketer_api.get("/api/v1/reports/repurchase/", {**MARCH, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert text.splitlines() == [
        "from,to,store,channel,purchasing_members,repeat_members,repurchase_rate",
        "2026-03-01,2026-03-31,,,5,2,0.4",
    ]
    response = marketer_api.get("/api/v1/reports/behaviour/", {**MARCH, "store": "A001", "format": "csv"})
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert text.splitlines()[1] == "2026-03-01,2026-03-31,A001,,6,439.99,73.33,4,1.5,1.5"
