"""Reports: JSON through the API, CSV with ?format=csv. Read-only; nothing imports this app."""

from datetime import date

from django.db.models import Count
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty.access import ROLE_ADMIN, ROLE_MARKETER
from loyalty.api import CsvRenderer, csv_response, error_responses
from loyalty.db_routers import report_reads
from members.jobs import latest_rfm_date
from members.models import Lifecycle, RfmSnapshot, Segment

REPORT_ROLES = {ROLE_ADMIN, ROLE_MARKETER}


class ReportView(APIView):
    renderer_classes = [JSONRenderer, CsvRenderer]
    staff_roles = {"*": REPORT_ROLES}

    def dispatch(self, request, *args, **kwargs):
        with report_reads():  # the ORM's reads on the read replica when one is configured (loyalty.db_routers)
            return super().dispatch(request, *args, **kwargs)

    def wants_csv(self, request):
        return request.accepted_renderer.format == "csv"


class CountSerializer(serializers.Serializer):
    key = serializers.CharField()
    members = serializers.IntegerField()
    share = serializers.FloatField()


class RfmReportSerializer(serializers.Serializer):
    as_of = serializers.DateField(allow_null=True)
    members = serializers.IntegerField()
    segments = CountSerializer(many=True)
    lifecycle = CountSerializer(many=True)


def _as_of(request):
    raw = request.query_params.get("as_of")
    if not raw:
        return latest_rfm_date()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError({"as_of": [gettext("Use YYYY-MM-DD.")]}) from None


def _counts(rows, field, choices, total):
    counted = dict(rows.values_list(field).annotate(n=Count("id")).order_by())
    return [
        {"key": key, "members": counted.get(key, 0), "share": round(counted.get(key, 0) / total, 4) if total else 0.0}
        for key, _ in choices
    ]


class RfmReportView(ReportView):
    @extend_schema(
        parameters=[
            OpenApiParameter("as_of", OpenApiTypes.DATE, description="default: the newest RFM run"),
            OpenApiParameter("format", str, enum=["json", "csv"]),
            OpenApiParameter(
                "detail", str, enum=["members"], description="with format=csv: one row per member instead of the counts"
            ),
        ],
        responses={200: RfmReportSerializer, **error_responses({400: "invalid"})},
    )
    def get(self, request):
        as_of = _as_of(request)
        rows = RfmSnapshot.objects.filter(as_of=as_of) if as_of else RfmSnapshot.objects.none()
        if self.wants_csv(request) and request.query_params.get("detail") == "members":
            return csv_response(
                f"rfm-members-{as_of}.csv",
                [
                    "member_no",
                    "external_id",
                    "recency_days",
                    "frequency",
                    "monetary",
                    "r_score",
                    "f_score",
                    "m_score",
                    "segment",
                    "lifecycle",
                ],
                rows.order_by("member_id")
                .values_list(
                    "member__member_no",
                    "member__external_id",
                    "recency_days",
                    "frequency",
                    "monetary",
                    "r_score",
                    "f_score",
                    "m_score",
                    "segment",
                    "lifecycle",
                )
                .iterator(chunk_size=5000),
            )
        total = rows.count()
        body = {
            "as_of": as_of.isoformat() if as_of else None,
            "members": total,
            "segments": _counts(rows, "segment", Segment.choices, total),
            "lifecycle": _counts(rows, "lifecycle", Lifecycle.choices, total),
        }
        if self.wants_csv(request):
            return csv_response(
                f"rfm-{as_of}.csv",
                ["dimension", "key", "members", "share"],
                [("segment", r["key"], r["members"], r["share"]) for r in body["segments"]]
                + [("lifecycle", r["key"], r["members"], r["share"]) for r in body["lifecycle"]],
            )
        return Response(body)
