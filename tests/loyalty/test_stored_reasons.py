"""The reasons the services store on ledger entries stay English (the API answers them as written); the admin
shows them in the reader's language (loyalty/stored_reasons.py), and a reason a person typed as typed."""

from decimal import Decimal

import pytest
from django.utils import translation

from loyalty.stored_reasons import shown_reason
from points import services
from points.models import LedgerEntry
from tests.points.test_admin import change_url, give_points, readonly_values

CHINESE = [
    ("purchase", "消费"),
    ("sign_in", "签到"),
    ("refund", "退款"),
    ("points used as cash", "积分抵现"),
    ("points used as cash returned on refund", "退款退回的抵现积分"),
    ("points expired on 2026-11-30", "积分于 2026-11-30 过期"),
    ("merged into member 100000000017", "已合并至会员 100000000017"),
    ("redemption 42 cancelled", "兑换 42 已取消"),
    ("redeemed Coffee mug", "兑换 Coffee mug"),
    ("transfer to 100000000017: for mum", "转给 100000000017: for mum"),
    ("transfer from 100000000017", "来自 100000000017 的转赠"),
    ("pending period ended: these points can now be used", "待生效期结束：积分现已可用"),
    ("bonus of Top up 500", "Top up 500 赠送金"),
    ("refund R-9 of order A-1", "订单 A-1 的退款 R-9"),
    ("bonus money past its validity", "赠送金已过有效期"),
    ("no consent for sms", "会员未同意接收 sms"),
    ("member is frozen", "会员状态为 frozen"),
    ("no phone number", "无手机号"),
    ("frequency cap: one birthday per 30 days on sms", "频率上限：sms 渠道每 30 天只发一条 birthday"),
    ("SMS provider answered 500", "SMS provider answered 500"),  # a provider's words: as written
    ("goodwill after a complaint", "goodwill after a complaint"),  # typed by a clerk: shown as typed
    ("purchase of a gift", "purchase of a gift"),  # a pattern matches the whole reason, not a part
]


@pytest.mark.parametrize(("stored", "shown"), CHINESE)
def test_a_stored_reason_reads_in_chinese_and_a_typed_one_as_typed(stored, shown):
    with translation.override("zh-hans"):
        assert shown_reason(stored) == shown
    with translation.override("en"):
        assert shown_reason(stored) == stored.replace("sign_in", "sign-in")


@pytest.mark.django_db
def test_the_member_page_and_the_ledger_list_show_the_reasons_in_the_readers_language(admin_client, member_a, store_a):
    services.record_purchase(
        actor="client:pos",
        source="store:A001",
        member_id=member_a.pk,
        order_no="A-1",
        amount=Decimal("120.50"),
        store=store_a,
        fingerprint="f",
    )
    give_points(member_a, 300)
    assert sorted(LedgerEntry.objects.values_list("reason", flat=True)) == ["purchase", "seed"]

    ledger = readonly_values(admin_client.get(change_url(member_a), HTTP_ACCEPT_LANGUAGE="zh-hans"))["ledger_table"]
    listing = admin_client.get("/admin/points/ledgerentry/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert "<td>消费</td>" in ledger and "<td>seed</td>" in ledger
    assert '<td class="field-shown_reason">消费</td>' in listing
    assert '<td class="field-shown_reason">seed</td>' in listing
