"""The coupons report's figures (SPEC §10 "Reports"): per coupon template, and per campaign where a campaign issued
the coupons, what was issued, redeemed, expired and voided in a range of business dates, the redemption rate of the
coupons issued in it, the discount given, and the revenue of the orders that used a coupon.

A coupon has no ledger: its row is its state, so the figures are read from the coupons themselves (a few GROUP BYs
over the range's coupons), with the purchases joined by (source, order_no) for the revenue. No index serves
issued_at or used_at (each would cost every issued coupon a write): a range scans the coupons table, fine for a
report read now and then; a nightly snapshot is the way when that table grows to tens of millions.
A coupon's campaign is its `source_ref` `campaign:<id>` when its source is `campaign`
(campaigns.services.engine issues them so)."""

from decimal import Decimal

from django.db import connection
from django.db.models import Case, CharField, Count, Exists, OuterRef, Q, Sum, Value, When

from campaigns.models import Campaign
from campaigns.models_coupons import Coupon, CouponSource, CouponStatus, CouponTemplate
from loyalty.clock import business_date, end_of_business_day, start_of_business_day
from members.models import Purchase

CENT = Decimal("0.01")
COUNTS = ["issued", "issued_redeemed", "redeemed", "expired", "voided", "orders", "redemptions_without_purchase"]
FIGURES = [*COUNTS, "redemption_rate", "discount", "revenue"]
CAMPAIGN_PREFIX = "campaign:"


def _money(value):
    return f"{Decimal(str(value or 0)).quantize(CENT):.2f}"


def _rate(part, whole):
    return round(part / whole, 4) if whole else 0.0


def _campaign_key():
    """The coupon's campaign as stored: its source_ref for a campaign's coupon, '' for the others."""
    return Case(
        When(source=CouponSource.CAMPAIGN, then="source_ref"), default=Value(""), output_field=CharField(max_length=64)
    )


def _campaign_id(key):
    if key and key.startswith(CAMPAIGN_PREFIX) and key[len(CAMPAIGN_PREFIX) :].isdigit():
        return int(key[len(CAMPAIGN_PREFIX) :])
    return None


def _coupons(template_id, campaign_id):
    coupons = Coupon.objects.all()
    if template_id is not None:
        coupons = coupons.filter(template_id=template_id)
    if campaign_id is not None:
        coupons = coupons.filter(source=CouponSource.CAMPAIGN, source_ref=f"{CAMPAIGN_PREFIX}{campaign_id}")
    return coupons.annotate(campaign_key=_campaign_key())


def _grouped(queryset, **figures):
    return {
        (row["template_id"], row["campaign_key"]): row
        for row in queryset.values("template_id", "campaign_key").annotate(**figures).order_by()
    }


REVENUE_SQL = """
SELECT {group} COUNT(*), SUM(p.amount - p.refunded_amount)
FROM (
    SELECT DISTINCT {inner} c.redeemed_source, c.order_no
    FROM campaigns_coupon c
    WHERE c.status = 'used' AND c.used_at >= %s AND c.used_at < %s {where}
) d
JOIN members_purchase p ON p.source = d.redeemed_source AND p.order_no = d.order_no
{group_by}
"""
CAMPAIGN_KEY_SQL = "CASE WHEN c.source = 'campaign' THEN c.source_ref ELSE '' END AS campaign_key,"


def _revenue(start, end, template_id, campaign_id, store_id, *, by_row):
    """{(template id, campaign key): (orders, revenue)} (by_row), or {None: (orders, revenue)} for the whole
    range: the distinct orders (source, order_no) that coupons redeemed in the range were used on and that have a
    recorded purchase, and Σ of those purchases' amount − refunded_amount (each order once)."""
    adapt = connection.ops.adapt_datetimefield_value
    where, params = [], [adapt(start), adapt(end)]
    if template_id is not None:
        where.append("AND c.template_id = %s")
        params.append(template_id)
    if campaign_id is not None:
        where.append("AND c.source = 'campaign' AND c.source_ref = %s")
        params.append(f"{CAMPAIGN_PREFIX}{campaign_id}")
    if store_id is not None:
        where.append("AND c.store_id = %s")
        params.append(store_id)
    sql = REVENUE_SQL.format(
        group="d.template_id, d.campaign_key," if by_row else "",
        inner=f"c.template_id, {CAMPAIGN_KEY_SQL}" if by_row else "",
        where=" ".join(where),
        group_by="GROUP BY d.template_id, d.campaign_key" if by_row else "",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if by_row:
        return {(row[0], row[1]): (row[2], row[3]) for row in rows}
    return {None: (rows[0][0], rows[0][1]) if rows else (0, None)}


def coupons_report(first, last, *, template_id=None, campaign_id=None, store_id=None):
    """The report's body for business dates first..last (both included); see the view's docstring."""
    start, end = start_of_business_day(first), end_of_business_day(last)
    today = business_date()
    coupons = _coupons(template_id, campaign_id)
    issued_coupons, redeemed_coupons = coupons, coupons
    if store_id is not None:
        issued_coupons = coupons.filter(member__home_store_id=store_id)
        redeemed_coupons = coupons.filter(store_id=store_id)
    used = Q(status=CouponStatus.USED)
    issued = _grouped(
        issued_coupons.filter(issued_at__gte=start, issued_at__lt=end),
        issued=Count("id"),
        issued_redeemed=Count("id", filter=used),
    )
    redeemed = _grouped(
        redeemed_coupons.filter(used, used_at__gte=start, used_at__lt=end),
        redeemed=Count("id"),
        discount=Sum("discount"),
    )
    ended = Q(status=CouponStatus.EXPIRED) | Q(status=CouponStatus.UNUSED, valid_until__lt=today)
    expired = _grouped(issued_coupons.filter(ended, valid_until__gte=first, valid_until__lte=last), expired=Count("id"))
    voided = _grouped(
        issued_coupons.filter(status=CouponStatus.VOID, status_changed_at__gte=start, status_changed_at__lt=end),
        voided=Count("id"),
    )
    revenue = _revenue(start, end, template_id, campaign_id, store_id, by_row=True)
    recorded = Purchase.objects.filter(source=OuterRef("redeemed_source"), order_no=OuterRef("order_no"))
    without_purchase = _grouped(
        redeemed_coupons.filter(used, used_at__gte=start, used_at__lt=end).filter(~Exists(recorded)), n=Count("id")
    )
    keys = sorted(
        {*issued, *redeemed, *expired, *voided, *revenue},
        key=lambda key: (key[0], _campaign_id(key[1]) or 0, key[1]),
    )
    names = dict(CouponTemplate.objects.filter(pk__in={key[0] for key in keys}).values_list("pk", "name"))
    campaign_ids = {_campaign_id(key[1]) for key in keys} - {None}
    campaign_names = dict(Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "name"))
    rows = []
    for key in keys:
        template, campaign = key[0], _campaign_id(key[1])
        figures = {
            "issued": issued.get(key, {}).get("issued", 0),
            "issued_redeemed": issued.get(key, {}).get("issued_redeemed", 0),
            "redeemed": redeemed.get(key, {}).get("redeemed", 0),
            "expired": expired.get(key, {}).get("expired", 0),
            "voided": voided.get(key, {}).get("voided", 0),
            "orders": revenue.get(key, (0, None))[0],
            "redemptions_without_purchase": without_purchase.get(key, {}).get("n", 0),
        }
        rows.append(
            {
                "template": str(template),
                "template_name": names.get(template, ""),
                "campaign": str(campaign) if campaign is not None else None,
                "campaign_name": campaign_names.get(campaign) if campaign is not None else None,
                **figures,
                "redemption_rate": _rate(figures["issued_redeemed"], figures["issued"]),
                "discount": _money(redeemed.get(key, {}).get("discount")),
                "revenue": _money(revenue.get(key, (0, None))[1]),
            }
        )
    orders, revenue_total = _revenue(start, end, template_id, campaign_id, store_id, by_row=False)[None]
    totals = {name: sum(row[name] for row in rows) for name in COUNTS}
    totals["orders"] = orders or 0
    totals["redemption_rate"] = _rate(totals["issued_redeemed"], totals["issued"])
    totals["discount"] = _money(sum((Decimal(row["discount"]) for row in rows), Decimal(0)))
    totals["revenue"] = _money(revenue_total)
    return {"from": first, "to": last, "rows": rows, "totals": totals}
