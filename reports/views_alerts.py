"""Alerts through the API: the list (filters rule and acknowledged, newest first, cursor pages) and acknowledging
one. Admins and marketers (the roles that see alerts in the admin; there is no manager role)."""

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from loyalty.access import access_for
from loyalty.alerts import acknowledge_alert
from loyalty.api import error_responses
from loyalty.models import Alert
from reports.alert_notices import ALERT_ROLES
from reports.alert_rules import RULES


class AlertSerializer(serializers.ModelSerializer):
    """API.md: `{id, rule, metric, value, threshold, created_at, acknowledged_at, acknowledged_by}`, with what the
    alert is about (`subject`) and its particulars (`detail`)."""

    id = serializers.CharField(read_only=True)
    acknowledged_by = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "metric",
            "value",
            "threshold",
            "created_at",
            "acknowledged_at",
            "acknowledged_by",
            "subject",
            "detail",
        ]
        read_only_fields = fields

    def get_acknowledged_by(self, alert) -> str | None:
        return alert.acknowledged_by or None


class AlertFilter(django_filters.FilterSet):
    rule = django_filters.CharFilter(help_text=f"The rule's code: {', '.join(rule.code for rule in RULES)}.")
    # A choice, not a BooleanFilter: that one ignores a value it cannot read ("perhaps") and lists everything.
    acknowledged = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")], method="filter_acknowledged", help_text="true or false"
    )

    class Meta:
        model = Alert
        fields = []

    def filter_acknowledged(self, queryset, name, value):
        return queryset.filter(acknowledged_at__isnull=value == "false")


@extend_schema_view(
    list=extend_schema(
        responses={200: AlertSerializer(many=True), **error_responses({400: "invalid", 403: "permission_denied"})},
        description="Alerts raised by the alert rules (GET /api/v1/alerts/), newest first.",
    )
)
class AlertViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = AlertSerializer
    queryset = Alert.objects.all()
    filterset_class = AlertFilter
    staff_roles = {"*": ALERT_ROLES}

    @extend_schema(
        request=None,
        responses={200: AlertSerializer, **error_responses({403: "permission_denied", 404: "not_found"})},
        description="Acknowledge the alert: who and when, once (again: 200, unchanged).",
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert, _changed = acknowledge_alert(actor=access_for(request).actor, alert_id=int(pk))
        return Response(AlertSerializer(alert).data)
