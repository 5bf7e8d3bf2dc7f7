"""The marketer's admin: one section on the index that reaches earning rules, rewards, tiers, campaigns, message
templates and reports; a purchase preview on the earning rules; a campaign's targeted-member count before it is
activated."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns import services as campaign_services
from members.models import MemberStatus, MemberTag, RfmSnapshot, Tag
from points.models import EarningRule
from tests.factories import MemberFactory, StaffUserFactory
from tiers.models import MemberTier, Tier

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer_client(client):
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    return client


def test_the_index_has_one_marketing_section_reaching_each_screen(marketer_client):
    response = marketer_client.get("/admin/")

    html = response.content.decode()
    section = html[html.index('id="marketing-menu"') : html.index("</table>", html.index('id="marketing-menu"'))]
    for url in (
        "/admin/points/earningrule/",
        "/admin/points/earningrule/preview/",
        "/admin/points/reward/",
        "/admin/tiers/tier/",
        "/admin/tiers/growthpolicy/",
        "/admin/campaigns/campaign/",
        "/admin/campaigns/coupontemplate/",
        "/admin/loyalty/messagetemplate/",
        "/admin/reports/dashboard/",
    ):
        assert f'href="{url}"' in section, url
        assert marketer_client.get(url).status_code == 200, url
    assert section.count("<tr>") == 6  # earning rules, rewards, tiers, campaigns, message templates, reports


def test_a_clerk_sees_no_marketing_section(client, clerk_a):
    client.force_login(clerk_a)

    assert 'id="marketing-menu"' not in client.get("/admin/").content.decode()


# --- Purchase preview -------------------------------------------------------------------------------------------


@pytest.fixture
def rules(db):
    return EarningRule.objects.create(
        channel="purchase",
        name="Base",
        points_per_unit=Decimal("2.00"),
        pending_days=7,
        excluded_categories=["tobacco"],
        valid_from=timezone.now() - timedelta(days=1),
    )


def test_the_earning_rule_list_links_to_the_purchase_preview(marketer_client, rules):
    html = marketer_client.get("/admin/points/earningrule/").content.decode()

    assert 'href="/admin/points/earningrule/preview/" class="viewlink" id="preview-purchase-link"' in html


def test_a_purchase_preview_shows_the_points_and_writes_nothing(marketer_client, rules, member_a, store_a):
    from members.models import Purchase
    from points.models import LedgerEntry

    response = marketer_client.post(
        "/admin/points/earningrule/preview/",
        {
            "member": member_a.phone,
            "amount": "100.00",
            "store": str(store_a.pk),
            "channel": "offline",
            "lines": "tobacco, 30\ncoffee, 70",
        },
    )

    assert response.status_code == 200
    result = response.context["result"]
    # 70 of the 100 earn points (tobacco is excluded), 2 points per yuan: 140. Growth counts the whole order: the
    # default growth policy's 1 per yuan (100) + 10 per order.
    assert str(result["text"]) == "140 points pending; growth value 110."
    assert result["breakdown"] == [{"source": "base", "points": 140}]
    assert "Nothing was recorded." in response.content.decode()
    assert (Purchase.objects.count(), LedgerEntry.objects.count()) == (0, 0)


def test_a_preview_for_nobody_or_with_a_bad_line_says_so(marketer_client, rules, member_a):
    unknown = marketer_client.post("/admin/points/earningrule/preview/", {"member": "000", "amount": "10"})
    bad_line = marketer_client.post(
        "/admin/points/earningrule/preview/",
        {"member": member_a.member_no, "amount": "10", "channel": "offline", "lines": "coffee"},
    )

    assert unknown.context["form"].errors["member"] == ["No member has exactly this card number or phone."]
    assert bad_line.context["form"].errors == {"lines": ["Line 1: write “category, amount”."]}
    assert unknown.context["result"] is None


# --- A campaign's targeted members ------------------------------------------------------------------------------


def test_a_draft_campaign_shows_how_many_members_its_target_takes_in(marketer_client, store_a, store_b):
    gold = Tier.objects.get(code="gold")
    vip = Tag.objects.create(code="vip", name="VIP")
    members = [MemberFactory(home_store=store_a) for _ in range(4)] + [MemberFactory(home_store=store_b)]
    for member in members[:3] + members[4:]:
        MemberTag.objects.create(member=member, tag=vip)
    MemberTier.objects.create(member=members[0], tier=gold, since=timezone.now())
    MemberTier.objects.create(member=members[4], tier=gold, since=timezone.now())
    members[2].status = MemberStatus.FROZEN
    members[2].save(update_fields=["status"])
    RfmSnapshot.objects.create(
        member=members[1],
        as_of=date(2026, 11, 30),
        recency_days=3,
        frequency=9,
        monetary=Decimal("1200.00"),
        r_score=5,
        f_score=4,
        m_score=5,
        segment="important_value",
        lifecycle="active",
    )
    campaign = campaign_services.create_campaign(
        actor="test",
        values={
            "name": "VIPs at A",
            "kind": "multiplier",
            "multiplier": Decimal("2"),
            "starts_at": timezone.now() + timedelta(days=1),
            "target": {"stores": ["A001"], "tags": ["vip"], "tiers": ["regular", "gold"]},
            "holdout_percent": Decimal("10"),
        },
    )

    response = marketer_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")

    # A's members tagged vip: members 0, 1, 2; member 2 is frozen. Member 0 is gold, member 1 regular (no row).
    assert "2 active members match the target now. About 10.00% of them are held out (the control group)." in (
        response.content.decode()
    )
    from campaigns.selectors import targeted_members

    assert set(targeted_members({"segments": ["important_value"]})) == {members[1]}
    assert set(targeted_members({"tiers": ["gold"]})) == {members[0], members[4]}
    assert targeted_members({}).count() == 4
