"""Two business days of a small shop, every figure of which the tests work out by hand (Asia/Shanghai).

Stores A001 and B001. Members: M1 (home A, joined 2025-06-01), M2 (A, joined D1 09:00), M3 (B, 2026-09-15),
M4 (B, D2 23:30), M5 (A, D3 00:30 = D2 16:30 UTC: after the end of D2).

Before D1: adjustments M1 +80 (2025-09-30: last valid day 2026-09-30), M3 +300 (2025-11-15: last day 2026-11-15),
M1 +150 (2026-02-10: last day 2027-02-10). Every lot earned on D1 or later lasts until 2027-10 (12 months).

D1 = 2026-10-01
  00:30  expire_points for 2026-09-30: M1 −80                       (expire)
  10:00  M1 buys 100.00 at A, offline                    → +100 pending (earn, A, offline)
  11:00  admin adjusts M1 +500                                      (adjust)
  12:00  M2 buys 50.00 at B, online                      → +50 pending (earn, B, online)
  13:00  M1 redeems a 200-point reward at A: takes 150 from the February lot, 50 from the new 500 (redeem, A)
  14:00  M3 signs in                                     → +5 (earn, sign_in)
D2 = 2026-10-02
  08:00  M1 buys 10.00 at A, offline                     → +10 pending (earn, A, offline)
  09:00  M2's order refunded 20.00 of 50.00              → −20 pending (reverse, B, online)
  10:00  M3 buys 1200.00 at B, offline                   → +1200 pending (earn, B, offline); growth 1212: silver
  11:00  M1's redemption cancelled: 150 back to the February lot, 50 to the other (cancel, A)
  12:00  M1 shares                                       → +2 (earn, share)
  12:00  the cash rate becomes 50 points per yuan (it was 100)
  23:40  M4 buys 30.00 at A, offline                     → +30 pending (earn, A, offline)
D3 = 2026-10-03 ("today" in the tests: 12:00)
  00:40  M5 signs in                                     → +5 (earn, sign_in)
"""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.scheduling import run_inline
from points import services
from points.models import PointsPolicy, Reward
from tests.factories import MemberFactory, StoreFactory
from tests.points.helpers import adjust, event, purchase, refund

SHANGHAI = ZoneInfo("Asia/Shanghai")
D1, D2, D3 = date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)
TODAY_NOON = datetime(2026, 10, 3, 12, tzinfo=SHANGHAI)


def at(day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


def travel(moment):
    return time_machine.travel(moment, tick=False)


@pytest.fixture
def shop(db):
    store_a = StoreFactory(code="A001", name="Store A")
    store_b = StoreFactory(code="B001", name="Store B")
    m1 = MemberFactory(home_store=store_a, joined_at=datetime(2025, 6, 1, 10, tzinfo=SHANGHAI))
    m2 = MemberFactory(home_store=store_a, joined_at=at(D1, 9))
    m3 = MemberFactory(home_store=store_b, joined_at=datetime(2026, 9, 15, 10, tzinfo=SHANGHAI))
    m4 = MemberFactory(home_store=store_b, joined_at=at(D2, 23, 30))
    m5 = MemberFactory(home_store=store_a, joined_at=at(D3, 0, 30))
    reward = Reward.objects.create(code="kettle", name="Kettle", kind="gift", cost_points=200)

    with travel(datetime(2025, 9, 30, 10, tzinfo=SHANGHAI)):
        adjust(m1, 80)
    with travel(datetime(2025, 11, 15, 10, tzinfo=SHANGHAI)):
        adjust(m3, 300)
    with travel(datetime(2026, 2, 10, 10, tzinfo=SHANGHAI)):
        adjust(m1, 150)

    with travel(at(D1, 0, 30)):
        run_inline("expire_points", date(2026, 9, 30))
    with travel(at(D1, 10)):
        purchase(m1, "100.00", store=store_a, channel="offline")
    with travel(at(D1, 11)):
        adjust(m1, 500)
    with travel(at(D1, 12)):
        m2_order = purchase(m2, "50.00", store=store_b, channel="online")
    with travel(at(D1, 13)):
        redemption = services.redeem_reward(
            actor="test",
            scope="test",
            key="kettle",
            fingerprint="k",
            member_id=m1.pk,
            reward_id=reward.pk,
            store=store_a,
        ).result
    with travel(at(D1, 14)):
        event(m3, "sign_in")

    with travel(at(D2, 8)):
        purchase(m1, "10.00", store=store_a, channel="offline")
    with travel(at(D2, 9)):
        refund(m2_order["id"], "20.00")
    with travel(at(D2, 10)):
        upgraded = purchase(m3, "1200.00", store=store_b, channel="offline")
    with travel(at(D2, 11)):
        services.cancel_redemption(actor="test", redemption_id=int(redemption["id"]))
    with travel(at(D2, 12)):
        event(m1, "share")
        PointsPolicy.objects.create(valid_from=at(D2, 12), cash_points_per_unit=50, cash_max_share=Decimal("0.50"))
    with travel(at(D2, 23, 40)):
        purchase(m4, "30.00", store=store_a, channel="offline")

    with travel(at(D3, 0, 40)):
        event(m5, "sign_in")

    assert upgraded["tier_change"]["to"] == "silver"  # the fixture's premise: M3 is silver from D2 10:00
    return {"A": store_a, "B": store_b, "M1": m1, "M2": m2, "M3": m3, "M4": m4, "M5": m5}


@pytest.fixture
def today():
    with travel(TODAY_NOON):
        yield D3
