"""The points, liability, members and segment-moves reports: JSON, or CSV streamed with ?format=csv. The figures
come from reports.core (snapshots where a date has one, the raw tables where not); each view's docstring, which is
also its OpenAPI description, says how they are computed."""

import inspect
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from campaigns.services.engine import REGISTRATION, SEGMENT_MOVE
from loyalty.api import csv_response, error_responses
from loyalty.clock import business_date
from members.models import PurchaseChannel, Store
from points.models import RuleChannel
from reports import core
from reports.views import ReportView

MAX_RANGE = relativedelta(years=3)
DEFAULT_DAYS = 30
# What LedgerEntry.channel holds: a purchase's channel, an earning channel, a campaign trigger.
ENTRY_CHANNELS = [
    *PurchaseChannel.values,
    *(channel for channel in RuleChannel.values if channel != RuleChannel.PURCHASE),
    REGISTRATION,
    SEGMENT_MOVE,
]


def documented(**schema):
    """extend_schema with the method's docstring as the OpenAPI description (one text for both)."""

    def decorate(method):
        return extend_schema(description=inspect.cleandoc(method.__doc__), **schema)(method)

    return decorate


# --- Query parameters ------------------------------------------------------------------------------------------


def _date(params, name):
    raw = params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError({name: [gettext("Use YYYY-MM-DD.")]}) from None


def date_range(request):
    """`from` and `to` (business dates, inclusive): by default the 30 days ending yesterday; `to` at the latest
    today, `from` not after `to`, at most 3 years apart."""
    today = business_date()
    first, last = _date(request.query_params, "from"), _date(request.query_params, "to")
    last = last or max(today - timedelta(days=1), first or date.min)
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if last > today:
        raise ValidationError({"to": [gettext("At the latest today (%(today)s).") % {"today": today.isoformat()}]})
    if first > last:
        raise ValidationError({"from": [gettext("Must not be after `to`.")]})
    if first < last - MAX_RANGE:
        raise ValidationError({"from": [gettext("The range may span at most 3 years.")]})
    return first, last


def interval(request):
    value = request.query_params.get("interval") or "day"
    if value not in core.INTERVALS:
        raise ValidationError(
            {"interval": [gettext("One of %(intervals)s.") % {"intervals": ", ".join(core.INTERVALS)}]}
        )
    return value


def store_id(request):
    code = request.query_params.get("store")
    if not code:
        return None
    found = Store.objects.filter(code=code).values_list("pk", flat=True).first()
    if found is None:
        raise ValidationError({"store": [gettext("Unknown store %(code)r.") % {"code": code}]})
    return found


def channel(request):
    value = request.query_params.get("channel")
    if value and value not in ENTRY_CHANNELS:
        raise ValidationError(
            {"channel": [gettext("One of %(entry_channels)s.") % {"entry_channels": ", ".join(ENTRY_CHANNELS)}]}
        )
    return value or None


FORMAT = OpenApiParameter("format", str, enum=["json", "csv"], description="csv: the same figures as a download")
RANGE = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="first business date (default: 30 days before `to`)"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="last business date, inclusive (default: yesterday)"),
]
INTERVAL = OpenApiParameter(
    "interval", str, enum=list(core.INTERVALS), description="rows per day (default), week, month"
)
STORE = OpenApiParameter("store", str, description="a store's code")
ERRORS = error_responses({400: "invalid"})


# --- Response shapes (for the schema) --------------------------------------------------------------------------


class PointsFiguresSerializer(serializers.Serializer):
    issued = serializers.IntegerField()
    redeemed = serializers.IntegerField()
    expired = serializers.IntegerField()
    reversed = serializers.IntegerField()
    adjusted = serializers.IntegerField()
    redemption_rate = serializers.FloatField()
    breakage = serializers.FloatField()


class PointsRowSerializer(PointsFiguresSerializer):
    period = serializers.CharField(help_text="YYYY-MM-DD (day), the Monday (week) or YYYY-MM (month)")


class PointsReportSerializer(serializers.Serializer):
    interval = serializers.CharField(help_text="day, week or month")
    rows = PointsRowSerializer(many=True)
    totals = PointsFiguresSerializer()

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField(), **super().get_fields()}


class ExpiringMonthSerializer(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM")
    points = serializers.IntegerField()


class LiabilityReportSerializer(serializers.Serializer):
    as_of = serializers.DateField()
    points_available = serializers.IntegerField()
    points_pending = serializers.IntegerField()
    points_outstanding = serializers.IntegerField()
    money_value = serializers.DecimalField(max_digits=20, decimal_places=2)
    cash_points_per_unit = serializers.IntegerField()
    expiring = ExpiringMonthSerializer(many=True)
    source = serializers.ChoiceField(choices=["snapshot", "accounts", "ledger"])


class KeyCountSerializer(serializers.Serializer):
    key = serializers.CharField(allow_null=True)
    members = serializers.IntegerField()


class MembersRowSerializer(serializers.Serializer):
    period = serializers.CharField()
    new = serializers.IntegerField()
    active = serializers.IntegerField()


class MembersReportSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    new = serializers.IntegerField()
    active = serializers.IntegerField()
    by_tier = KeyCountSerializer(many=True)
    by_segment = KeyCountSerializer(many=True)
    by_lifecycle = KeyCountSerializer(many=True)
    rows = MembersRowSerializer(many=True)

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField(), **super().get_fields()}


class MoveSerializer(serializers.Serializer):
    from_segment = serializers.CharField(allow_null=True)
    to_segment = serializers.CharField()
    members = serializers.IntegerField()


class SegmentMovesReportSerializer(serializers.Serializer):
    from_rfm_as_of = serializers.DateField(allow_null=True)
    to_rfm_as_of = serializers.DateField(allow_null=True)
    moves = MoveSerializer(many=True)

    def get_fields(self):
        return {"from": serializers.DateField(), "to": serializers.DateField(), **super().get_fields()}


# --- Views ---------------------------------------------------------------------------------------------------

FIGURES = ["issued", "redeemed", "expired", "reversed", "adjusted", "redemption_rate", "breakage"]


class PointsReportView(ReportView):
    @documented(
        parameters=[
            *RANGE,
            INTERVAL,
            STORE,
            OpenApiParameter("channel", str, enum=ENTRY_CHANNELS, description="the channel entries carry"),
            FORMAT,
        ],
        responses={200: PointsReportSerializer, **ERRORS},
    )
    def get(self, request):
        """Points issued, redeemed, expired, reversed and adjusted per period, from the ledger entries written in
        it (business time zone), of one store and/or channel when given (store and channel as the entries carry
        them: a purchase's earn and its refund's reverse the order's, a redemption its store, an event its
        channel; adjustments and expiry neither, so they count only without these filters).

        - issued = Σ points of earn entries (pending ones included)
        - redeemed = −Σ points of redeem and deduct (points as cash) entries − Σ points of cancel entries (points
          given back); negative in a period where more was given back than spent
        - expired = −Σ points of expire entries; reversed = −Σ points of reverse entries (refunds)
        - adjusted = Σ points of adjust entries (additions minus deductions)
        - redemption_rate = redeemed ÷ issued, breakage = expired ÷ issued, over the row's period (totals: over the
          whole range); 0 when nothing was issued; 4 decimals (above 1 when more was redeemed than issued)

        Days with a snapshot read it; the others (today) read the ledger."""
        first, last = date_range(request)
        body = core.points_report(
            first, last, interval=interval(request), store_id=store_id(request), channel=channel(request)
        )
        if self.wants_csv(request):
            rows = [[row["period"], *(row[f] for f in FIGURES)] for row in body["rows"]]
            rows.append(["total", *(body["totals"][f] for f in FIGURES)])
            return csv_response(f"points-{first}-{last}.csv", ["period", *FIGURES], rows)
        return Response(body)


class LiabilityReportView(ReportView):
    @documented(
        parameters=[
            OpenApiParameter("as_of", OpenApiTypes.DATE, description="business date (default: yesterday; today: now)"),
            FORMAT,
        ],
        responses={200: LiabilityReportSerializer, **ERRORS},
    )
    def get(self, request):
        """The points the merchant owes at the end of `as_of`, and when they are due to expire.

        - points_available, points_pending = Σ available, Σ pending over every member: as of today the points
          accounts (the balances check_ledger proves equal to the ledger and the lots); for an earlier date the
          sums of available_delta and pending_delta of every ledger entry written before its end (from the day's
          snapshot when it has one)
        - points_outstanding = points_available + points_pending
        - money_value = points_outstanding ÷ cash_points_per_unit (the points policy's cash rate in force at the end
          of the date), rounded half up to the cent
        - expiring = for the 12 months from the day after `as_of`, the points of lots (pending or available) whose
          last valid day falls in the month, each lot's remaining as it was at the end of `as_of`
        - source: snapshot, accounts (today) or ledger (an earlier date without snapshot)"""
        today = business_date()
        as_of = _date(request.query_params, "as_of") or today - timedelta(days=1)
        if as_of > today:
            raise ValidationError(
                {"as_of": [gettext("At the latest today (%(today)s).") % {"today": today.isoformat()}]}
            )
        body = core.liability(as_of, today=today)
        if self.wants_csv(request):
            header = ["as_of", "points_available", "points_pending", "points_outstanding", "money_value", "month"]
            fixed = [body[column] for column in header[:-1]]
            rows = [[*fixed, due["month"], due["points"]] for due in body["expiring"]]
            return csv_response(f"liability-{as_of}.csv", [*header, "points_expiring"], rows)
        return Response(body)


class MembersReportView(ReportView):
    @documented(
        parameters=[*RANGE, INTERVAL, OpenApiParameter("store", str, description="a home store's code"), FORMAT],
        responses={200: MembersReportSerializer, **ERRORS},
    )
    def get(self, request):
        """Members of one home store (or all), over a period.

        - total = members at the end of `to`: joined by then and not merged into another member before then
        - new = members who joined in the period (rows: in each period)
        - active = members with at least one purchase in the period, each counted once (refunds do not undo a
          purchase); rows: in each period
        - by_tier = members at the end of `to` by the tier they held then; by_segment, by_lifecycle = by their RFM
          segment and lifecycle stage in the newest RFM run on or before `to` (key null: not scored)

        Days with a snapshot read it (active over a period of up to 93 days ending on such a day, exactly, from its
        recency rows); the others read the members and purchases."""
        first, last = date_range(request)
        body = core.members_report(first, last, interval=interval(request), store_id=store_id(request))
        if self.wants_csv(request):
            rows = [["period", row["period"], row["new"], row["active"], ""] for row in body["rows"]]
            rows.append(["total", f"{first}..{last}", body["new"], body["active"], body["total"]])
            for section in ("by_tier", "by_segment", "by_lifecycle"):
                rows += [[section, row["key"] or "", "", "", row["members"]] for row in body[section]]
            return csv_response(f"members-{first}-{last}.csv", ["section", "key", "new", "active", "members"], rows)
        return Response(body)


class SegmentMovesReportView(ReportView):
    @documented(parameters=[*RANGE, FORMAT], responses={200: SegmentMovesReportSerializer, **ERRORS})
    def get(self, request):
        """How many members moved from each RFM segment to each other between two dates: the members of the RFM
        run of `to` by (their segment in the run of `from`, their segment in the run of `to`), each run the newest
        finished on or before the date (from_rfm_as_of, to_rfm_as_of). Staying in a segment is a move to itself;
        from_segment null: not in the first run (joined since). No run on or before a date: no moves."""
        first, last = date_range(request)
        body = core.segment_moves(first, last)
        if self.wants_csv(request):
            rows = [[move["from_segment"] or "", move["to_segment"], move["members"]] for move in body["moves"]]
            return csv_response(f"segment-moves-{first}-{last}.csv", ["from_segment", "to_segment", "members"], rows)
        return Response(body)
