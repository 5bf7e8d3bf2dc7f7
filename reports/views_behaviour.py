"""HTTP for the behaviour reports: validate the period and the filters, call reports.behaviour (or, for the reports
with stored results, reports.report_results.answer), and return JSON or, with ?format=csv, stream CSV. The
formulas in each endpoint's OpenAPI description are the docstrings of the functions that compute them."""

import inspect
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from campaigns.serializers import CampaignResultsSerializer
from loyalty.api import csv_response, error_responses
from loyalty.clock import business_date
from members.models import PurchaseChannel, Store
from reports import behaviour, report_results
from reports.views import ReportView

EARLIEST, LATEST = date(1900, 1, 1), date(9999, 12, 30)
MAX_DAYS = 3 * 365 + 1  # "at most 3 years": a range of 1,096 days (a leap day included) is the longest allowed
COMMON_RULES = """

Common parameters: `from`, `to` (YYYY-MM-DD, business dates, inclusive; default: the 30 days ending yesterday),
`store` (a store code), `channel` (`offline` | `online`), `format=csv` (the same figures as a CSV download).
400 `invalid` naming the field for a malformed date, `from` after `to`, a range over 3 years, an unknown store or
channel, or a filter the report does not take."""
STORED_RULES = """

Stored results: the nightly `report_results` job (04:30) stores, for ranges ending on its business date
(yesterday) without `store` or `channel`: retention for the last 12 join months, basket for the last 90 days
(min_support 0.01; a higher min_support on that range is answered from it), repurchase for the last 7, 30 and 90
days and for the period of the same length just before each (the admin dashboard compares the two), behaviour for
the last 30 and 90 days. When the request's parameters match one, the answer comes from it (`source: "stored"`,
`computed_at`: when the job computed it, so purchases recorded since are not in it); otherwise it is computed now
(`source: "live"`, `computed_at`: now)."""
TOP_STORED_RULES = """

Stored lists: the nightly `report_results` job (04:30) stores the top categories and the top SKUs, by amount and
by quantity, for the last 30 and the last 90 days ending on its business date (yesterday), without `store` or
`channel`, the first 500 rows of each. A request for categories or SKUs with those parameters is answered from
them (its first `limit` rows); any other is computed now. The answer is the same either way, field for field (no
`source` field here); from a stored list it counts the order lines as they were when the job ran. Top rewards are
always computed now."""


def _formulas(function):
    return inspect.cleandoc(function.__doc__)


# --- Parameters -----------------------------------------------------------------------------------------------


def _date(request, name):
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValidationError({name: [gettext("Use YYYY-MM-DD.")]}) from None
    if not EARLIEST <= day <= LATEST:
        raise ValidationError(
            {
                name: [
                    gettext("Use a date between %(earliest)s and %(latest)s.")
                    % {"earliest": EARLIEST, "latest": LATEST}
                ]
            }
        )
    return day


def _refuse_filters(request, allowed):
    for name in ("store", "channel"):
        if name not in allowed and request.query_params.get(name):
            raise ValidationError({name: [gettext("This report does not take this filter.")]})


def parse_period(request, *, default_days=30, default_range=None, filters=("store", "channel")):
    """The report's Period from `from`, `to`, `store` and `channel`. Default: `default_days` ending yesterday, or
    `default_range(to)` → (from, to) when given; a `to` alone ends the default range, a `from` alone runs to
    yesterday (or to itself when it is later)."""
    _refuse_filters(request, filters)
    first, last = _date(request, "from"), _date(request, "to")
    yesterday = business_date() - timedelta(days=1)
    if last is None:
        last = yesterday if first is None else max(yesterday, first)
    if first is None:
        first = default_range(last)[0] if default_range else last - timedelta(days=default_days - 1)
    if first > last:
        raise ValidationError({"from": [gettext("The period starts after `to`.")]})
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationError(
            {"to": [gettext("A period spans at most 3 years (%(max_days)s days).") % {"max_days": MAX_DAYS}]}
        )
    store_id = store_code = channel = None
    if request.query_params.get("store"):
        store_code = request.query_params["store"]
        store_id = Store.objects.filter(code=store_code).values_list("id", flat=True).first()
        if store_id is None:
            raise ValidationError({"store": [gettext("Unknown store code.")]})
    if request.query_params.get("channel"):
        channel = request.query_params["channel"]
        if channel not in PurchaseChannel.values:
            raise ValidationError(
                {"channel": [gettext("Use one of: %(values)s.") % {"values": ", ".join(PurchaseChannel.values)}]}
            )
    return behaviour.Period(first, last, store_id=store_id, store_code=store_code, channel=channel)


def _choice(request, name, choices, default):
    value = request.query_params.get(name) or default
    if value not in choices:
        raise ValidationError({name: [gettext("Use one of: %(choices)s.") % {"choices": ", ".join(choices)}]})
    return value


def _limit(request, default, most):
    raw = request.query_params.get("limit")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise ValidationError({"limit": [gettext("Use a whole number from 1 to %(most)s.") % {"most": most}]})
    return int(raw)


def _min_support(request):
    raw = request.query_params.get("min_support")
    if not raw:
        return behaviour.DEFAULT_MIN_SUPPORT
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 < value <= 1:
        raise ValidationError({"min_support": [gettext("Use a number above 0 and at most 1, e.g. 0.01.")]})
    return value


def _rows_csv(name, body, header, rows):
    return csv_response(f"{name}-{body['from']}-{body['to']}.csv", header, rows)


# --- OpenAPI --------------------------------------------------------------------------------------------------

FROM = OpenApiParameter("from", OpenApiTypes.DATE, description="first business date (default: see the description)")
TO = OpenApiParameter("to", OpenApiTypes.DATE, description="last business date, inclusive (default: yesterday)")
STORE = OpenApiParameter("store", str, description="store code")
CHANNEL = OpenApiParameter("channel", str, enum=PurchaseChannel.values)
FORMAT = OpenApiParameter("format", str, enum=["json", "csv"])
ERRORS = error_responses({400: "invalid"})


class PeriodSerializer(serializers.Serializer):
    to = serializers.DateField()
    store = serializers.CharField(allow_null=True, help_text="the store filter (code), null for all stores")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields


class FilteredPeriodSerializer(PeriodSerializer):
    channel = serializers.CharField(allow_null=True, help_text="the channel filter, null for both")


class StoredSerializer(serializers.Serializer):
    source = serializers.ChoiceField(choices=["stored", "live"])
    computed_at = serializers.DateTimeField()


class RepurchaseSerializer(FilteredPeriodSerializer, StoredSerializer):
    purchasing_members = serializers.IntegerField()
    repeat_members = serializers.IntegerField()
    repurchase_rate = serializers.FloatField()


class CohortSerializer(serializers.Serializer):
    cohort = serializers.CharField(help_text="join month, YYYY-MM")
    members = serializers.IntegerField()
    purchasing = serializers.ListField(child=serializers.IntegerField(), help_text="members purchasing in month k")
    retained = serializers.ListField(child=serializers.FloatField(), help_text="share purchasing in month k")


class RetentionSerializer(PeriodSerializer, StoredSerializer):
    cohorts = CohortSerializer(many=True)


class PairSerializer(serializers.Serializer):
    a = serializers.CharField()
    b = serializers.CharField()
    orders = serializers.IntegerField(help_text="orders with both")
    support = serializers.FloatField()
    confidence = serializers.FloatField(help_text="of a→b")
    lift = serializers.FloatField()


class BasketSerializer(FilteredPeriodSerializer, StoredSerializer):
    min_support = serializers.FloatField()
    orders = serializers.IntegerField(help_text="orders with at least one categorised line")
    pairs = PairSerializer(many=True)


class BehaviourSerializer(FilteredPeriodSerializer, StoredSerializer):
    orders = serializers.IntegerField()
    revenue = serializers.CharField()
    average_order_value = serializers.CharField()
    purchasing_members = serializers.IntegerField()
    purchase_frequency = serializers.FloatField()
    purchase_cycle_days = serializers.FloatField(allow_null=True)


class TopRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    count = serializers.IntegerField()
    quantity = serializers.CharField(help_text="decimal string")
    amount = serializers.CharField(allow_null=True, help_text="decimal string; null for rewards")
    points = serializers.IntegerField(allow_null=True, help_text="null for categories and SKUs")


class TopSerializer(FilteredPeriodSerializer):
    kind = serializers.ChoiceField(choices=behaviour.TOP_KINDS)
    order_by = serializers.ChoiceField(choices=["count", "amount", "quantity"])
    rows = TopRowSerializer(many=True)


class CampaignSideBySideSerializer(CampaignResultsSerializer):
    name = serializers.CharField()
    kind = serializers.CharField(help_text="the campaign's kind (see the Campaign shape)")
    status = serializers.CharField(help_text="the campaign's status as it stands now (see the Campaign shape)")


class CampaignsSerializer(serializers.Serializer):
    to = serializers.DateField()
    campaigns = CampaignSideBySideSerializer(many=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields


# --- Views ----------------------------------------------------------------------------------------------------


class RepurchaseReportView(ReportView):
    @extend_schema(
        parameters=[FROM, TO, STORE, CHANNEL, FORMAT],
        responses={200: RepurchaseSerializer, **ERRORS},
        description=_formulas(behaviour.repurchase) + COMMON_RULES + STORED_RULES,
    )
    def get(self, request):
        body = report_results.answer("repurchase", parse_period(request))
        if self.wants_csv(request):
            columns = ["from", "to", "store", "channel", "purchasing_members", "repeat_members", "repurchase_rate"]
            return _rows_csv("repurchase", body, columns, [[body[column] for column in columns]])
        return Response(body)


class RetentionReportView(ReportView):
    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, description="first join date (default: see the description)"),
            TO,
            OpenApiParameter("store", str, description="store code: the members' home store"),
            FORMAT,
        ],
        responses={200: RetentionSerializer, **ERRORS},
        description=_formulas(behaviour.retention)
        + "\n\nDefault range: the last 12 join months up to yesterday (from the first day of the month 11 months "
        "before `to`'s). `channel` is refused (400)." + COMMON_RULES + STORED_RULES,
    )
    def get(self, request):
        period = parse_period(request, default_range=behaviour.default_retention_period, filters=("store",))
        body = report_results.answer("retention", period)
        if self.wants_csv(request):
            rows = (
                [cohort["cohort"], cohort["members"], month, purchasing, retained]
                for cohort in body["cohorts"]
                for month, (purchasing, retained) in enumerate(
                    zip(cohort["purchasing"], cohort["retained"], strict=True)
                )
            )
            return _rows_csv("retention", body, ["cohort", "members", "month", "purchasing", "retained"], rows)
        return Response(body)


class BasketReportView(ReportView):
    @extend_schema(
        parameters=[
            FROM,
            TO,
            STORE,
            CHANNEL,
            OpenApiParameter("min_support", OpenApiTypes.DECIMAL, description="in (0, 1]; default 0.01"),
            OpenApiParameter("limit", int, description="at most this many pair rows (1-1000, default 100)"),
            FORMAT,
        ],
        responses={200: BasketSerializer, **ERRORS},
        description=_formulas(behaviour.basket)
        + "\n\nDefault range: the last 90 days ending yesterday."
        + COMMON_RULES
        + STORED_RULES,
    )
    def get(self, request):
        period = parse_period(request, default_days=90)
        min_support, limit = _min_support(request), _limit(request, 100, 1000)
        body = report_results.answer("basket", period, min_support=min_support)
        body["pairs"] = body["pairs"][:limit]
        if self.wants_csv(request):
            columns = ["a", "b", "orders", "support", "confidence", "lift"]
            return _rows_csv("basket", body, columns, ([pair[c] for c in columns] for pair in body["pairs"]))
        return Response(body)


class BehaviourReportView(ReportView):
    @extend_schema(
        parameters=[FROM, TO, STORE, CHANNEL, FORMAT],
        responses={200: BehaviourSerializer, **ERRORS},
        description=_formulas(behaviour.behaviour) + COMMON_RULES + STORED_RULES,
    )
    def get(self, request):
        body = report_results.answer("behaviour", parse_period(request))
        if self.wants_csv(request):
            columns = [
                "from",
                "to",
                "store",
                "channel",
                "orders",
                "revenue",
                "average_order_value",
                "purchasing_members",
                "purchase_frequency",
                "purchase_cycle_days",
            ]
            return _rows_csv("behaviour", body, columns, [[body[column] for column in columns]])
        return Response(body)


class TopReportView(ReportView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=list(behaviour.TOP_KINDS), required=True),
            FROM,
            TO,
            STORE,
            OpenApiParameter("channel", str, enum=PurchaseChannel.values, description="categories and skus only"),
            OpenApiParameter("order_by", str, enum=["amount", "quantity"], description="categories and skus"),
            OpenApiParameter("limit", int, description="1-500, default 20"),
            FORMAT,
        ],
        responses={200: TopSerializer, **ERRORS},
        description=_formulas(behaviour.top) + COMMON_RULES + TOP_STORED_RULES,
    )
    def get(self, request):
        kind = _choice(request, "kind", behaviour.TOP_KINDS, None)
        period = parse_period(request, filters=("store",) if kind == "rewards" else ("store", "channel"))
        order_by = "amount"
        if kind != "rewards":
            order_by = _choice(request, "order_by", ("amount", "quantity"), "amount")
        limit = _limit(request, 20, behaviour.TOP_MAX_LIMIT)
        body = report_results.answer_top(period, kind, order_by=order_by, limit=limit)
        if self.wants_csv(request):
            columns = ["key", "name", "count", "quantity", "amount", "points"]
            rows = ([row[c] for c in columns] for row in body["rows"])
            return _rows_csv(f"top-{kind}", body, columns, rows)
        return Response(body)


class CampaignsReportView(ReportView):
    @extend_schema(
        parameters=[FROM, TO, FORMAT],
        responses={200: CampaignsSerializer, **ERRORS},
        description=_formulas(behaviour.campaigns)
        + "\n\nEach entry has the fields of GET /campaigns/{id}/results/ (whose description defines them) plus "
        "`name`, `kind` and `status`. `store` and `channel` are refused (400)." + COMMON_RULES,
    )
    def get(self, request):
        from campaigns.services.results import results_rows

        body = behaviour.campaigns(parse_period(request, filters=()))
        if self.wants_csv(request):
            empty = {"campaign_id": "", "from": "", "to": "", "groups": [], "lift": [], "points_per_extra_revenue": []}
            header = ["name", "kind", *results_rows(empty)[0]]
            rows = (
                [campaign["name"], campaign["kind"], *row]
                for campaign in body["campaigns"]
                for row in results_rows(campaign)[1]
            )
            return _rows_csv("campaigns", body, header, rows)
        return Response(body)
