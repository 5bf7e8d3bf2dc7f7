"""A campaign's total points budget, never exceeded however many tills earn at once.

Each award takes from the budget with the campaign's row locked (SELECT … FOR UPDATE, then one UPDATE), inside the
earn's transaction: the lock is held until that transaction ends, so the awards of one campaign are serialised and
the sum of the awards never passes `budget_points` (a check constraint holds it too). Lock order (members.locking):
campaign rows come after the member's own locks, several in campaign-id order. Only campaigns with a budget take
this lock; an unlimited campaign costs no statement here.

When a take finds the budget spent, the campaign stops awarding and one alert is raised (loyalty.alerts)."""

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


def take(campaign_id, points, *, name=""):
    """Take up to `points` from the budget; returns what was granted (less when the budget runs out, 0 when spent).
    Call inside the earn's transaction."""
    row = (
        Campaign.objects.select_for_update().filter(pk=campaign_id).values_list("budget_points", "budget_used").first()
    )
    if row is None:
        return 0
    budget, used = row
    if budget is None:
        return points
    granted = max(min(points, budget - used), 0)
    if granted:
        Campaign.objects.filter(pk=campaign_id).update(budget_used=F("budget_used") + granted)
    if used + granted >= budget:
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
