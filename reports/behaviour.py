"""Behaviour reports (SPEC §6, issue 12): repurchase, retention cohorts, categories bought together, order value,
frequency and purchase cycle, top rewards / categories / SKUs, and the campaigns' results side by side.

The definitions every report shares:
- A period is business dates [from, to] in the business time zone (settings.TIME_ZONE): the instants
  [00:00 of `from`, 00:00 of the day after `to`).
- A purchase counts when it is a members_purchase row with occurred_at in the period and its net amount is > 0,
  where net = amount − the members_refund rows of that purchase with occurred_at in the period. So an order fully
  refunded within the period does not count, a partly refunded one counts with its net amount, and a refund made
  after the period does not change a closed period's figures (as in campaigns.services.results).
- `store` (a store code) and `channel` (offline | online) keep the purchases made at that store / through that
  channel (the retention report, whose rows are members, reads `store` as the members' home store instead).
- Money is added up in integer cents (and order lines in thousandths of a unit times cents), so figures are exact
  on PostgreSQL and on SQLite alike; rates and ratios are numbers rounded half-up to 4 decimals, money decimal
  strings rounded half-up to 2 decimals.

Each report is one or two SQL statements that aggregate in the database (GROUP BY, COUNT(DISTINCT), LAG() over
a member's purchases, percentile_cont on PostgreSQL); no row per member or order comes back to Python. The SQL
is portable except for the business-date arithmetic (PostgreSQL: AT TIME ZONE; SQLite, for the demo and the
tests: the datetime functions Django's SQLite backend registers) and the median (PostgreSQL: percentile_cont;
SQLite: the middle rows by ROW_NUMBER()). The raw-row reports (retention, basket) are also computed nightly for
the standard ranges and stored (reports.report_results).
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services.results import campaign_results
from loyalty.clock import business_date, end_of_business_day, start_of_business_day
from points.models import Reward

CENT = Decimal("0.01")
DEFAULT_MIN_SUPPORT = Decimal("0.01")
TOP_KINDS = ("rewards", "categories", "skus")
TOP_MAX_LIMIT = 500  # the top endpoint's largest `limit`


@dataclass(frozen=True)
class Period:
    """Business dates [first, last] and the purchase filters of a report."""

    first: date
    last: date
    store_id: int | None = None
    store_code: str | None = None
    channel: str | None = None

    @property
    def echo(self):
        """The period as the reports' bodies show it (and as stored results are keyed)."""
        return {
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "store": self.store_code,
            "channel": self.channel,
        }

    def sql_params(self, **extra):
        ops = connection.ops
        return {
            "window_start": ops.adapt_datetimefield_value(start_of_business_day(self.first)),
            "window_end": ops.adapt_datetimefield_value(end_of_business_day(self.last)),
            "store": self.store_id,
            "channel": self.channel,
            "tz": settings.TIME_ZONE,
            "connection_tz": getattr(connection, "timezone_name", "UTC"),
            **extra,
        }


# --- Numbers --------------------------------------------------------------------------------------------------


def rate(numerator, denominator):
    """numerator / denominator rounded half-up to 4 decimals, as a number; 0.0 when the denominator is 0."""
    if not denominator:
        return 0.0
    numerator, denominator = Fraction(numerator), Fraction(denominator)
    ten_thousandths = (2 * numerator * 10_000 + denominator) // (2 * denominator)
    return int(ten_thousandths) / 10_000


def money_from_cents(cents):
    """A decimal string with 2 decimals from an exact amount in cents (an int or a Fraction), rounded half-up."""
    cents = Fraction(cents)
    yuan = Decimal(cents.numerator) / Decimal(cents.denominator) / 100
    return str(yuan.quantize(CENT, rounding=ROUND_HALF_UP))


def _int(value):
    return int(value or 0)


# --- SQL building blocks --------------------------------------------------------------------------------------


def _day_number(column):
    """SQL: the business date of a timestamp column as a day number (days since 1970-01-01)."""
    if connection.vendor == "postgresql":
        return f"(({column} AT TIME ZONE %(tz)s)::date - DATE '1970-01-01')"
    return f"CAST(julianday(django_datetime_cast_date({column}, %(tz)s, %(connection_tz)s)) - 2440587.5 AS INTEGER)"


def _month_key(column):
    """SQL: the business month of a timestamp column (PostgreSQL: its first instant as a local timestamp; SQLite:
    'YYYY-MM'); _month_index reads either."""
    if connection.vendor == "postgresql":
        return f"date_trunc('month', {column} AT TIME ZONE %(tz)s)"
    return f"substr(django_datetime_cast_date({column}, %(tz)s, %(connection_tz)s), 1, 7)"


def _month_index(key):
    """year × 12 + month − 1 of a _month_key value."""
    if isinstance(key, str):
        return int(key[:4]) * 12 + int(key[5:7]) - 1
    return key.year * 12 + key.month - 1


def _median(column, relation):
    """SQL: the median of a column of a relation (the mean of the two middle values for an even count)."""
    if connection.vendor == "postgresql":
        return f"(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY {column}) FROM {relation})"  # noqa: S608
    return (
        f"(SELECT AVG({column}) FROM (SELECT {column}, ROW_NUMBER() OVER (ORDER BY {column}) AS position, "  # noqa: S608
        f"COUNT(*) OVER () AS total FROM {relation}) middle "
        "WHERE position IN ((total + 1) / 2, (total + 2) / 2))"
    )


def _net_cents(purchase, refunded):
    """SQL: a purchase's net amount in integer cents (exact numeric on PostgreSQL; rounded from SQLite's floats)."""
    if connection.vendor == "postgresql":
        return f"CAST(({purchase}.amount - COALESCE({refunded}, 0)) * 100 AS BIGINT)"
    return f"CAST(ROUND(({purchase}.amount - COALESCE({refunded}, 0)) * 100) AS BIGINT)"


def _net_positive(purchase, refunded):
    """SQL: the purchase counts (its net amount is above zero)."""
    if connection.vendor == "postgresql":
        return f"{purchase}.amount > COALESCE({refunded}, 0)"
    return f"{_net_cents(purchase, refunded)} > 0"


# The refunds dated in the period, per purchase.
REFUNDED_SQL = """SELECT purchase_id, SUM(amount) AS refunded FROM members_refund
        WHERE occurred_at >= %(window_start)s AND occurred_at < %(window_end)s
        GROUP BY purchase_id"""


def _counted(period):
    """SQL: the CTE `counted` (id, member_id, occurred_at, net_cents) of the purchases that count in the period
    (see the module docstring), with the period's store and channel filters."""
    filters = ""
    if period.store_id is not None:
        filters += " AND p.store_id = %(store)s"
    if period.channel:
        filters += " AND p.channel = %(channel)s"
    # Fixed fragments only: every value is a bound parameter.
    return f"""counted AS (
    SELECT p.id, p.member_id, p.occurred_at, {_net_cents("p", "r.refunded")} AS net_cents
    FROM members_purchase p
    LEFT JOIN ({REFUNDED_SQL}) r ON r.purchase_id = p.id
    WHERE p.occurred_at >= %(window_start)s AND p.occurred_at < %(window_end)s
      AND {_net_positive("p", "r.refunded")}{filters}
)"""  # noqa: S608


def _fetch(statement, params):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


# --- Repurchase -----------------------------------------------------------------------------------------------


def repurchase(period):
    """Repurchase rate over the period.

    - purchasing_members = members with ≥ 1 counted purchase in the period;
    - repeat_members = members with ≥ 2 counted purchases in the period (a fully refunded order does not count);
    - repurchase_rate = repeat_members ÷ purchasing_members (0 when nobody purchased).

    A purchase counts when it occurred in the period and its amount minus its refunds dated in the period is
    above zero; `store` and `channel` keep the purchases made there.
    """
    statement = f"""
WITH {_counted(period)}, per_member AS (SELECT member_id, COUNT(*) AS orders FROM counted GROUP BY member_id)
SELECT COUNT(*), COALESCE(SUM(CASE WHEN orders >= 2 THEN 1 ELSE 0 END), 0) FROM per_member"""  # noqa: S608
    purchasing, repeat = (_int(value) for value in _fetch(statement, period.sql_params())[0])
    return {
        **period.echo,
        "purchasing_members": purchasing,
        "repeat_members": repeat,
        "repurchase_rate": rate(repeat, purchasing),
    }


# --- Retention cohorts ----------------------------------------------------------------------------------------


def default_retention_period(yesterday=None):
    """The standard cohort range: the last 12 join months up to yesterday (the first day of the month 11 months
    before yesterday's, to yesterday)."""
    last = yesterday or business_date() - timedelta(days=1)
    month = last.year * 12 + last.month - 1 - 11
    return date(month // 12, month % 12 + 1, 1), last


def _month_label(number):
    return f"{number // 12:04d}-{number % 12 + 1:02d}"


def retention(period):
    """Retention cohorts by join month.

    - A cohort is the members who joined (joined_at, in the business time zone) in one calendar month of the
      period [from, to] (with `store`: whose home store it is), merged-away duplicates left out; every month of
      the period has a row, the first and last possibly partial when `from` / `to` are not a month's ends.
    - members = the cohort's size;
      purchasing[k] = cohort members with ≥ 1 counted purchase in the k-th calendar month after the join month
      (k = 0 is the join month itself), for k = 0 … the month of `to`; purchases up to the end of `to` only, so
      the last month may be partial;
    - retained[k] = purchasing[k] ÷ members (0 for an empty cohort).

    A purchase counts when it occurred in [from, to] and its amount minus its refunds dated in [from, to] is
    above zero, wherever it was made; a purchase before the member's join month is in no column.
    """
    cohort = "m.joined_at >= %(window_start)s AND m.joined_at < %(window_end)s AND m.status <> 'merged'" + (
        " AND m.home_store_id = %(store)s" if period.store_id is not None else ""
    )
    sizes = f"""
SELECT {_month_key("m.joined_at")} AS cohort_month, COUNT(*) FROM members_member m WHERE {cohort}
GROUP BY cohort_month"""  # noqa: S608
    # The cohort's members joined first, so that only their purchases are netted and dated.
    active = f"""
WITH active AS (
    SELECT DISTINCT p.member_id, {_month_key("m.joined_at")} AS cohort_month, {_month_key("p.occurred_at")} AS month
    FROM members_purchase p
    JOIN members_member m ON m.id = p.member_id
    LEFT JOIN ({REFUNDED_SQL}) r ON r.purchase_id = p.id
    WHERE {cohort} AND p.occurred_at >= %(window_start)s AND p.occurred_at < %(window_end)s
      AND {_net_positive("p", "r.refunded")}
)
SELECT cohort_month, month, COUNT(*) FROM active GROUP BY cohort_month, month"""  # noqa: S608
    params = period.sql_params()
    members = {_month_index(month): int(count) for month, count in _fetch(sizes, params)}
    purchasing = {}
    for cohort_month, month, count in _fetch(active, params):
        offset = _month_index(month) - _month_index(cohort_month)
        if offset >= 0:  # a purchase before the join month is in no column
            purchasing[_month_index(cohort_month), offset] = int(count)
    first_month = period.first.year * 12 + period.first.month - 1
    last_month = period.last.year * 12 + period.last.month - 1
    cohorts = []
    for month in range(first_month, last_month + 1):
        size = members.get(month, 0)
        counts = [purchasing.get((month, offset), 0) for offset in range(last_month - month + 1)]
        cohorts.append(
            {
                "cohort": _month_label(month),
                "members": size,
                "purchasing": counts,
                "retained": [rate(count, size) for count in counts],
            }
        )
    return {
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "store": period.store_code,
        "cohorts": cohorts,
    }


# --- Categories bought together -------------------------------------------------------------------------------


def basket(period, min_support=DEFAULT_MIN_SUPPORT):
    """Categories bought together, from the order lines (members.PurchaseLine.category) of the purchases that
    count in the period.

    - An order's categories are the distinct non-blank categories of its lines that were not wholly returned
      (quantity > refunded quantity); a pair is counted once per order however many lines it has.
    - orders = N = counted orders with ≥ 1 categorised line; n(a) = those with category a; n(a,b) = those with
      both a and b.
    - support(a,b) = n(a,b) ÷ N; confidence(a→b) = n(a,b) ÷ n(a); lift(a,b) = support(a,b) ÷ (support(a) ×
      support(b)) = n(a,b) × N ÷ (n(a) × n(b)).
    - Pairs with support ≥ min_support (default 0.01) are listed in both directions (a→b and b→a: the same
      support and lift, each with its own confidence), sorted by lift, then support, then confidence (all
      descending), then a and b.
    """
    statement = f"""
WITH {_counted(period)}, categorised AS (
    SELECT DISTINCT l.purchase_id, l.category
    FROM members_purchaseline l JOIN counted o ON o.id = l.purchase_id
    WHERE l.category <> '' AND l.quantity > l.refunded_quantity
), total AS (
    SELECT COUNT(DISTINCT purchase_id) AS orders FROM categorised
), singles AS (
    SELECT category, COUNT(*) AS orders FROM categorised GROUP BY category
), pairs AS (
    SELECT x.category AS a, y.category AS b, COUNT(*) AS orders
    FROM categorised x JOIN categorised y ON y.purchase_id = x.purchase_id AND x.category < y.category
    GROUP BY x.category, y.category
)
SELECT 'total', NULL, NULL, orders FROM total
UNION ALL SELECT 'single', category, NULL, orders FROM singles
UNION ALL SELECT 'pair', a, b, pairs.orders FROM pairs CROSS JOIN total
WHERE pairs.orders + 0.5 >= %(min_support)s * total.orders"""  # noqa: S608
    # The SQL filter is looser by half an order (float-safe on SQLite); the exact test is below, in fractions.
    rows = _fetch(statement, period.sql_params(min_support=float(min_support)))
    total, singles, pairs = 0, {}, []
    for kind, a, b, count in rows:
        if kind == "total":
            total = int(count)
        elif kind == "single":
            singles[a] = int(count)
        else:
            pairs.append((a, b, int(count)))
    return {
        **period.echo,
        "min_support": float(min_support),
        "orders": total,
        "pairs": basket_pairs(total, singles, pairs, min_support),
    }


def basket_pairs(total, singles, pairs, min_support):
    """The directed pair rows of `basket` from the counts, filtered exactly (n(a,b) ÷ N ≥ min_support)."""
    threshold = Fraction(min_support)
    rows = []
    for a, b, both in pairs:
        if not total or Fraction(both, total) < threshold:
            continue
        lift = Fraction(both * total, singles[a] * singles[b])
        for first, second in ((a, b), (b, a)):
            rows.append(
                {
                    "a": first,
                    "b": second,
                    "orders": both,
                    "support": rate(both, total),
                    "confidence": rate(both, singles[first]),
                    "lift": rate(lift, 1),
                    "_sort": (-lift, -both, -Fraction(both, singles[first]), first, second),
                }
            )
    rows.sort(key=lambda row: row["_sort"])
    for row in rows:
        del row["_sort"]
    return rows


def filter_basket(result, min_support):
    """A stored basket result narrowed to a higher min_support (its pairs with n(a,b) ÷ N ≥ min_support)."""
    threshold = Fraction(min_support)
    total = result["orders"]
    pairs = [row for row in result["pairs"] if total and Fraction(row["orders"], total) >= threshold]
    return {**result, "min_support": float(min_support), "pairs": pairs}


# --- Order value, frequency and purchase cycle ----------------------------------------------------------------


def behaviour(period):
    """Order value, purchase frequency and purchase cycle over the period.

    - orders = counted purchases in the period; revenue = Σ their net amounts (amount − refunds dated in the
      period);
    - average_order_value = revenue ÷ orders (money, half-up; "0.00" without orders);
    - purchasing_members = members with ≥ 1 counted purchase;
    - purchase_frequency = orders ÷ purchasing_members (4 decimals; 0 without orders);
    - purchase_cycle_days = the median, over every pair of consecutive counted purchases of the same member in
      the period (ordered by time), of the days between their business dates (0 for two on the same day); the
      mean of the two middle gaps for an even count; null when no member has 2 counted purchases.
    """
    statement = f"""
WITH {_counted(period)}, gaps AS (
    SELECT {_day_number("occurred_at")} - LAG({_day_number("occurred_at")})
               OVER (PARTITION BY member_id ORDER BY occurred_at, id) AS gap
    FROM counted
), known_gaps AS (SELECT gap FROM gaps WHERE gap IS NOT NULL)
SELECT COUNT(*), COALESCE(SUM(net_cents), 0), COUNT(DISTINCT member_id), {_median("gap", "known_gaps")}
FROM counted"""  # noqa: S608
    orders, revenue_cents, members, cycle = _fetch(statement, period.sql_params())[0]
    orders, revenue_cents, members = _int(orders), _int(revenue_cents), _int(members)
    return {
        **period.echo,
        "orders": orders,
        "revenue": money_from_cents(revenue_cents),
        "average_order_value": money_from_cents(Fraction(revenue_cents, orders)) if orders else "0.00",
        "purchasing_members": members,
        "purchase_frequency": rate(orders, members),
        "purchase_cycle_days": None if cycle is None else rate(Fraction(cycle), 1),
    }


# --- Top rewards, categories, SKUs ----------------------------------------------------------------------------

TOP_LINE_ORDER = {"amount": "amount DESC, milli DESC, item", "quantity": "milli DESC, amount DESC, item"}


def top(period, kind, *, order_by="amount", limit=20):
    """The top rewards, categories or SKUs of the period.

    - rewards: redemptions created in the period and not cancelled (with `store`: made at that store), grouped
      by reward code (a reward's versions together; name = the current version's): count = redemptions,
      quantity = Σ quantity, points = Σ points spent; amount null. Sorted by count, then quantity (descending),
      then code.
    - categories / skus: the order lines of the purchases that count in the period (see repurchase) with
      something left after returns, grouped by category (blank left out) or SKU: count = orders with such a
      line, quantity = Σ (quantity − refunded quantity), amount = Σ (quantity − refunded quantity) × unit price;
      name and points null. Sorted by amount (or `order_by=quantity`: quantity first), then the other
      (descending), then the key.
    At most `limit` rows.
    """
    if kind == "rewards":
        return top_body(period, kind, "count", _top_rewards(period, limit))
    return top_body(period, kind, order_by, _top_lines(period, kind, order_by, limit))


def _top_rewards(period, limit):
    store = " AND r.store_id = %(store)s" if period.store_id is not None else ""
    statement = f"""
SELECT w.code, COUNT(*), SUM(r.quantity), SUM(r.points_spent)
FROM points_redemption r JOIN points_reward w ON w.id = r.reward_id
WHERE r.created_at >= %(window_start)s AND r.created_at < %(window_end)s AND r.status = 'completed'{store}
GROUP BY w.code
ORDER BY 2 DESC, 3 DESC, 1
LIMIT %(limit)s"""  # noqa: S608
    found = _fetch(statement, period.sql_params(limit=limit))
    names = {}
    for code, name in (
        Reward.objects.filter(code__in=[row[0] for row in found])
        .order_by("code", F("replaced_at").asc(nulls_first=True), "-id")
        .values_list("code", "name")
    ):
        names.setdefault(code, name)
    return [
        {
            "key": code,
            "name": names.get(code),
            "count": _int(count),
            "quantity": str(_int(quantity)),
            "amount": None,
            "points": _int(points),
        }
        for code, count, quantity, points in found
    ]


TOP_ROW_FIELDS = ("key", "name", "count", "quantity", "amount", "points")


def top_body(period, kind, order_by, rows):
    """The top report's body, its keys and each row's in the one order the API writes them (a stored result's
    JSON comes back from PostgreSQL's jsonb with its keys reordered)."""
    return {
        **period.echo,
        "kind": kind,
        "order_by": order_by,
        "rows": [{field: row[field] for field in TOP_ROW_FIELDS} for row in rows],
    }


def _top_lines_sql(period, kind):
    """SQL: the CTE `grouped` (item, orders, milli, amount) of the categories' or SKUs' order lines (see top)."""
    column = "l.category" if kind == "categories" else "l.sku"
    blank = " AND l.category <> ''" if kind == "categories" else ""
    quantity = "CAST(ROUND((l.quantity - l.refunded_quantity) * 1000) AS BIGINT)"
    return f"""
WITH {_counted(period)}, grouped AS (
    SELECT {column} AS item, COUNT(DISTINCT l.purchase_id) AS orders, SUM({quantity}) AS milli,
           SUM({quantity} * CAST(ROUND(l.unit_price * 100) AS BIGINT)) AS amount
    FROM members_purchaseline l JOIN counted o ON o.id = l.purchase_id
    WHERE l.quantity > l.refunded_quantity{blank}
    GROUP BY {column}
)"""  # noqa: S608


def _top_line_row(key, count, milli, amount):
    return {
        "key": key,
        "name": None,
        "count": _int(count),
        "quantity": str(Decimal(_int(milli)).scaleb(-3)),
        "amount": money_from_cents(Fraction(_int(amount), 1000)),
        "points": None,
    }


def _top_lines(period, kind, order_by, limit):
    statement = f"""{_top_lines_sql(period, kind)}
SELECT item, orders, milli, amount FROM grouped
ORDER BY {TOP_LINE_ORDER[order_by]}
LIMIT %(limit)s"""  # noqa: S608
    return [_top_line_row(*found) for found in _fetch(statement, period.sql_params(limit=limit))]


def top_lines_both_orders(period, kind, limit):
    """{order_by: rows} for both orders of the categories or SKUs (see top), the first `limit` rows of each, from
    one pass over the order lines (the report_results job stores both). Each list is the one top() answers for
    that order_by and limit: the same grouping, the same sort keys (ranked with ROW_NUMBER over the sort of
    TOP_LINE_ORDER)."""
    statement = f"""{_top_lines_sql(period, kind)}, ranked AS (
    SELECT item, orders, milli, amount,
           ROW_NUMBER() OVER (ORDER BY {TOP_LINE_ORDER["amount"]}) AS by_amount,
           ROW_NUMBER() OVER (ORDER BY {TOP_LINE_ORDER["quantity"]}) AS by_quantity
    FROM grouped
)
SELECT item, orders, milli, amount, by_amount, by_quantity FROM ranked
WHERE by_amount <= %(limit)s OR by_quantity <= %(limit)s"""  # noqa: S608
    found = _fetch(statement, period.sql_params(limit=limit))
    return {
        order_by: [
            _top_line_row(*row[:4])
            for row in sorted((row for row in found if row[rank] <= limit), key=lambda row: row[rank])
        ]
        for order_by, rank in (("amount", 4), ("quantity", 5))
    }


# --- Campaigns side by side -----------------------------------------------------------------------------------


def campaigns(period):
    """The results of every campaign that ran in the period, side by side (campaigns.services.results).

    A campaign ran in the period when it was activated at some time (activated_at set: drafts never ran) and its
    run [starts_at, ends_at) overlaps the period. Each campaign's results cover the part of the period it ran:
    from = the later of `from` and its start's business date, to = the earlier of `to` and the business date of
    its last instant (ends_at − 1 µs). The figures of each group are those of GET /campaigns/{id}/results/ for
    that window. Ordered by start, then id.
    """
    window_start, window_end = start_of_business_day(period.first), end_of_business_day(period.last)
    running = (
        Campaign.objects.filter(activated_at__isnull=False, starts_at__lt=window_end)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=window_start))
        .order_by("starts_at", "id")
    )
    now = timezone.now()
    listed = []
    for campaign in running:
        first = max(period.first, business_date(campaign.starts_at))
        last = period.last
        if campaign.ends_at is not None:
            last = min(last, business_date(campaign.ends_at - timedelta(microseconds=1)))
        result = campaign_results(campaign, date_from=first, date_to=last)
        listed.append(
            {
                "campaign_id": result.pop("campaign_id"),
                "name": campaign.name,
                "kind": campaign.kind,
                "status": campaign.status_at(now),
                **result,
            }
        )
    return {"from": period.first.isoformat(), "to": period.last.isoformat(), "campaigns": listed}
