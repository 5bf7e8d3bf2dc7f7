"""The coupons report: JSON, or CSV streamed with ?format=csv. The figures come from reports.coupons_report; the
view's docstring, which is also its OpenAPI description, says how they are computed."""

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from campaigns.models import Campaign
from campaigns.models_coupons import CouponTemplate
from loyalty.api import csv_response
from reports import coupons_report
from reports.views import ReportView
from reports.views_core import ERRORS, FORMAT, RANGE, date_range, documented, store_id

TEMPLATE = OpenApiParameter("template", str, description="a coupon template's id")
CAMPAIGN = OpenApiParameter("campaign", str, description="a campaign's id: the coupons it issued")
STORE = OpenApiParameter(
    "store",
    str,
    description="a store's code: redemptions at that store, and the coupons of members whose home store it is",
)


class CouponFiguresSerializer(serializers.Serializer):
    issued = serializers.IntegerField()
    issued_redeemed = serializers.IntegerField(help_text="of the coupons issued in the range, those used now")
    redemption_rate = serializers.FloatField()
    redeemed = serializers.IntegerField()
    expired = serializers.IntegerField()
    voided = serializers.IntegerField()
    discount = serializers.CharField(help_text="decimal string")
    orders = serializers.IntegerField()
    revenue = serializers.CharField(help_text="decimal string")
    redemptions_without_purchase = serializers.IntegerField()


class CouponReportRowSerializer(CouponFiguresSerializer):
    template = serializers.CharField()
    template_name = serializers.CharField()
    campaign = serializers.CharField(allow_null=True)
    campaign_name = serializers.CharField(allow_null=True)


class CouponReportSerializer(serializers.Serializer):
    rows = CouponReportRowSerializer(many=True)
    totals = CouponFiguresSerializer()

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField(), **super().get_fields()}


def _id_param(request, name, model, what):
    raw = request.query_params.get(name)
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 18 or not model.objects.filter(pk=int(raw)).exists():
        raise ValidationError({name: [gettext("No %(what)s with the id %(raw)r.") % {"what": what, "raw": raw}]})
    return int(raw)


class CouponReportView(ReportView):
    @documented(
        parameters=[*RANGE, TEMPLATE, CAMPAIGN, STORE, FORMAT], responses={200: CouponReportSerializer, **ERRORS}
    )
    def get(self, request):
        """Coupons (优惠券) from `from` to `to` (business dates, both included): one row per coupon template and,
        for coupons a campaign issued, per campaign (`campaign` null: issued otherwise: API, clerk, reward, bulk,
        registration, birthday). A row appears when any figure of it is not 0.

        - issued = coupons issued in the range (issued_at); issued_redeemed = of those, the ones used now;
          redemption_rate = issued_redeemed ÷ issued (0 when none issued; 4 decimals)
        - redeemed = coupons used in the range (used_at) and still used (an undone or refunded use no longer
          counts); discount = Σ their discount
        - expired = coupons that ended unused: status expired, or unused past their last valid day, whose last
          valid day (valid_until) is in the range
        - voided = coupons voided in the range (a cancelled points redemption's coupons)
        - orders = the distinct orders (source, order_no) the range's redeemed coupons were used on that have a
          recorded purchase; revenue = Σ over those orders of the purchase's amount − refunded_amount, each order
          once (an order with two coupons of one row counts once in it; totals count each order once overall)
        - redemptions_without_purchase = redeemed coupons whose order has no recorded purchase (the POS redeemed
          it but never sent the purchase): their orders are not in orders nor revenue
        - with `template`: that template's coupons; with `campaign`: the coupons that campaign issued; with
          `store`: redeemed, discount, orders, revenue and redemptions_without_purchase of redemptions at that
          store, and issued, issued_redeemed, expired, voided of the coupons of members whose home store it is
        - totals = the rows summed (orders and revenue: each order once); redemption_rate of the totals

        Money: decimal strings with 2 decimals. 400 `invalid` for a malformed or out-of-range date, an unknown
        template, campaign or store."""
        first, last = date_range(request)
        body = coupons_report.coupons_report(
            first,
            last,
            template_id=_id_param(request, "template", CouponTemplate, "coupon template"),
            campaign_id=_id_param(request, "campaign", Campaign, "campaign"),
            store_id=store_id(request),
        )
        if self.wants_csv(request):
            return self.csv(body, first, last)
        return Response(body)

    @staticmethod
    def csv(body, first, last):
        """One line per row, then the `total` line."""
        figures = coupons_report.FIGURES
        rows = [
            [
                "row",
                row["template"],
                row["template_name"],
                row["campaign"] or "",
                row["campaign_name"] or "",
                *(row[f] for f in figures),
            ]
            for row in body["rows"]
        ]
        rows.append(["total", "", "", "", "", *(body["totals"][f] for f in figures)])
        header = ["section", "template", "template_name", "campaign", "campaign_name", *figures]
        return csv_response(f"coupons-{first}-{last}.csv", header, rows)
