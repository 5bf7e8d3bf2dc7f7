"""/reports/retention/ against the shop of conftest.py: cohorts by join month in the business time zone."""

import pytest

pytestmark = pytest.mark.django_db

Q1 = {"from": "2026-01-01", "to": "2026-03-31"}


def test_cohorts_by_join_month_with_the_share_purchasing_in_each_following_month(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/retention/", Q1).json()
    assert body["cohorts"] == [
        # Ann (joined 10 Jan) and Fay (never buys); Hal, merged into Ann, is left out. Ann bought in January (P0)
        # and March.
        {"cohort": "2026-01", "members": 2, "purchasing": [1, 0, 1], "retained": [0.5, 0.0, 0.5]},
        # Gus (31 Jan 16:30 UTC = 1 Feb in Shanghai) bought in February; Bob in March (his 20 January purchase
        # came before he joined: no column).
        {"cohort": "2026-02", "members": 2, "purchasing": [1, 1], "retained": [0.5, 0.5]},
        # Cai, and Eve (28 Feb 16:30 UTC = 1 March): both bought in March (Eve's refund came after the period).
        {"cohort": "2026-03", "members": 2, "purchasing": [2], "retained": [1.0]},
    ]
    assert (body["from"], body["to"], body["store"], body["source"]) == ("2026-01-01", "2026-03-31", None, "live")


def test_refunds_in_the_range_uncount_and_empty_cohorts_have_zero_shares(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/retention/", {"from": "2026-03-01", "to": "2026-04-05"}).json()
    # Eve's P10 was refunded on 2 April, inside the range: only Cai counts in March; nobody of them in April.
    assert body["cohorts"] == [
        {"cohort": "2026-03", "members": 2, "purchasing": [1, 0], "retained": [0.5, 0.0]},
        {"cohort": "2026-04", "members": 0, "purchasing": [0], "retained": [0.0]},
    ]


def test_store_keeps_the_members_of_that_home_store(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/retention/", {**Q1, "store": "B001"}).json()
    assert body["cohorts"] == [
        {"cohort": "2026-01", "members": 0, "purchasing": [0, 0, 0], "retained": [0.0, 0.0, 0.0]},
        {"cohort": "2026-02", "members": 0, "purchasing": [0, 0], "retained": [0.0, 0.0]},
        {"cohort": "2026-03", "members": 1, "purchasing": [1], "retained": [1.0]},
    ]
    assert body["store"] == "B001"


def test_a_range_starting_mid_month_keeps_only_the_members_who_joined_from_then(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/retention/", {"from": "2026-01-15", "to": "2026-02-28"}).json()
    # Fay (20 Jan) only in January; Gus and Bob in February. Purchases up to 28 February: Gus's P11.
    assert body["cohorts"] == [
        {"cohort": "2026-01", "members": 1, "purchasing": [0, 0], "retained": [0.0, 0.0]},
        {"cohort": "2026-02", "members": 2, "purchasing": [1], "retained": [0.5]},
    ]


def test_the_default_range_is_the_last_12_join_months_up_to_yesterday(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/retention/").json()
    assert (body["from"], body["to"]) == ("2025-05-01", "2026-04-09")
    assert [cohort["cohort"] for cohort in body["cohorts"]] == [
        "2025-05",
        "2025-06",
        "2025-07",
        "2025-08",
        "2025-09",
        "2025-10",
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
        "2026-03",
        "2026-04",
    ]
    december = body["cohorts"][7]
    # Dan (joined 1 Dec 2025): P8 on 1 March (month 3) and P9 on 1 April (month 4), both in Shanghai time.
    assert december == {
        "cohort": "2025-12",
        "members": 1,
        "purchasing": [0, 0, 0, 1, 1],
        "retained": [0.0] * 3 + [1.0] * 2,
    }
    march = body["cohorts"][10]
    # Eve's purchase was refunded on 2 April, inside the range: Cai only.
    assert march == {"cohort": "2026-03", "members": 2, "purchasing": [1, 0], "retained": [0.5, 0.0]}


def test_retention_csv_has_a_row_per_cohort_and_month(shop, marketer_api):
    response = marketer_api.get("/api/v1/reports/retention/", {**Q1, "format": "csv"})
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert text.splitlines() == [
        "cohort,members,month,purchasing,retained",
        "2026-01,2,0,1,0.5",
        "2026-01,2,1,0,0.0",
        "2026-01,2,2,1,0.5",
        "2026-02,2,0,1,0.5",
        "2026-02,2,1,1,0.5",
        "2026-03,2,0,2,1.0",
    ]


def test_retention_refuses_a_channel(shop, marketer_api):
    response = marketer_api.get("/api/v1/reports/retention/", {**Q1, "channel": "online"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert list(response.json()["errors"]) == ["channel"]
