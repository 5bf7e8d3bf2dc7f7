"""A loaded demo (load_demo_data) shows something on every main admin page: members and their purchases, points,
rewards and redemptions, coupons, stored value, campaigns, the nightly jobs' runs and (on PostgreSQL) RFM results,
WeChat identities, an adjustment waiting for approval and a merged duplicate."""

from datetime import datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection

from members.management.commands import load_demo_data
from reports import demo_data

SHANGHAI = ZoneInfo("Asia/Shanghai")

CHANGELISTS = [
    "members/member",
    "members/membermerge",
    "members/purchase",
    "members/store",
    "members/tag",
    "points/ledgerentry",
    "points/pointsaccount",
    "points/redemption",
    "points/reward",
    "points/earningrule",
    "points/adjustmentrequest",
    "tiers/tier",
    "tiers/growthentry",
    "campaigns/campaign",
    "campaigns/coupontemplate",
    "campaigns/coupon",
    "stored_value/storedvalueaccount",
    "stored_value/storedvalueentry",
    "stored_value/topup",
    "stored_value/payment",
    "stored_value/topuprule",
    "loyalty/jobrun",
    "loyalty/auditentry",
]


@pytest.mark.slow
@pytest.mark.django_db
@time_machine.travel(datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI), tick=False)
def test_a_loaded_demo_fills_the_main_admin_pages(client, monkeypatch):
    monkeypatch.setattr(load_demo_data, "MEMBERS", 40)
    monkeypatch.setattr(demo_data, "HISTORY_DAYS", 210)  # reaches back past the top-ups, coupons and campaign
    out = StringIO()
    call_command("load_demo_data", stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    assert client.login(username="admin", password=password)

    empty = []
    for path in CHANGELISTS + (["members/rfmsnapshot"] if connection.vendor == "postgresql" else []):
        response = client.get(f"/admin/{path}/")
        assert response.status_code == 200, path
        if not response.context["cl"].result_list:
            empty.append(path)

    assert empty == []
    summary = out.getvalue()
    assert "coupons issued" in summary and "top-ups" in summary
    from campaigns.models_coupons import Coupon, CouponStatus
    from members.models import WechatIdentity
    from points.models import AdjustmentRequest
    from stored_value.models import Payment

    assert Coupon.objects.filter(status=CouponStatus.USED).exists()
    assert Coupon.objects.filter(template__reward_code="demo-coffee").exists()  # the free-coffee reward's coupon
    assert Payment.objects.exists()
    assert WechatIdentity.objects.count() == 10
    assert AdjustmentRequest.objects.filter(status="pending").count() == 1
    from members.models import Member, MemberMerge

    (merge,) = MemberMerge.objects.all()
    duplicate = Member.objects.get(pk=merge.duplicate_id)
    assert (duplicate.status, duplicate.merged_into_id) == ("merged", merge.survivor_id)
