"""A campaign's total points budget, never exceeded however many tills earn at once.

Each award takes from the budget with the campaign's row locked (one UPDATE that computes the grant), inside the
earn's transaction: the lock is held until that transaction ends, so the awards of one campaign are serialised and
the sum of the awards never passes `budget_points` (a check constraint holds it too). Lock order (members.locking):
campaign rows come after the member's own locks, several in campaign-id order. Only campaigns with a budget take
this lock; an unlimited campaign costs no statement here, a budgeted one one UPDATE … RETURNING.

When a take finds the budget spent, the campaign stops awarding and one alert is raised (loyalty.alerts)."""

from django.db import connection
from django.db.models import F
from django.utils import timezone

from campaigns.models import Campaign
from loyalty.alerts import raise_alert

BUDGET_RULE = "campaign_budget_exhausted"


def left(campaign_id):
    """What is left of the budget as it stands (no lock: for previews)."""
    row = Campaign.objects.filter(pk=campaign_id).values_list("budget_points", "budget_used").first()
    if row is None or row[0] is None:
        return 0 if row is None else 2**31
    return max(row[0] - row[1], 0)


TAKE_SQL = """
UPDATE campaigns_campaign
SET budget_used = budget_used + (CASE WHEN %(points)s < budget_points - budget_used
                                      THEN %(points)s ELSE budget_points - budget_used END),
    budget_last_taken = (CASE WHEN %(points)s < budget_points - budget_used
                              THEN %(points)s ELSE budget_points - budget_used END)
WHERE id = %(id)s AND budget_points IS NOT NULL
RETURNING budget_last_taken, budget_used, budget_points
"""


def take(campaign_id, points, *, name=""):
    """Take up to `points` from the budget; returns what was granted (less when the budget runs out, 0 when spent).
    One statement: the UPDATE locks the campaign's row until the earn's transaction ends, and every right-hand side
    reads the row as it was (SQL's rule), so the grant is computed from the locked, current budget_used."""
    with connection.cursor() as cursor:
        cursor.execute(TAKE_SQL, {"points": points, "id": campaign_id})
        row = cursor.fetchone()
    if row is None:  # no budget (or no campaign): nothing to take from
        return points
    granted, used, budget = row
    if used >= budget:
        _exhausted(campaign_id, name=name, budget=budget)
    return granted


def give_back(campaign_id, points):
    """Return refunded campaign points to the budget (the refund's transaction, after the member's lock)."""
    Campaign.objects.filter(pk=campaign_id, budget_points__isnull=False).update(budget_used=F("budget_used") - points)


def _exhausted(campaign_id, *, name, budget):
    updated = Campaign.objects.filter(pk=campaign_id, budget_exhausted_at__isnull=True).update(
        budget_exhausted_at=timezone.now()
    )
    if updated:
        raise_alert(
            rule=BUDGET_RULE,
            metric="budget_used",
            value=budget,
            threshold=budget,
            subject=f"campaign:{campaign_id}",
            detail={"campaign": campaign_id, "name": name},
            key=f"{BUDGET_RULE}:{campaign_id}",
        )
