"""A campaign's results per group (each variant and the holdout) and the lift of each variant against the holdout.

The window is business dates [from, to], i.e. the instants [start_of_business_day(from), end_of_business_day(to))
in the business time zone. Defaults: from = the business date of the campaign's start; to = the business date of
its last instant (ends_at − 1µs) once it has ended, otherwise yesterday; `to` is never before `from`.

Per group g (a variant's code, `default` for a campaign without variants, or `holdout`), over the members M_g
assigned to it (campaigns_campaignassignment rows of the campaign, whenever they were assigned):
- members = |M_g|.
- A purchase counts when it is a members_purchase row of a member of M_g with occurred_at in the window and its
  net amount is > 0, where net = amount − the members_refund rows of that purchase with occurred_at in the window
  (so an order fully refunded within the window does not count, and a later refund does not change a closed
  window's figures).
- purchases = the number of counted purchases; revenue = Σ their net amounts.
- participants: for a variant, the members of M_g with a campaign award whose business_date is in the window;
  for the holdout (which gets no awards), the members of M_g with at least one counted purchase.
- points_cost = Σ (points − points_returned) of the campaign's awards with business_date in the window to members
  of M_g (0 for the holdout).
- repurchase_rate = |members of M_g with ≥ 2 counted purchases| / members.
- revenue_per_member = revenue / members (every assigned member, purchasing or not).
With no members a group's rates are 0 (and its revenue per member 0.00).

Lift of each variant v against the holdout h (rows only when the campaign has a holdout; every field null when
either group has fewer than 2 members; campaigns.services.significance computes them):
- metric `repurchase_rate`: estimate = p_v − p_h; 95% interval estimate ± z₀.₉₇₅·sqrt(p_v(1−p_v)/n_v +
  p_h(1−p_h)/n_h) (unpooled); p_value of the two-sided z-test z = estimate / sqrt(p(1−p)(1/n_v + 1/n_h)) with
  the pooled p = (x_v + x_h)/(n_v + n_h), where x is the number of repeat members and n = members.
- metric `revenue_per_member`: each assigned member's revenue (0 without a counted purchase) is one observation;
  estimate = mean_v − mean_h (in yuan); Welch's interval estimate ± t₀.₉₇₅(df)·sqrt(s²_v/n_v + s²_h/n_h) with the
  Welch–Satterthwaite df, and the two-sided p-value of Welch's t-test.
- ci_low/ci_high are null when the standard error is 0 (every member the same), p_value when the test's is.
points_per_extra_revenue, per variant (when the holdout has members): extra_revenue = revenue_v −
revenue_per_member_h × members_v (= (revenue_per_member_v − revenue_per_member_h) × members_v, unrounded), and
points_per_extra_revenue = points_cost_v / extra_revenue, null when extra_revenue ≤ 0.

Rounding (API.md): money as decimal strings with 2 decimals (revenue exact; revenue per member and extra revenue
half-up), rates, estimates, interval ends, p-values and points per extra yuan as numbers rounded to 4 decimals.

Cost: one SQL statement groups the assignments with per-member aggregates of purchases (net of in-window
refunds, in integer cents) and awards; it returns per group n, Σx, Σx², counts and points, and the statistics
are computed from those sums exactly (integers and fractions) in Python: no row per member leaves the database.
The statement is portable (PostgreSQL in production, SQLite in tests).
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext

from campaigns.models import HOLDOUT, CampaignStatus, CampaignVariant
from loyalty.clock import business_date, end_of_business_day, start_of_business_day
from loyalty.errors import InvalidInput

from .significance import difference_of_proportions, welch_difference

METRICS = ("repurchase_rate", "revenue_per_member")
EARLIEST, LATEST = date(1900, 1, 1), date(9999, 12, 30)
CENT = Decimal("0.01")

GROUP_SUMS_SQL = """
WITH counted AS (
    SELECT p.member_id, CAST(ROUND((p.amount - COALESCE(r.refunded, 0)) * 100) AS BIGINT) AS net_cents
    FROM members_purchase p
    JOIN campaigns_campaignassignment a ON a.member_id = p.member_id AND a.campaign_id = %(campaign)s
    LEFT JOIN (
        SELECT purchase_id, SUM(amount) AS refunded FROM members_refund
        WHERE occurred_at >= %(window_start)s AND occurred_at < %(window_end)s
        GROUP BY purchase_id
    ) r ON r.purchase_id = p.id
    WHERE p.occurred_at >= %(window_start)s AND p.occurred_at < %(window_end)s
),
bought AS (
    SELECT member_id, COUNT(*) AS purchases, SUM(net_cents) AS revenue_cents
    FROM counted WHERE net_cents > 0
    GROUP BY member_id
),
awarded AS (
    SELECT member_id, SUM(points - points_returned) AS points
    FROM campaigns_campaignaward
    WHERE campaign_id = %(campaign)s AND business_date >= %(first_day)s AND business_date <= %(last_day)s
    GROUP BY member_id
)
SELECT a."group",
       COUNT(*),
       COUNT(aw.member_id),
       COUNT(b.member_id),
       COALESCE(SUM(CASE WHEN b.purchases >= 2 THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(b.purchases), 0),
       COALESCE(SUM(b.revenue_cents), 0),
       COALESCE(SUM(b.revenue_cents * b.revenue_cents), 0),
       COALESCE(SUM(aw.points), 0)
FROM campaigns_campaignassignment a
LEFT JOIN bought b ON b.member_id = a.member_id
LEFT JOIN awarded aw ON aw.member_id = a.member_id
WHERE a.campaign_id = %(campaign)s
GROUP BY a."group"
"""


@dataclass(frozen=True)
class GroupSums:
    """A group's sufficient statistics: counts, and the members' revenue in cents as n, Σx and Σx²."""

    group: str
    members: int = 0
    awarded_members: int = 0
    purchasing_members: int = 0
    repeat_members: int = 0
    purchases: int = 0
    revenue_cents: int = 0
    revenue_cents_squared: int = 0
    points_cost: int = 0

    @property
    def participants(self):
        return self.purchasing_members if self.group == HOLDOUT else self.awarded_members


def _invalid(field, message):
    return InvalidInput({field: [message]})


def results_window(campaign, date_from=None, date_to=None, *, now=None):
    """The business dates (first, last) the results cover; InvalidInput (400) for a date out of range or a
    `to` before `from`."""
    for field, day in (("from", date_from), ("to", date_to)):
        if day is not None and not EARLIEST <= day <= LATEST:
            raise _invalid(
                field,
                gettext("Use a date between %(earliest)s and %(latest)s.") % {"earliest": EARLIEST, "latest": LATEST},
            )
    now = now or timezone.now()
    first = date_from or business_date(campaign.starts_at)
    if date_to is not None:
        if date_to < first:
            raise _invalid("to", gettext("The window ends before it starts."))
        return first, date_to
    ended = campaign.status_at(now) == CampaignStatus.ENDED
    if ended and campaign.ends_at is not None:
        last = business_date(campaign.ends_at - timedelta(microseconds=1))
    else:
        last = business_date(now) - timedelta(days=1)
    return first, max(last, first)


def group_sums(campaign_id, first_day, last_day):
    """{group: GroupSums} for the groups with assigned members: one statement."""
    ops = connection.ops
    params = {
        "campaign": campaign_id,
        "window_start": ops.adapt_datetimefield_value(start_of_business_day(first_day)),
        "window_end": ops.adapt_datetimefield_value(end_of_business_day(last_day)),
        "first_day": ops.adapt_datefield_value(first_day),
        "last_day": ops.adapt_datefield_value(last_day),
    }
    with connection.cursor() as cursor:
        cursor.execute(GROUP_SUMS_SQL, params)
        rows = cursor.fetchall()
    return {row[0]: GroupSums(row[0], *(int(value) for value in row[1:])) for row in rows}


def _group_order(campaign, found):
    """Variants in id order (`default` without variants), groups found in assignments only (a variant since
    removed), then the holdout when there is one."""
    codes = list(CampaignVariant.objects.filter(campaign=campaign).order_by("id").values_list("code", flat=True))
    if not codes:
        codes = [code for code in found if code != HOLDOUT] or ["default"]
    codes += sorted(code for code in found if code not in codes and code != HOLDOUT)
    if campaign.holdout_percent > 0 or HOLDOUT in found:
        codes.append(HOLDOUT)
    return codes


def _rate(value):
    return round(float(value), 4) + 0.0  # + 0.0: -0.0 reads as 0.0


def _optional_rate(value):
    return None if value is None else _rate(value)


def _cents(amount):
    """A money string with 2 decimals from an exact amount in cents (int or Fraction), half-up."""
    amount = Fraction(amount)
    yuan = Decimal(amount.numerator) / Decimal(amount.denominator) / 100
    return str(yuan.quantize(CENT, rounding=ROUND_HALF_UP))


def _figures(sums):
    members = sums.members
    return {
        "group": sums.group,
        "members": members,
        "participants": sums.participants,
        "purchases": sums.purchases,
        "revenue": _cents(sums.revenue_cents),
        "points_cost": sums.points_cost,
        "repurchase_rate": _rate(Fraction(sums.repeat_members, members)) if members else 0.0,
        "revenue_per_member": _cents(Fraction(sums.revenue_cents, members)) if members else "0.00",
    }


def _lift_row(group, metric, interval):
    return {
        "group": group,
        "metric": metric,
        "estimate": _optional_rate(interval.estimate),
        "ci_low": _optional_rate(interval.ci_low),
        "ci_high": _optional_rate(interval.ci_high),
        "p_value": _optional_rate(interval.p_value),
    }


def _lift(variant, holdout):
    repurchase = difference_of_proportions(
        variant.repeat_members, variant.members, holdout.repeat_members, holdout.members
    )
    revenue = welch_difference(
        variant.members,
        variant.revenue_cents,
        variant.revenue_cents_squared,
        holdout.members,
        holdout.revenue_cents,
        holdout.revenue_cents_squared,
        scale=100,
    )
    return [
        _lift_row(variant.group, "repurchase_rate", repurchase),
        _lift_row(variant.group, "revenue_per_member", revenue),
    ]


def _points_per_extra_revenue(variant, holdout):
    if not holdout.members:
        return {"group": variant.group, "extra_revenue": None, "points_per_extra_revenue": None}
    extra_cents = variant.revenue_cents - Fraction(holdout.revenue_cents, holdout.members) * variant.members
    ratio = Fraction(variant.points_cost * 100) / extra_cents if extra_cents > 0 else None
    return {
        "group": variant.group,
        "extra_revenue": _cents(extra_cents),
        "points_per_extra_revenue": _optional_rate(ratio),
    }


def campaign_results(campaign, *, date_from=None, date_to=None):
    """The results shape of API.md ("Campaign results") plus points_per_extra_revenue, over the window
    (results_window). Reads only; raises InvalidInput for a bad window."""
    first_day, last_day = results_window(campaign, date_from, date_to)
    found = group_sums(campaign.pk, first_day, last_day)
    order = _group_order(campaign, found)
    sums = [found.get(code) or GroupSums(code) for code in order]
    holdout = next((group for group in sums if group.group == HOLDOUT), None)
    variants = [group for group in sums if group.group != HOLDOUT]
    result = {
        "campaign_id": str(campaign.pk),
        "from": first_day.isoformat(),
        "to": last_day.isoformat(),
        "groups": [_figures(group) for group in sums],
        "lift": [],
        "points_per_extra_revenue": [],
    }
    if holdout is not None:
        for variant in variants:
            result["lift"].extend(_lift(variant, holdout))
            result["points_per_extra_revenue"].append(_points_per_extra_revenue(variant, holdout))
    return result


GROUP_COLUMNS = [
    "group",
    "members",
    "participants",
    "purchases",
    "revenue",
    "points_cost",
    "repurchase_rate",
    "revenue_per_member",
]
LIFT_COLUMNS = ["estimate", "ci_low", "ci_high", "p_value"]


def results_rows(result):
    """(header, rows) for the CSV download: one row per group with its figures, its lift on each metric
    (`<metric>_lift`, `<metric>_ci_low`, `<metric>_ci_high`, `<metric>_p_value`) and its extra revenue and
    points per extra yuan; empty cells where a value is null or does not apply (the holdout's own lift)."""
    header = ["campaign_id", "from", "to", *GROUP_COLUMNS]
    for metric in METRICS:
        header += [f"{metric}_lift", f"{metric}_ci_low", f"{metric}_ci_high", f"{metric}_p_value"]
    header += ["extra_revenue", "points_per_extra_revenue"]
    lift = {(row["group"], row["metric"]): row for row in result["lift"]}
    extra = {row["group"]: row for row in result["points_per_extra_revenue"]}
    rows = []
    for group in result["groups"]:
        row = [result["campaign_id"], result["from"], result["to"], *(group[column] for column in GROUP_COLUMNS)]
        for metric in METRICS:
            values = lift.get((group["group"], metric), {})
            row += [values.get(column) for column in LIFT_COLUMNS]
        values = extra.get(group["group"], {})
        row += [values.get("extra_revenue"), values.get("points_per_extra_revenue")]
        rows.append(["" if value is None else value for value in row])
    return header, rows
