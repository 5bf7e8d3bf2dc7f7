"""Campaign results (campaigns.services.results): every figure against values computed by hand or by scipy."""

import math
import random
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from scipy import stats

from campaigns.models import (
    HOLDOUT,
    Campaign,
    CampaignAssignment,
    CampaignAward,
    CampaignKind,
    CampaignStatus,
    CampaignVariant,
)
from campaigns.services.results import campaign_results, results_rows, results_window
from loyalty.errors import InvalidInput
from members.models import Purchase, Refund
from tests.factories import MemberFactory, StoreFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
MARCH = date(2025, 3, 1)


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def make_campaign(*, variants=(("a", 50), ("b", 50)), holdout_percent=20, status=CampaignStatus.ENDED, **fields):
    values = {
        "name": "Spring double points",
        "kind": CampaignKind.MULTIPLIER,
        "status": status,
        "starts_at": local(2025, 3, 1),
        "ends_at": local(2025, 4, 1),
        "multiplier": Decimal("2.00"),
        "holdout_percent": Decimal(holdout_percent),
        **fields,
    }
    campaign = Campaign.objects.create(**values)
    for code, weight in variants:
        CampaignVariant.objects.create(campaign=campaign, code=code, weight=weight)
    return campaign


class Shop:
    """Writes purchases, refunds, assignments and awards as the engine and the purchase service would leave
    them (no points: the results read only these tables)."""

    def __init__(self):
        self.store = StoreFactory(code="R001")
        self.orders = 0

    def member(self, campaign=None, group=None):
        member = MemberFactory(home_store=self.store)
        if campaign is not None:
            CampaignAssignment.objects.create(campaign=campaign, member=member, group=group)
        return member

    def purchase(self, member, at, amount, refunds=()):
        """`refunds`: [(at, amount)]."""
        self.orders += 1
        refunded = sum((Decimal(value) for _, value in refunds), Decimal(0))
        purchase = Purchase.objects.create(
            member=member,
            store=self.store,
            source="store:R001",
            order_no=f"R{self.orders:05d}",
            occurred_at=at,
            amount=Decimal(amount),
            refunded_amount=refunded,
        )
        for number, (refund_at, value) in enumerate(refunds):
            Refund.objects.create(
                purchase=purchase,
                refund_no=f"{purchase.order_no}-{number}",
                amount=Decimal(value),
                occurred_at=refund_at,
            )
        return purchase

    def award(self, campaign, member, group, day, points, returned=0, purchase=None):
        return CampaignAward.objects.create(
            campaign=campaign,
            member=member,
            group=group,
            points=points,
            points_returned=returned,
            purchase=purchase,
            business_date=day,
        )


def by_group(rows):
    return {row["group"]: row for row in rows}


def lift_of(result):
    return {(row["group"], row["metric"]): row for row in result["lift"]}


def rounded(value):
    return None if value is None else round(float(value), 4) + 0.0


def expected_proportions(x_v, n_v, x_h, n_h):
    """The lift on repurchase rate, by hand with scipy's normal distribution."""
    p_v, p_h = x_v / n_v, x_h / n_h
    estimate = p_v - p_h
    unpooled = math.sqrt(p_v * (1 - p_v) / n_v + p_h * (1 - p_h) / n_h)
    pooled_p = (x_v + x_h) / (n_v + n_h)
    pooled = math.sqrt(pooled_p * (1 - pooled_p) * (1 / n_v + 1 / n_h))
    z = stats.norm.ppf(0.975)
    return {
        "estimate": rounded(estimate),
        "ci_low": rounded(estimate - z * unpooled),
        "ci_high": rounded(estimate + z * unpooled),
        "p_value": rounded(2 * stats.norm.sf(abs(estimate / pooled))),
    }


def expected_welch(revenues_v, revenues_h):
    """The lift on revenue per member: scipy's Welch t-test and its confidence interval."""
    test = stats.ttest_ind(revenues_v, revenues_h, equal_var=False)
    interval = test.confidence_interval(0.95)
    return {
        "estimate": rounded(sum(revenues_v) / len(revenues_v) - sum(revenues_h) / len(revenues_h)),
        "ci_low": rounded(interval.low),
        "ci_high": rounded(interval.high),
        "p_value": rounded(test.pvalue),
    }


def money(value):
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# --- A small campaign, every figure by hand ------------------------------------------------------------------


@pytest.fixture
def small():
    """Variant `a` (A1, A2, A3) and the holdout (H1, H2), March 2025 in Asia/Shanghai."""
    shop = Shop()
    campaign = make_campaign(variants=[("a", 100)], holdout_percent=40)
    other = make_campaign(name="Other campaign", variants=[("a", 100)], holdout_percent=0)
    a1, a2, a3 = (shop.member(campaign, "a") for _ in range(3))
    h1, h2 = (shop.member(campaign, HOLDOUT) for _ in range(2))
    outsider = shop.member(other, "a")  # assigned to another campaign only

    shop.purchase(a1, local(2025, 2, 28, 23, 59, 59), "100.00")  # before the window
    first = shop.purchase(a1, local(2025, 3, 1), "50.00")  # its first instant
    shop.purchase(a1, local(2025, 3, 31, 23, 59, 59), "30.50")  # its last second
    shop.purchase(a1, local(2025, 4, 1), "70.00")  # after it
    refunded = shop.purchase(
        a2, local(2025, 3, 5, 12), "200.00", refunds=[(local(2025, 3, 6), "120.00"), (local(2025, 3, 6, 1), "80.00")]
    )  # fully refunded in the window: does not count
    partly = shop.purchase(a2, local(2025, 3, 10), "40.00", refunds=[(local(2025, 3, 12), "15.25")])  # 24.75
    shop.purchase(a3, local(2025, 3, 20), "60.00", refunds=[(local(2025, 4, 2), "60.00")])  # refunded later
    shop.purchase(a3, local(2025, 3, 21), "10.01")
    shop.purchase(h1, local(2025, 3, 15), "100.01")
    shop.purchase(h2, local(2025, 5, 1), "500.00")
    shop.purchase(outsider, local(2025, 3, 15), "999.00")

    shop.award(campaign, a1, "a", date(2025, 2, 28), 99)  # before the window
    shop.award(campaign, a1, "a", date(2025, 3, 1), 50, purchase=first)
    shop.award(campaign, a2, "a", date(2025, 3, 5), 200, returned=200, purchase=refunded)  # all returned
    shop.award(campaign, a2, "a", date(2025, 3, 10), 40, returned=15, purchase=partly)
    shop.award(other, a3, "a", date(2025, 3, 20), 100)  # another campaign's
    shop.award(other, outsider, "a", date(2025, 3, 15), 999)
    return campaign


def test_small_campaign_figures_by_hand(small):
    result = campaign_results(small)

    assert result["campaign_id"] == str(small.pk)
    assert (result["from"], result["to"]) == ("2025-03-01", "2025-03-31")
    assert result["groups"] == [
        {
            "group": "a",
            "members": 3,
            "participants": 2,  # A1 and A2 were awarded in the window (A2's award was all returned)
            "purchases": 5,  # A1 2, A2 1 (the fully refunded order does not count), A3 2
            "revenue": "175.26",  # 50.00 + 30.50 + (40.00 − 15.25) + 60.00 + 10.01
            "points_cost": 75,  # 50 + (200 − 200) + (40 − 15)
            "repurchase_rate": 0.6667,  # A1 and A3
            "revenue_per_member": "58.42",
        },
        {
            "group": "holdout",
            "members": 2,
            "participants": 1,  # H1 purchased in the window
            "purchases": 1,
            "revenue": "100.01",
            "points_cost": 0,
            "repurchase_rate": 0.0,
            "revenue_per_member": "50.01",  # 50.005 half-up
        },
    ]
    # 175.26 − 100.01 / 2 × 3 = 25.245 → 25.25; 75 / 25.245 = 2.97088…
    assert result["points_per_extra_revenue"] == [
        {"group": "a", "extra_revenue": "25.25", "points_per_extra_revenue": 2.9709}
    ]
    lift = lift_of(result)
    assert set(lift) == {("a", "repurchase_rate"), ("a", "revenue_per_member")}
    # p_v = 2/3, p_h = 0: estimate 0.66667, unpooled SE sqrt(2/27) = 0.27217, pooled p = 0.4, SE sqrt(0.2)
    assert lift["a", "repurchase_rate"] == {
        "group": "a",
        "metric": "repurchase_rate",
        "estimate": 0.6667,
        "ci_low": 0.1332,
        "ci_high": 1.2001,
        "p_value": 0.1360,
    }
    assert lift["a", "repurchase_rate"] == {"group": "a", "metric": "repurchase_rate"} | expected_proportions(
        2, 3, 0, 2
    )
    assert lift["a", "revenue_per_member"] == {"group": "a", "metric": "revenue_per_member"} | expected_welch(
        [80.50, 24.75, 70.01], [100.01, 0.0]
    )


def test_a_narrower_window_moves_every_figure(small):
    """From 2 March A1's first purchase and award fall out; until 5 March A2's order counts whole, its refund
    (6 March) being after the window."""
    result = campaign_results(small, date_from=date(2025, 3, 2), date_to=date(2025, 3, 5))

    assert (result["from"], result["to"]) == ("2025-03-02", "2025-03-05")
    groups = by_group(result["groups"])
    assert groups["a"] == {
        "group": "a",
        "members": 3,
        "participants": 1,  # A2's award of 5 March
        "purchases": 1,
        "revenue": "200.00",
        "points_cost": 0,
        "repurchase_rate": 0.0,
        "revenue_per_member": "66.67",
    }
    assert groups["holdout"]["purchases"] == 0
    assert groups["holdout"]["participants"] == 0
    # Neither group has a repeat member: the proportions' standard errors are 0, the estimate is 0.
    assert lift_of(result)["a", "repurchase_rate"] == {
        "group": "a",
        "metric": "repurchase_rate",
        "estimate": 0.0,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
    }
    assert lift_of(result)["a", "revenue_per_member"] == {
        "group": "a",
        "metric": "revenue_per_member",
    } | expected_welch([0.0, 200.0, 0.0], [0.0, 0.0])


def test_results_take_two_statements_however_many_members(small, django_assert_num_queries):
    with django_assert_num_queries(2):  # the group sums, and the variants' order
        campaign_results(small)


# --- Two variants and a holdout, 15–24 members each, against scipy -------------------------------------------

SIZES = {"a": 24, "b": 18, HOLDOUT: 15}
PURCHASE_ODDS = {"a": 0.55, "b": 0.45, HOLDOUT: 0.35}


def plan(seed=2025):
    """Per member of each group: purchases as (at, amount, [(refund at, amount)]) and awards as
    (business date, points, returned), drawn once from a fixed seed. Some fall outside March, some orders are
    refunded fully or in part inside March, some after it."""
    draw = random.Random(seed)
    members = {}
    for group, size in SIZES.items():
        members[group] = []
        for _ in range(size):
            purchases, awards = [], []
            for _ in range(draw.choice([0, 1, 1, 2, 3, 4])):
                if draw.random() > PURCHASE_ODDS[group] + 0.3:
                    continue
                day = draw.choice([-2, *range(0, 31), 31, 33])  # 28 Feb … 3 Apr
                at = local(2025, 3, 1, draw.randrange(24), draw.randrange(60)) + timedelta(days=day)
                amount = Decimal(draw.randrange(500, 60_000)) / 100
                roll = draw.random()
                if roll < 0.12:  # fully refunded, in two parts, the next day
                    half = (amount / 2).quantize(Decimal("0.01"))
                    refunds = [(at + timedelta(days=1), half), (at + timedelta(days=1, hours=1), amount - half)]
                elif roll < 0.22:  # partly
                    refunds = [(at + timedelta(hours=5), (amount * Decimal("0.3")).quantize(Decimal("0.01")))]
                elif roll < 0.27:  # fully, long after March
                    refunds = [(local(2025, 5, 10), amount)]
                else:
                    refunds = []
                purchases.append((at, amount, refunds))
                if group != HOLDOUT:
                    points = int(amount)
                    returned = int(points * sum(value for _, value in refunds) / amount)
                    awards.append((at.astimezone(SHANGHAI).date(), points, returned))
            members[group].append((purchases, awards))
    return members


def oracle(members, first=date(2025, 3, 1), last=date(2025, 3, 31)):
    """Each group's figures and per-member revenues straight from the definitions, in plain Python."""
    start, end = local(first.year, first.month, first.day), local(last.year, last.month, last.day) + timedelta(1)
    expected, revenues, repeats = {}, {}, {}
    for group, plans in members.items():
        figures = {"members": len(plans), "participants": 0, "purchases": 0, "revenue": Decimal(0), "points": 0}
        revenues[group], repeats[group] = [], 0
        for purchases, awards in plans:
            nets = []
            for at, amount, refunds in purchases:
                net = amount - sum((value for when, value in refunds if start <= when < end), Decimal(0))
                if start <= at < end and net > 0:
                    nets.append(net)
            in_window = [award for award in awards if first <= award[0] <= last]
            figures["purchases"] += len(nets)
            figures["revenue"] += sum(nets, Decimal(0))
            figures["points"] += sum(points - returned for _, points, returned in in_window)
            figures["participants"] += bool(nets) if group == HOLDOUT else bool(in_window)
            repeats[group] += len(nets) >= 2
            revenues[group].append(sum(nets, Decimal(0)))
        n = figures["members"]
        expected[group] = {
            "group": group,
            "members": n,
            "participants": figures["participants"],
            "purchases": figures["purchases"],
            "revenue": money(figures["revenue"]),
            "points_cost": figures["points"],
            "repurchase_rate": round(repeats[group] / n, 4) + 0.0,
            "revenue_per_member": money(figures["revenue"] / n),
        }
    return expected, revenues, repeats


@pytest.fixture
def ab_test():
    shop = Shop()
    campaign = make_campaign()
    members = plan()
    for group, plans in members.items():
        for purchases, awards in plans:
            member = shop.member(campaign, group)
            for at, amount, refunds in purchases:
                shop.purchase(member, at, amount, refunds)
            for day, points, returned in awards:
                shop.award(campaign, member, group, day, points, returned)
    return campaign, members


def test_ab_test_figures_match_the_definitions(ab_test):
    campaign, members = ab_test
    expected, _, _ = oracle(members)

    result = campaign_results(campaign)

    assert [row["group"] for row in result["groups"]] == ["a", "b", "holdout"]
    assert result["groups"] == [expected["a"], expected["b"], expected[HOLDOUT]]
    # The fixture exercises what it is meant to: repeat buyers, refunds and empty members in every group.
    for group in ("a", "b", HOLDOUT):
        assert 0 < expected[group]["repurchase_rate"] < 1
        assert 0 < expected[group]["participants"] < expected[group]["members"]


def test_ab_test_lift_matches_scipy(ab_test):
    campaign, members = ab_test
    _, revenues, repeats = oracle(members)

    lift = lift_of(campaign_results(campaign))

    assert list(lift) == [
        ("a", "repurchase_rate"),
        ("a", "revenue_per_member"),
        ("b", "repurchase_rate"),
        ("b", "revenue_per_member"),
    ]
    holdout = [float(value) for value in revenues[HOLDOUT]]
    for group in ("a", "b"):
        assert lift[group, "repurchase_rate"] == {"group": group, "metric": "repurchase_rate"} | expected_proportions(
            repeats[group], SIZES[group], repeats[HOLDOUT], SIZES[HOLDOUT]
        )
        assert lift[group, "revenue_per_member"] == {
            "group": group,
            "metric": "revenue_per_member",
        } | expected_welch([float(value) for value in revenues[group]], holdout)


def test_ab_test_points_per_extra_revenue(ab_test):
    campaign, members = ab_test
    expected, revenues, _ = oracle(members)
    holdout_mean = sum(revenues[HOLDOUT]) / SIZES[HOLDOUT]

    result = campaign_results(campaign)

    rows = []
    for group in ("a", "b"):
        extra = sum(revenues[group]) - holdout_mean * SIZES[group]
        ratio = rounded(Decimal(expected[group]["points_cost"]) / extra) if extra > 0 else None
        rows.append({"group": group, "extra_revenue": money(extra), "points_per_extra_revenue": ratio})
    assert result["points_per_extra_revenue"] == rows


def test_points_per_extra_revenue_is_null_without_extra_revenue():
    shop = Shop()
    campaign = make_campaign(variants=[("a", 100)])
    variant = [shop.member(campaign, "a") for _ in range(2)]
    holdout = [shop.member(campaign, HOLDOUT) for _ in range(2)]
    shop.purchase(variant[0], local(2025, 3, 3), "10.00")
    shop.award(campaign, variant[0], "a", date(2025, 3, 3), 10)
    shop.purchase(holdout[0], local(2025, 3, 3), "30.00")

    result = campaign_results(campaign)

    # 10.00 − 30.00 / 2 × 2 = −20.00: the campaign bought no extra revenue
    assert result["points_per_extra_revenue"] == [
        {"group": "a", "extra_revenue": "-20.00", "points_per_extra_revenue": None}
    ]


# --- Groups, holdout and windows -----------------------------------------------------------------------------


def test_without_holdout_there_is_no_lift():
    shop = Shop()
    campaign = make_campaign(variants=[], holdout_percent=0)
    member = shop.member(campaign, "default")
    shop.purchase(member, local(2025, 3, 3), "12.30")

    result = campaign_results(campaign)

    assert result["groups"] == [
        {
            "group": "default",
            "members": 1,
            "participants": 0,
            "purchases": 1,
            "revenue": "12.30",
            "points_cost": 0,
            "repurchase_rate": 0.0,
            "revenue_per_member": "12.30",
        }
    ]
    assert result["lift"] == []
    assert result["points_per_extra_revenue"] == []


def test_groups_without_members_are_listed_with_zeros_and_null_lift():
    shop = Shop()
    campaign = make_campaign()  # variants a and b, a 20 % holdout
    for _ in range(3):
        shop.member(campaign, "a")
    shop.member(campaign, HOLDOUT)  # one member: too few for a test

    result = campaign_results(campaign)

    assert [(row["group"], row["members"]) for row in result["groups"]] == [("a", 3), ("b", 0), ("holdout", 1)]
    assert by_group(result["groups"])["b"] == {
        "group": "b",
        "members": 0,
        "participants": 0,
        "purchases": 0,
        "revenue": "0.00",
        "points_cost": 0,
        "repurchase_rate": 0.0,
        "revenue_per_member": "0.00",
    }
    nothing = {"estimate": None, "ci_low": None, "ci_high": None, "p_value": None}
    assert result["lift"] == [
        {"group": group, "metric": metric} | nothing
        for group in ("a", "b")
        for metric in ("repurchase_rate", "revenue_per_member")
    ]
    assert result["points_per_extra_revenue"] == [
        {"group": "a", "extra_revenue": "0.00", "points_per_extra_revenue": None},
        {"group": "b", "extra_revenue": "0.00", "points_per_extra_revenue": None},
    ]


def test_default_window_of_an_ended_campaign_is_its_start_to_its_last_day():
    campaign = make_campaign(starts_at=local(2025, 3, 1, 4), ends_at=local(2025, 4, 1))  # ends at midnight
    assert results_window(campaign) == (date(2025, 3, 1), date(2025, 3, 31))
    campaign = make_campaign(starts_at=datetime(2025, 2, 28, 20, tzinfo=ZoneInfo("UTC")), ends_at=local(2025, 4, 1, 9))
    assert results_window(campaign) == (date(2025, 3, 1), date(2025, 4, 1))  # business dates, not UTC's


def test_default_window_of_a_running_campaign_ends_yesterday():
    running = make_campaign(status=CampaignStatus.ACTIVE, ends_at=None)
    paused_with_an_end = make_campaign(status=CampaignStatus.PAUSED, ends_at=local(2025, 6, 1))
    with time_machine.travel(local(2025, 3, 10, 0, 30), tick=False):
        assert results_window(running) == (date(2025, 3, 1), date(2025, 3, 9))
        assert results_window(paused_with_an_end) == (date(2025, 3, 1), date(2025, 3, 9))
    with time_machine.travel(local(2025, 3, 1, 10), tick=False):  # its first day: clamped to its start
        assert results_window(running) == (date(2025, 3, 1), date(2025, 3, 1))
        assert results_window(running, date(2025, 2, 20)) == (date(2025, 2, 20), date(2025, 2, 28))


def test_default_window_of_a_scheduled_campaign_is_its_first_day():
    scheduled = make_campaign(status=CampaignStatus.SCHEDULED, starts_at=local(2025, 3, 20))
    with time_machine.travel(local(2025, 3, 10, 12), tick=False):
        assert results_window(scheduled) == (date(2025, 3, 20), date(2025, 3, 20))


@pytest.mark.parametrize(
    ("date_from", "date_to", "field"),
    [
        (date(2025, 3, 10), date(2025, 3, 9), "to"),
        (date(1, 1, 1), None, "from"),
        (None, date(9999, 12, 31), "to"),
    ],
)
def test_a_bad_window_is_invalid_input(date_from, date_to, field):
    campaign = make_campaign()
    with pytest.raises(InvalidInput) as refused:
        campaign_results(campaign, date_from=date_from, date_to=date_to)
    assert list(refused.value.errors) == [field]


# --- CSV rows ------------------------------------------------------------------------------------------------

HEADER = [
    "campaign_id",
    "from",
    "to",
    "group",
    "members",
    "participants",
    "purchases",
    "revenue",
    "points_cost",
    "repurchase_rate",
    "revenue_per_member",
    "repurchase_rate_lift",
    "repurchase_rate_ci_low",
    "repurchase_rate_ci_high",
    "repurchase_rate_p_value",
    "revenue_per_member_lift",
    "revenue_per_member_ci_low",
    "revenue_per_member_ci_high",
    "revenue_per_member_p_value",
    "extra_revenue",
    "points_per_extra_revenue",
]


def test_results_rows_hold_each_group_with_its_lift(small):
    result = campaign_results(small)
    lift = lift_of(result)

    header, rows = results_rows(result)

    assert header == HEADER
    rates, money_lift = lift["a", "repurchase_rate"], lift["a", "revenue_per_member"]
    identity = [str(small.pk), "2025-03-01", "2025-03-31"]
    assert rows == [
        [*identity, "a", 3, 2, 5, "175.26", 75, 0.6667, "58.42"]
        + [rates["estimate"], rates["ci_low"], rates["ci_high"], rates["p_value"]]
        + [money_lift["estimate"], money_lift["ci_low"], money_lift["ci_high"], money_lift["p_value"]]
        + ["25.25", 2.9709],
        [*identity, "holdout", 2, 1, 1, "100.01", 0, 0.0, "50.01"] + [""] * 10,
    ]


# --- The API -------------------------------------------------------------------------------------------------


def url(campaign):
    return f"/api/v1/campaigns/{campaign.pk}/results/"


def test_marketer_reads_results(small, marketer_api):
    response = marketer_api.get(url(small))

    assert response.status_code == 200
    body = response.json()
    assert body == campaign_results(small)
    assert set(body) == {"campaign_id", "from", "to", "groups", "lift", "points_per_extra_revenue"}
    assert set(body["groups"][0]) == {
        "group",
        "members",
        "participants",
        "purchases",
        "revenue",
        "points_cost",
        "repurchase_rate",
        "revenue_per_member",
    }
    assert set(body["lift"][0]) == {"group", "metric", "estimate", "ci_low", "ci_high", "p_value"}
    narrowed = marketer_api.get(url(small), {"from": "2025-03-02", "to": "2025-03-05"}).json()
    assert (narrowed["from"], narrowed["to"]) == ("2025-03-02", "2025-03-05")
    assert narrowed["groups"][0]["revenue"] == "200.00"


def test_clerk_cannot_read_results(small, clerk_api):
    response = clerk_api.get(url(small))
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_results_as_csv(small, marketer_api):
    response = marketer_api.get(url(small), {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="campaign-{small.pk}-results.csv"'
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0] == ",".join(HEADER)
    assert len(lines) == 3
    assert lines[1].startswith(f"{small.pk},2025-03-01,2025-03-31,a,3,2,5,175.26,75,0.6667,58.42,0.6667,0.1332,")
    assert lines[1].endswith(",25.25,2.9709")
    assert lines[2] == f"{small.pk},2025-03-01,2025-03-31,holdout,2,1,1,100.01,0,0.0,50.01" + "," * 10


@pytest.mark.parametrize(
    ("query", "field"),
    [({"from": "2025-13-01"}, "from"), ({"from": "2025-03-10", "to": "2025-03-09"}, "to"), ({"to": "0001"}, "to")],
)
def test_bad_dates_are_400(small, marketer_api, query, field):
    response = marketer_api.get(url(small), query)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == [field]


def test_results_of_an_unknown_campaign_are_404(marketer_api):
    assert marketer_api.get("/api/v1/campaigns/999999/results/").status_code == 404
