"""/reports/top/: rewards by redemptions, categories and SKUs by amount or quantity from the order lines of the
shop of conftest.py (March's lines with something left after returns):

P1 TEA1 tea 2×30, CUP1 cups 1×40; P2 TEA1 tea 1×30 (CUP2 returned); P3 TEA1 tea 1×30, CAKE1 cake 1×50;
P5 TEA2 tea 1×40, CUP1 cups 1×30, CAKE1 cake 1×50; P7 CAKE2 cake 2×100; P8 TEA2 tea 1.5×39.99 (= 59.985);
P10 GIFT1 (no category) 1×100. (P4's lines: the order was refunded in full.)
"""

from datetime import datetime

import pytest
import time_machine

from points import services
from points.models import Reward
from tests.factories import MemberFactory
from tests.points.helpers import adjust

from .conftest import UTC, local

pytestmark = pytest.mark.django_db

MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def row(key, count, quantity, amount, name=None, points=None):
    return {"key": key, "name": name, "count": count, "quantity": quantity, "amount": amount, "points": points}


def test_top_categories_by_amount_and_by_quantity(shop, marketer_api):
    by_amount = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "categories"}).json()
    # cake: P3 50 + P5 50 + P7 200; tea: 60 + 30 + 30 + 40 + 59.985 = 219.985 → 219.99, 6.5 units; cups 40 + 30.
    assert by_amount["rows"] == [
        row("cake", 3, "4.000", "300.00"),
        row("tea", 5, "6.500", "219.99"),
        row("cups", 2, "2.000", "70.00"),
    ]
    assert (by_amount["kind"], by_amount["order_by"]) == ("categories", "amount")
    by_quantity = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "categories", "order_by": "quantity"})
    assert [line["key"] for line in by_quantity.json()["rows"]] == ["tea", "cake", "cups"]


def test_top_skus_ties_on_amount_go_to_the_larger_quantity(shop, marketer_api):
    body = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "skus"}).json()
    assert body["rows"] == [
        row("CAKE2", 1, "2.000", "200.00"),
        row("TEA1", 3, "4.000", "120.00"),
        row("CAKE1", 2, "2.000", "100.00"),
        row("GIFT1", 1, "1.000", "100.00"),
        row("TEA2", 2, "2.500", "99.99"),  # 40 + 59.985 = 99.985: below 100.00, though it rounds to 99.99
        row("CUP1", 2, "2.000", "70.00"),
    ]
    limited = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "skus", "limit": "2", "channel": "offline"})
    # Offline (P3 and P8 out): CAKE2 200, GIFT1 100, TEA1 90 (P1, P2), CUP1 70, CAKE1 50, TEA2 40; the first two.
    assert limited.json()["rows"] == [row("CAKE2", 1, "2.000", "200.00"), row("GIFT1", 1, "1.000", "100.00")]


def test_top_csv(shop, marketer_api):
    response = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "categories", "format": "csv"})
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert text.splitlines() == [
        "key,name,count,quantity,amount,points",
        "cake,,3,4.000,300.00,",
        "tea,,5,6.500,219.99,",
        "cups,,2,2.000,70.00,",
    ]


def redeem(member, reward, at, quantity=1, store=None):
    with time_machine.travel(at, tick=False):
        key = f"redeem-{member.pk}-{reward.pk}-{at.isoformat()}"
        return services.redeem_reward(
            actor="test",
            scope="test",
            key=key,
            fingerprint=services.request_fingerprint([key]),
            member_id=member.pk,
            reward_id=reward.pk,
            quantity=quantity,
            store=store,
        ).result


@pytest.fixture
def redemptions(store_a, store_b):
    """March: mug (100 points) × 1 by Ann at A001 on 5 March, by Cai at A001 at 00:30 on 1 March in Shanghai, and
    (version 2, "Mug 2026", 120 points) by Bob at A001 on 10 March; bag (50 points) × 2 by Bob at B001 and × 1 by Cai
    at A001; a bag by Ann cancelled; a bag by Ann on 1 April."""
    people = {
        name: MemberFactory(name=name, home_store=store_a, joined_at=local(2026, 1, 1, 10))
        for name in ("ann", "bob", "cai")
    }
    with time_machine.travel(local(2026, 2, 1, 10), tick=False):
        for member in people.values():
            adjust(member, 1000)
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100, stock=50)
    bag = Reward.objects.create(code="bag", name="Bag", kind="gift", cost_points=50, stock=50)
    redeem(people["ann"], mug, local(2026, 3, 5, 10), store=store_a)
    redeem(people["cai"], mug, datetime(2026, 2, 28, 16, 30, tzinfo=UTC), store=store_a)
    redeem(people["bob"], bag, local(2026, 3, 6, 10), quantity=2, store=store_b)
    redeem(people["cai"], bag, local(2026, 3, 7, 10), store=store_a)
    cancelled = redeem(people["ann"], bag, local(2026, 3, 8, 10))
    with time_machine.travel(local(2026, 3, 9, 10), tick=False):
        services.cancel_redemption(actor="test", redemption_id=int(cancelled["id"]))
        mug_2026 = services.add_reward_version(
            actor="test", reward_id=mug.pk, changes={"name": "Mug 2026", "cost_points": 120}
        )
    redeem(people["bob"], mug_2026, local(2026, 3, 10, 10), store=store_a)
    redeem(people["ann"], bag, local(2026, 4, 1, 10))
    return people


def test_top_rewards_by_redemptions_with_versions_together(redemptions, marketer_api):
    body = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "rewards"}).json()
    assert body["rows"] == [
        row("mug", 3, "3", None, name="Mug 2026", points=100 + 100 + 120),
        row("bag", 2, "3", None, name="Bag", points=100 + 50),
    ]
    assert body["order_by"] == "count"
    at_b = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "rewards", "store": "B001"}).json()
    assert at_b["rows"] == [row("bag", 1, "2", None, name="Bag", points=100)]


def test_top_rewards_refuses_a_channel_and_top_needs_a_kind(redemptions, marketer_api):
    response = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "rewards", "channel": "online"})
    assert (response.status_code, list(response.json()["errors"])) == (400, ["channel"])
    response = marketer_api.get("/api/v1/reports/top/", MARCH)
    assert (response.status_code, response.json()["errors"]) == (
        400,
        {"kind": ["Use one of: rewards, categories, skus."]},
    )
    for limit in ("0", "501", "²", "-1", "2.5"):
        response = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "skus", "limit": limit})
        assert (response.status_code, list(response.json()["errors"])) == (400, ["limit"])


def test_a_formula_in_a_sku_is_neutralised_in_the_csv(shop, marketer_api):
    from .conftest import Shop, line

    Shop(shop.store_a, shop.store_b).buy(
        shop.people["fay"], local(2026, 3, 30, 10), "9.00", lines=[line("=HYPERLINK(1)", "@cmd", 1, "9")]
    )
    response = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "skus", "format": "csv"})
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    assert text.splitlines()[-1] == "'=HYPERLINK(1),,1,1.000,9.00,"
    response = marketer_api.get("/api/v1/reports/top/", {**MARCH, "kind": "categories", "format": "csv"})
    assert b"".join(response.streaming_content).decode("utf-8-sig").splitlines()[-1] == "'@cmd,,1,1.000,9.00,"
