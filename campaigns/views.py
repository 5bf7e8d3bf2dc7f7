"""HTTP for campaigns: CRUD for marketers, activate / pause / end / copy, and the results. Each view checks the
input's shape, calls one service and returns the campaign."""

from datetime import date

from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from campaigns import services
from campaigns.models import Campaign
from campaigns.serializers import CampaignResultsSerializer, CampaignSerializer
from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, access_for
from loyalty.api import ID_PATTERN, CsvRenderer, csv_response, error_responses

MARKETING = {ROLE_ADMIN, ROLE_MARKETER}
STATUS_ERRORS = error_responses({404: "not_found", 409: "campaign_ended / invalid_status"})
RESULTS_DESCRIPTION = """Per group (each variant, and `holdout`) over business dates [from, to] in the business time
zone (campaigns.services.results has the full definitions):

- `members`: members assigned to the group.
- A purchase counts when it falls in the window and is not fully refunded by refunds in the window; its net
  amount is its amount minus those refunds. `purchases`: counted purchases of the group's members; `revenue`:
  the sum of their net amounts.
- `participants`: for a variant, its members with a campaign award dated in the window; for the holdout (which
  gets nothing), its members with a counted purchase.
- `points_cost`: the sum of the group's award points minus the points refunds took back, awards dated in the
  window.
- `repurchase_rate` = members with ≥ 2 counted purchases / members; `revenue_per_member` = revenue / members.

`lift` (only with a holdout; every field null when either group has fewer than 2 members): for each variant v
against the holdout h,
- `repurchase_rate`: estimate p_v − p_h, 95% interval with the unpooled standard error
  sqrt(p_v(1−p_v)/n_v + p_h(1−p_h)/n_h), p-value of the two-sided z-test with the pooled standard error;
- `revenue_per_member`: each member's revenue in the window (0 without a purchase) is an observation; estimate
  mean_v − mean_h in yuan, Welch's t interval (Welch–Satterthwaite degrees of freedom) and Welch's t-test
  p-value.
`ci_low`/`ci_high` are null when the standard error is 0, `p_value` when the test's is.

`points_per_extra_revenue` per variant (with a holdout): extra_revenue = (revenue_per_member_v −
revenue_per_member_h) × members_v, and points_cost_v / extra_revenue, null when extra_revenue ≤ 0.

Money: decimal strings with 2 decimals; rates, estimates, interval ends, p-values and points per yuan: numbers
rounded to 4 decimals. 400 `invalid` for a malformed date, a date outside 1900-01-01…9999-12-30, or `to`
before `from`."""


def _validated(request, **kwargs):
    serializer = CampaignSerializer(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    if "target" in data:
        data["target"] = dict(data["target"])
    if "variants" in data:
        data["variants"] = [dict(variant) for variant in data["variants"]]
    return data


def _date_param(request, name):
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError({name: [gettext("Use YYYY-MM-DD.")]}) from None


@extend_schema_view(
    create=extend_schema(
        request=CampaignSerializer, responses={201: CampaignSerializer, **error_responses({400: "invalid"})}
    ),
    partial_update=extend_schema(
        request=CampaignSerializer(partial=True),
        responses={
            200: CampaignSerializer,
            **error_responses({400: "invalid", 404: "not_found", 409: "campaign_active / campaign_ended"}),
        },
        description="Change a draft or paused campaign. A running one (active or scheduled) keeps its terms "
        "(409 campaign_active): pause it, or copy it as a new version. Once members are assigned, its variants "
        "and holdout stay (400).",
    ),
    destroy=extend_schema(
        responses={204: None, **error_responses({404: "not_found", 409: "invalid_status"})},
        description="Delete a draft that never awarded anything; end the others.",
    ),
)
class CampaignViewSet(viewsets.ModelViewSet):
    """Campaigns: every staff role reads them (a clerk explains them at the counter); marketers and admins write."""

    serializer_class = CampaignSerializer
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["kind", "status"]
    staff_roles = {
        "create": MARKETING,
        "partial_update": MARKETING,
        "destroy": MARKETING,
        "activate": MARKETING,
        "pause": MARKETING,
        "end": MARKETING,
        "copy": MARKETING,
        "results": MARKETING,
    }

    def get_queryset(self):
        return Campaign.objects.prefetch_related("variants").order_by("-id")

    def create(self, request):
        campaign = services.create_campaign(actor=access_for(request).actor, values=_validated(request))
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        current = self.get_object()
        changes = _validated(request, partial=True)
        campaign = services.change_campaign(actor=access_for(request).actor, campaign_id=current.pk, changes=changes)
        return Response(CampaignSerializer(campaign).data)

    def destroy(self, request, pk=None):
        current = self.get_object()
        services.delete_campaign(actor=access_for(request).actor, campaign_id=current.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _status_change(self, request, service):
        current = self.get_object()
        campaign = service(actor=access_for(request).actor, campaign_id=current.pk)
        return Response(CampaignSerializer(campaign).data)

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, **STATUS_ERRORS},
        description="Run the campaign: it shows `scheduled` until starts_at, then `active`. Again: unchanged.",
    )
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        return self._status_change(request, services.activate_campaign)

    @extend_schema(request=None, responses={200: CampaignSerializer, **STATUS_ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._status_change(request, services.pause_campaign)

    @extend_schema(
        request=None,
        responses={200: CampaignSerializer, **STATUS_ERRORS},
        description="End the campaign now (for good; copy it to run it again).",
    )
    @action(detail=True, methods=["post"])
    def end(self, request, pk=None):
        return self._status_change(request, services.end_campaign)

    @extend_schema(
        request=CampaignSerializer(partial=True),
        responses={201: CampaignSerializer, **error_responses({400: "invalid", 404: "not_found"})},
        description="A new draft with this campaign's terms and the fields sent (its budget unused): the way to "
        "change a running campaign's terms as a new version.",
    )
    @action(detail=True, methods=["post"])
    def copy(self, request, pk=None):
        current = self.get_object()
        changes = _validated(request, partial=True)
        campaign = services.copy_campaign(actor=access_for(request).actor, campaign_id=current.pk, changes=changes)
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, description="default: the campaign's start (business date)"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="default: its end, or yesterday while it runs"),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={200: CampaignResultsSerializer, **error_responses({400: "invalid", 404: "not_found"})},
        description=RESULTS_DESCRIPTION,
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, CsvRenderer])
    def results(self, request, pk=None):
        from campaigns.services.results import campaign_results, results_rows

        campaign = self.get_object()
        result = campaign_results(campaign, date_from=_date_param(request, "from"), date_to=_date_param(request, "to"))
        if request.accepted_renderer.format == "csv":
            header, rows = results_rows(result)
            return csv_response(f"campaign-{campaign.pk}-results.csv", header, rows)
        return Response(result)
