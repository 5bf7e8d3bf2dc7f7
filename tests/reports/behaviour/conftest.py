"""A small shop in March 2026 (business time zone Asia/Shanghai) whose behaviour figures are worked out by hand in
the tests: purchases with order lines, refunds inside and after the period, purchases on both sides of midnight,
members joining in January to March. Recorded through the points services, as the API would."""

import itertools
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from members.models import MemberStatus
from points import services
from tests.factories import MemberFactory

SHANGHAI, UTC = ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC")
TODAY = datetime(2026, 4, 10, 12, 0, tzinfo=SHANGHAI)  # yesterday: 2026-04-09
_numbers = itertools.count(1)


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def line(sku, category, quantity, unit_price):
    return {"sku": sku, "category": category, "quantity": Decimal(quantity), "unit_price": Decimal(unit_price)}


@pytest.fixture(autouse=True)
def today():
    """Every test of this folder runs on 2026-04-10 (so the default ranges end on 2026-04-09)."""
    with time_machine.travel(TODAY, tick=False):
        yield TODAY


class Shop:
    def __init__(self, store_a, store_b):
        self.store_a, self.store_b = store_a, store_b

    def member(self, name, joined_at, home_store=None, **fields):
        return MemberFactory(name=name, joined_at=joined_at, home_store=home_store or self.store_a, **fields)

    def buy(self, member, at, amount, *, store=None, channel="offline", lines=()):
        store = store or self.store_a
        order_no = f"O{next(_numbers):04d}"
        body = {"member": member.pk, "order_no": order_no, "amount": amount, "at": at.isoformat()}
        result = services.record_purchase(
            actor="test",
            source=f"store:{store.code}",
            member_id=member.pk,
            order_no=order_no,
            amount=Decimal(amount),
            fingerprint=services.request_fingerprint(body),
            store=store,
            channel=channel,
            occurred_at=at,
            lines=list(lines),
        ).result
        return int(result["id"])

    def refund(self, purchase_id, amount, at, lines=()):
        refund_no = f"R{next(_numbers):04d}"
        services.record_refund(
            actor="test",
            purchase_id=purchase_id,
            refund_no=refund_no,
            amount=Decimal(amount),
            fingerprint=services.request_fingerprint([purchase_id, amount, refund_no]),
            lines=[{"sku": sku, "quantity": Decimal(quantity)} for sku, quantity in lines],
            occurred_at=at,
        )


@pytest.fixture
def shop(store_a, store_b):
    """The March shop. Counted in March (amount − refunds dated in March > 0), with their categories:

    P1  Ann 03-02 A001 offline 100.00  TEA1 tea 2×30, CUP1 cups 1×40                  {tea, cups}
    P2  Ann 03-05 A001 offline  50.00  TEA1 tea 1×30, CUP2 cups 1×20; refund 20.00 (CUP2 returned) on 03-06:
                                       net 30.00                                      {tea}
    P3  Ann 03-20 B001 online   80.00  TEA1 tea 1×30, CAKE1 cake 1×50                 {tea, cake}
    P4  Bob 03-03 A001 offline  60.00  CUP1 cups 2×30; refunded in full on 03-04: does not count
    P5  Bob 03-10 A001 offline 120.00  TEA2 tea 1×40, CUP1 cups 1×30, CAKE1 cake 1×50 {tea, cups, cake}
    P6  Bob 03-10 18:00 A001    30.00  no lines
    P7  Cai 03-15 B001 offline 200.00  CAKE2 cake 2×100; refund 50.00 on 03-16: net 150.00   {cake}
    P8  Dan 2026-02-28 16:30 UTC = 03-01 00:30 in Shanghai, A001 online 59.99  TEA2 tea 1.5×39.99 {tea}
    P9  Dan 2026-03-31 16:30 UTC = 04-01 00:30 in Shanghai, A001 40.00: April
    P10 Eve 03-12 A001 offline 100.00  GIFT1 (no category) 1×100; refunded in full on 04-02 (after March)
    P11 Gus 02-10 A001 10.00; P12 Bob 01-20 A001 25.00 (before he joined); P0 Ann 01-15 A001 20.00

    Members: Ann joined 01-10, Fay 01-20 (never buys), Hal 01-05 (merged into Ann), Gus 2026-01-31 16:30 UTC
    (= 02-01 in Shanghai), Bob 02-15, Eve 2026-02-28 16:30 UTC (= 03-01), Cai 03-05 (home store B001),
    Dan 2025-12-01.
    """
    s = Shop(store_a, store_b)
    ann = s.member("Ann", local(2026, 1, 10, 10))
    bob = s.member("Bob", local(2026, 2, 15, 10))
    cai = s.member("Cai", local(2026, 3, 5, 10), home_store=store_b)
    dan = s.member("Dan", local(2025, 12, 1, 10))
    eve = s.member("Eve", datetime(2026, 2, 28, 16, 30, tzinfo=UTC))
    fay = s.member("Fay", local(2026, 1, 20, 10))
    gus = s.member("Gus", datetime(2026, 1, 31, 16, 30, tzinfo=UTC))
    hal = s.member("Hal", local(2026, 1, 5, 10), status=MemberStatus.MERGED, merged_into=ann)
    s.people = {"ann": ann, "bob": bob, "cai": cai, "dan": dan, "eve": eve, "fay": fay, "gus": gus, "hal": hal}

    s.buy(ann, local(2026, 1, 15, 10), "20.00")
    s.buy(ann, local(2026, 3, 2, 10), "100.00", lines=[line("TEA1", "tea", 2, "30"), line("CUP1", "cups", 1, "40")])
    p2 = s.buy(ann, local(2026, 3, 5, 10), "50.00", lines=[line("TEA1", "tea", 1, "30"), line("CUP2", "cups", 1, "20")])
    s.refund(p2, "20.00", local(2026, 3, 6, 10), lines=[("CUP2", 1)])
    s.buy(
        ann,
        local(2026, 3, 20, 10),
        "80.00",
        store=store_b,
        channel="online",
        lines=[line("TEA1", "tea", 1, "30"), line("CAKE1", "cake", 1, "50")],
    )
    p4 = s.buy(bob, local(2026, 3, 3, 10), "60.00", lines=[line("CUP1", "cups", 2, "30")])
    s.refund(p4, "60.00", local(2026, 3, 4, 10))
    s.buy(
        bob,
        local(2026, 3, 10, 10),
        "120.00",
        lines=[line("TEA2", "tea", 1, "40"), line("CUP1", "cups", 1, "30"), line("CAKE1", "cake", 1, "50")],
    )
    s.buy(bob, local(2026, 3, 10, 18), "30.00")
    p7 = s.buy(cai, local(2026, 3, 15, 10), "200.00", store=store_b, lines=[line("CAKE2", "cake", 2, "100")])
    s.refund(p7, "50.00", local(2026, 3, 16, 10))
    s.buy(
        dan,
        datetime(2026, 2, 28, 16, 30, tzinfo=UTC),
        "59.99",
        channel="online",
        lines=[line("TEA2", "tea", "1.5", "39.99")],
    )
    s.buy(dan, datetime(2026, 3, 31, 16, 30, tzinfo=UTC), "40.00")
    p10 = s.buy(eve, local(2026, 3, 12, 10), "100.00", lines=[line("GIFT1", "", 1, "100")])
    s.refund(p10, "100.00", local(2026, 4, 2, 10))
    s.buy(gus, local(2026, 2, 10, 10), "10.00")
    s.buy(bob, local(2026, 1, 20, 10), "25.00")
    return s
