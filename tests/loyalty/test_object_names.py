"""The names the admin gives objects (their __str__: page titles, breadcrumbs, lists, "deleted ..." messages) are
in the admin's language: English as before, and Simplified Chinese in zh-hans (issue 15: no English on a Chinese
admin page). Unsaved instances: the names read only the instance's own fields."""

from datetime import UTC, datetime

import pytest
from django.utils import translation

from points.models import AdjustmentRequest, EarningRule, LedgerEntry, PointsAccount, PointsPolicy, Redemption, Reward
from stored_value.models import Payment, StoredValueAccount, StoredValueEntry, TopUp, TopUpRule
from tiers.models import GrowthPolicy, TierChange

FROM = datetime(2026, 5, 17, 4, 0, tzinfo=UTC)


def objects():
    return [
        PointsAccount(member_id=7, available=120, pending=30),
        LedgerEntry(kind="earn", points=156, balance_after=406),
        PointsPolicy(valid_from=FROM),
        EarningRule(name="Purchase: 2 points per 1 CNY", channel="purchase", valid_from=FROM),
        Reward(name="Tea mug", cost_points=150),
        Redemption(reward_id=3, quantity=2, member_id=7),
        AdjustmentRequest(points=2000, member_id=7, status="pending"),
        GrowthPolicy(name="Default", valid_from=FROM),
        TierChange(member_id=7, from_tier_id=1, to_tier_id=2, reason="upgrade"),
        StoredValueAccount(member_id=7, principal_cents=74207, bonus_cents=2793),
        StoredValueEntry(kind="pay", principal_delta=-9598, bonus_delta=-602),
        TopUpRule(name="Top up 500, get 50", valid_from=FROM),
        TopUp(payment_method="wechat_pay", payment_ref="T-77", amount_cents=50000, bonus_cents=5000),
        Payment(order_no="A-1", amount_cents=10200),
    ]


@pytest.mark.parametrize(
    ("language", "names"),
    [
        (
            "en",
            [
                "7: 120 (+30 pending)",
                "earn +156 → 406",
                "policy from 2026-05-17",
                "Purchase: 2 points per 1 CNY (purchase, from 2026-05-17)",
                "Tea mug (150 points)",
                "3 × 2 for 7",
                "+2000 for 7 (pending)",
                "Default (from 2026-05-17)",
                "7: 1 → 2 (upgrade)",
                "7: 74207+2793 cents",
                "payment -9598/-602",
                "Top up 500, get 50 (from 2026-05-17)",
                "top-up wechat_pay:T-77 50000+5000",
                "A-1: 10200 cents",
            ],
        ),
        (
            "zh-hans",
            [
                "7：可用 120（待生效 +30）",
                "获得 +156 → 406",
                "积分政策（自 2026-05-17 起）",
                "Purchase: 2 points per 1 CNY（消费，自 2026-05-17 起）",
                "Tea mug（150 积分）",
                "会员 7 兑换 3 × 2",
                "会员 7 +2000 积分（待生效）",
                "Default（自 2026-05-17 起）",
                "7: 1 → 2 (升级)",
                "7：本金 74207 分 + 赠送金 2793 分",
                "支付 -9598/-602",
                "Top up 500, get 50（自 2026-05-17 起）",
                "充值 wechat_pay:T-77 50000+5000 分",
                "A-1：10200 分",
            ],
        ),
    ],
)
def test_object_names_follow_the_admins_language(language, names):
    with translation.override(language):
        assert [str(thing) for thing in objects()] == names


def test_a_versions_name_gives_its_start_as_a_business_date():
    """16:00 UTC on 31 December is 1 January in Shanghai (the business time zone): the name says 2030-01-01."""
    starts = datetime(2029, 12, 31, 16, 0, tzinfo=UTC)
    with translation.override("en"):
        assert [
            str(PointsPolicy(valid_from=starts)),
            str(EarningRule(name="Sign-in", channel="sign_in", valid_from=starts)),
            str(GrowthPolicy(name="Default", valid_from=starts)),
            str(TopUpRule(name="Top up", valid_from=starts)),
        ] == [
            "policy from 2030-01-01",
            "Sign-in (sign-in, from 2030-01-01)",
            "Default (from 2030-01-01)",
            "Top up (from 2030-01-01)",
        ]


def platform_objects():
    from campaigns.models import CampaignAssignment, CampaignAward
    from loyalty.models import AuditEntry, JobRun, Message, MessageTemplate
    from members.models import RfmSnapshot
    from tiers.models import MemberTier

    return [
        Message(kind="redemption_confirmed", recipient="13800000017", channel="sms", status="sent"),
        MessageTemplate(kind="birthday", channel="email", language="en"),
        JobRun(job="report_results", business_date=FROM.date(), status="done"),
        AuditEntry(actor="staff:admin", action="points.reward.added", target_type="reward", target_id="3"),
        CampaignAssignment(campaign_id=4, member_id=7, group="A"),
        CampaignAward(campaign_id=4, member_id=7, points=50),
        RfmSnapshot(member_id=7, as_of=FROM.date(), segment="inactive"),
        MemberTier(member_id=200, tier_id=2),
    ]


@pytest.mark.parametrize(
    ("language", "names"),
    [
        (
            "en",
            [
                "redemption confirmed → 13800000017 (sent)",
                "birthday greeting / email / English",
                "report_results 2026-05-17 (done)",
                "staff:admin points.reward.added reward:3",
                "campaign 4: member 7 → A",
                "campaign 4 → member 7: 50 points",
                "member 7 on 2026-05-17: inactive",
                "member 200: tier 2",
            ],
        ),
        (
            "zh-hans",
            [
                "兑换成功 → 13800000017（已发送）",
                "生日祝福 / 邮件 / 英语",
                "report_results 2026-05-17（已完成）",
                "staff:admin 执行 points.reward.added，对象 reward:3",
                "活动 4：会员 7 → A",
                "活动 4 → 会员 7：50 积分",
                "会员 7（2026-05-17）：inactive 不活跃",  # the segments are named in both languages, on purpose
                "会员 200：等级 2",
            ],
        ),
    ],
)
def test_the_platforms_object_names_follow_the_admins_language(language, names):
    """Issue 15: kinds and statuses by their labels (a job's name and an audit action are codes: they stay)."""
    with translation.override(language):
        assert [str(thing) for thing in platform_objects()] == names
