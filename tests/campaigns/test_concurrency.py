"""Budgets and caps under real concurrency on PostgreSQL: tills earning at the same moment, each its own
connection."""

from collections import Counter
from decimal import Decimal

import pytest

from campaigns.models import Campaign, CampaignAward
from loyalty.models import Alert
from tests.campaigns.helpers import running_campaign
from tests.factories import MemberFactory
from tests.points.helpers import assert_ledger_consistent
from tests.points.test_concurrency import outcome, run_together

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
THREADS = 30


def _campaign_points(response):
    return sum(
        line["points"] for line in response.json()["points"]["breakdown"] if line["source"].startswith("campaign:")
    )


def test_thirty_tills_against_a_budget_that_fits_ten_awards(api, store_a):
    members = MemberFactory.create_batch(THREADS, home_store=store_a)
    budgeted = running_campaign(name="Double 11", multiplier=Decimal("2"), budget_points=1000)
    responses = run_together(
        THREADS,
        lambda i: api().post(
            "/api/v1/purchases/",
            {"member": str(members[i].pk), "order_no": f"T{i}", "amount": "100.00", "store": "A001"},
            format="json",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: THREADS}
    assert Counter(_campaign_points(response) for response in responses) == {100: 10, 0: 20}
    assert sorted(response.json()["points"]["awarded"] for response in responses) == [100] * 20 + [200] * 10
    budgeted.refresh_from_db()
    assert budgeted.budget_used == 1000
    assert sum(CampaignAward.objects.values_list("points", flat=True)) == 1000
    assert Alert.objects.filter(rule="campaign_budget_exhausted").count() == 1
    assert_ledger_consistent()


def test_one_member_at_thirty_tills_never_passes_her_cap(api, store_a):
    member = MemberFactory(home_store=store_a)
    capped = running_campaign(multiplier=Decimal("2"), per_member_cap=500)
    responses = run_together(
        THREADS,
        lambda i: api().post(
            "/api/v1/purchases/",
            {"member": str(member.pk), "order_no": f"C{i}", "amount": "100.00", "store": "A001"},
            format="json",
        ),
    )
    assert Counter(map(outcome, responses)) == {201: THREADS}
    assert Counter(_campaign_points(response) for response in responses) == {100: 5, 0: 25}
    assert sum(CampaignAward.objects.filter(campaign=capped).values_list("points", flat=True)) == 500
    assert Campaign.objects.get().budget_used == 0
    assert_ledger_consistent()
