"""GET /api/v1/reports/coupons/: issued, redeemed, expired, voided per template and campaign, the redemption rate,
the discount and the revenue of the orders that used a coupon, every figure worked out by hand (Asia/Shanghai).

Range D1..D2 = 2026-10-01..02, asked on D3 = 2026-10-03 at noon. Ann's home store is A001, Bea's B001.
T1 (20 off 100), coupons issued otherwise than by a campaign:
  a1 Ann, issued D1 10:00, used D2 09:00 at A on store:A001/O1 (discount 20; purchase 150.00, 30.00 refunded)
  a2 Bea, issued D1 11:00, used D2 10:00 at B on store:B001/O2 (discount 20; purchase 200.00)
  a3 Ann, issued D1 12:00, unused, last valid day D2           → expired (unused past its last day)
  a4 Bea, issued 09-20, expired by the job, last valid day D1   → expired, not issued in the range
  a5 Bea, issued D2, voided D2                                  → issued and voided
  a6 Ann, issued 09-25, used D1 at A on store:A001/O3, no purchase recorded (discount 20)
  a7 Ann, issued D2, unused, valid for 30 days
T1, issued by campaign C:
  c1 Bea, issued D1, used D2 at B on store:B001/O2 (the same order as a2; discount 20)
  c2 Ann, issued D2 23:59, unused
  c3 Ann, issued D3 00:00 (outside the range)
T2 (10 % off), b1 Ann, issued D1, used D2 23:30 at A on store:A001/O4 (discount 15.50; purchase 155.00)
"""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from campaigns.models import Campaign
from campaigns.models_coupons import Coupon
from members.models import Purchase
from tests.coupons.helpers import template
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
D1, D2, D3 = date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)
URL = "/api/v1/reports/coupons/"


def at(day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def shop(store_a, store_b):
    ann, bea = MemberFactory(home_store=store_a), MemberFactory(home_store=store_b)
    t1 = template(name="20 off 100")
    t2 = template(name="10 % off", kind="percent_off", amount_off=None, percent_off=Decimal("10"), threshold=None)
    campaign = Campaign.objects.create(name="Autumn", kind="bonus", starts_at=at(D1, 0), bonus_points=5)
    codes = iter(range(1000))

    def coupon(tpl, member, issued_at, *, status="unused", until=date(2026, 11, 1), **fields):
        return Coupon.objects.create(
            code=f"TEST{next(codes):06d}",
            template=tpl,
            member=member,
            status=status,
            valid_from=issued_at.date(),
            valid_until=until,
            issued_at=issued_at,
            source=fields.pop("source", "api"),
            **fields,
        )

    def used(order, store, when, discount):
        source = f"store:{store.code}"
        return {
            "status": "used",
            "used_at": when,
            "order_no": order,
            "store": store,
            "redeemed_source": source,
            "discount": Decimal(discount),
            "status_changed_at": when,
        }

    def purchase(member, store, order, amount, refunded="0"):
        Purchase.objects.create(
            member=member,
            store=store,
            source=f"store:{store.code}",
            order_no=order,
            occurred_at=at(D2, 9),
            amount=Decimal(amount),
            refunded_amount=Decimal(refunded),
        )

    coupon(t1, ann, at(D1, 10), **used("O1", store_a, at(D2, 9), "20"))
    coupon(t1, bea, at(D1, 11), **used("O2", store_b, at(D2, 10), "20"))
    coupon(t1, ann, at(D1, 12), until=D2)
    coupon(t1, bea, at(date(2026, 9, 20), 9), status="expired", until=D1, status_changed_at=at(D2, 0, 30))
    coupon(t1, bea, at(D2, 8), status="void", status_changed_at=at(D2, 9))
    coupon(t1, ann, at(date(2026, 9, 25), 9), **used("O3", store_a, at(D1, 15), "20"))
    coupon(t1, ann, at(D2, 11))
    by_campaign = {"source": "campaign", "source_ref": f"campaign:{campaign.pk}"}
    coupon(t1, bea, at(D1, 13), **by_campaign, **used("O2", store_b, at(D2, 10), "20"))
    coupon(t1, ann, at(D2, 23, 59), **by_campaign)
    coupon(t1, ann, at(D3, 0), **by_campaign)
    coupon(t2, ann, at(D1, 14), **used("O4", store_a, at(D2, 23, 30), "15.50"))
    purchase(ann, store_a, "O1", "150.00", refunded="30.00")
    purchase(bea, store_b, "O2", "200.00")
    purchase(ann, store_a, "O4", "155.00")
    purchase(bea, store_b, "O9", "999.00")  # no coupon: not counted
    return t1, t2, campaign


def _get(api, **params):
    with time_machine.travel(at(D3, 12), tick=False):
        return api.get(URL, {"from": D1.isoformat(), "to": D2.isoformat(), **params})


def _row(tpl, campaign=None, **figures):
    zero = {
        "issued": 0,
        "issued_redeemed": 0,
        "redemption_rate": 0.0,
        "redeemed": 0,
        "expired": 0,
        "voided": 0,
        "discount": "0.00",
        "orders": 0,
        "revenue": "0.00",
        "redemptions_without_purchase": 0,
    }
    return {
        "template": str(tpl.pk),
        "template_name": tpl.name,
        "campaign": str(campaign.pk) if campaign else None,
        "campaign_name": campaign.name if campaign else None,
        **zero,
        **figures,
    }


def test_the_report_per_template_and_campaign_by_hand(marketer_api, shop):
    t1, t2, campaign = shop
    response = _get(marketer_api)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["from"], body["to"]) == ("2026-10-01", "2026-10-02")
    other = _row(
        t1,
        issued=5,
        issued_redeemed=2,
        redemption_rate=0.4,
        redeemed=3,
        expired=2,
        voided=1,
        discount="60.00",
        orders=2,
        revenue="320.00",
        redemptions_without_purchase=1,
    )
    by_campaign = _row(
        t1,
        campaign,
        issued=2,
        issued_redeemed=1,
        redemption_rate=0.5,
        redeemed=1,
        discount="20.00",
        orders=1,
        revenue="200.00",
    )
    percent = _row(
        t2, issued=1, issued_redeemed=1, redemption_rate=1.0, redeemed=1, discount="15.50", orders=1, revenue="155.00"
    )
    assert body["rows"] == [other, by_campaign, percent]
    assert body["totals"] == {
        "issued": 8,
        "issued_redeemed": 4,
        "redemption_rate": 0.5,
        "redeemed": 5,
        "expired": 2,
        "voided": 1,
        "discount": "95.50",
        "orders": 3,  # O1, O2 (two coupons), O4
        "revenue": "475.00",
        "redemptions_without_purchase": 1,
    }


def test_filters_by_store_template_and_campaign(admin_api, shop, store_a):
    t1, t2, campaign = shop
    body = _get(admin_api, store="A001").json()
    assert body["rows"] == [
        _row(
            t1,
            issued=3,
            issued_redeemed=1,
            redemption_rate=0.3333,
            redeemed=2,
            expired=1,
            discount="40.00",
            orders=1,
            revenue="120.00",
            redemptions_without_purchase=1,
        ),
        _row(t1, campaign, issued=1),
        _row(
            t2,
            issued=1,
            issued_redeemed=1,
            redemption_rate=1.0,
            redeemed=1,
            discount="15.50",
            orders=1,
            revenue="155.00",
        ),
    ]
    assert (body["totals"]["issued"], body["totals"]["orders"], body["totals"]["revenue"]) == (5, 2, "275.00")
    assert body["totals"]["redemption_rate"] == 0.4
    only_campaign = _get(admin_api, campaign=str(campaign.pk)).json()
    assert [row["campaign"] for row in only_campaign["rows"]] == [str(campaign.pk)]
    assert (only_campaign["totals"]["issued"], only_campaign["totals"]["revenue"]) == (2, "200.00")
    only_t2 = _get(admin_api, template=str(t2.pk)).json()
    assert [row["template"] for row in only_t2["rows"]] == [str(t2.pk)]
    assert only_t2["totals"]["revenue"] == "155.00"


def test_csv_has_the_same_figures(marketer_api, shop):
    t1, t2, campaign = shop
    response = _get(marketer_api, format="csv")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0] == (
        "section,template,template_name,campaign,campaign_name,issued,issued_redeemed,redeemed,expired,voided,orders,"
        "redemptions_without_purchase,redemption_rate,discount,revenue"
    )
    assert lines[2] == f"row,{t1.pk},20 off 100,{campaign.pk},Autumn,2,1,1,0,0,1,0,0.5,20.00,200.00"
    assert lines[-1] == "total,,,,,8,4,5,2,1,3,1,0.5,95.50,475.00"
    assert len(lines) == 5


def test_bad_filters_are_400_and_clerks_403(marketer_api, clerk_api, shop):
    for params, field in (
        ({"template": "999999"}, "template"),
        ({"template": "x"}, "template"),
        ({"campaign": "999999"}, "campaign"),
        ({"store": "NOPE"}, "store"),
        ({"from": "2026-13-01"}, "from"),
    ):
        response = _get(marketer_api, **params)
        assert response.status_code == 400, params
        assert response.json()["code"] == "invalid"
        assert field in response.json()["errors"]
    assert _get(clerk_api).status_code == 403


def test_an_empty_range_has_no_rows(marketer_api, db):
    body = _get(marketer_api).json()
    assert body["rows"] == []
    assert body["totals"]["redemption_rate"] == 0.0
    assert body["totals"]["revenue"] == "0.00"
