"""HTTP for the platform: staff login (bearer tokens), the nightly job runs, and webhook subscriptions."""

from django.utils import translation
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty import webhooks
from loyalty.access import ROLE_ADMIN, access_for, staff_role
from loyalty.api import ID_PATTERN, IdCursorPagination, error_body, error_responses
from loyalty.credentials import issue_staff_token, revoke_staff_token
from loyalty.login_guard import authenticate_staff
from loyalty.models import DeliveryStatus, JobRun, WebhookDelivery, WebhookSubscription
from loyalty.serializers import (
    JobRunSerializer,
    StaffLoginSerializer,
    StaffTokenSerializer,
    WebhookCreatedSerializer,
    WebhookDeliverySerializer,
    WebhookSubscriptionSerializer,
)


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, in English whatever the caller's Accept-Language or session language: generated clients
    and schema diffs must not change with who fetched it. `?lang=zh-hans` asks for the Chinese texts on purpose."""

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        if request.GET.get("lang"):
            return super().get(request, *args, **kwargs)
        with translation.override("en"):
            return super().get(request, *args, **kwargs)


class StaffTokenView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []  # loyalty.login_guard throttles and locks the logins (the API's and the admin's)

    @extend_schema(
        request=StaffLoginSerializer,
        responses={
            201: StaffTokenSerializer,
            **error_responses({401: "not_authenticated", 429: "throttled`, `login_locked"}),
        },
        auth=[],
        summary="Log a staff user in; the token is used as `Authorization: Bearer <token>`.",
    )
    def post(self, request):
        payload = StaffLoginSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = authenticate_staff(request, **payload.validated_data)
        if user is None or staff_role(user) is None:
            return Response(
                error_body("not_authenticated", "Wrong username or password, or no staff role."),
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": "Bearer"},
            )
        token, expires_at = issue_staff_token(user=user)
        body = {
            "token": token,
            "expires_at": expires_at,
            "user": {
                "username": user.get_username(),
                "role": staff_role(user),
                "stores": list(user.stores.values_list("code", flat=True)),
            },
        }
        return Response(StaffTokenSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None}, summary="Log out: revoke the bearer token sent.")
    def delete(self, request):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            revoke_staff_token(token.strip())
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Recent runs of the nightly jobs (staff): status, counts, chunks, errors."""

    serializer_class = JobRunSerializer
    queryset = JobRun.objects.all()
    filterset_fields = ["job", "status", "business_date"]
    lookup_value_regex = ID_PATTERN


def _subscription_values(request, *, partial):
    serializer = WebhookSubscriptionSerializer(data=request.data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@extend_schema_view(
    create=extend_schema(
        request=WebhookSubscriptionSerializer,
        responses={201: WebhookCreatedSerializer, **error_responses({400: "invalid", 403: "permission_denied"})},
        description="Subscribe a URL to event types. The answer shows the secret, this once (made when not given). "
        "In production the URL must be https to a host resolving to public addresses only (400 `invalid` on "
        "`url` otherwise).",
    ),
    partial_update=extend_schema(
        request=WebhookSubscriptionSerializer(partial=True),
        responses={200: WebhookSubscriptionSerializer, **error_responses({400: "invalid", 404: "not_found"})},
        description="Change the URL (checked again), the events, the secret, the description or `is_active`.",
    ),
    destroy=extend_schema(
        responses={204: None, **error_responses({404: "not_found"})},
        description="Delete the subscription and its deliveries.",
    ),
)
class WebhookViewSet(viewsets.ModelViewSet):
    """Webhook subscriptions (admins only): other systems receive the events they subscribe to, signed
    (README: "Webhooks")."""

    serializer_class = WebhookSubscriptionSerializer
    queryset = WebhookSubscription.objects.order_by("-id")
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["is_active"]
    staff_roles = {"*": {ROLE_ADMIN}}

    def create(self, request):
        subscription, secret = webhooks.create_subscription(
            actor=access_for(request).actor, values=_subscription_values(request, partial=False)
        )
        body = WebhookCreatedSerializer({**WebhookSubscriptionSerializer(subscription).data, "secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        current = self.get_object()
        subscription = webhooks.change_subscription(
            actor=access_for(request).actor,
            subscription_id=current.pk,
            changes=_subscription_values(request, partial=True),
        )
        return Response(WebhookSubscriptionSerializer(subscription).data)

    def destroy(self, request, pk=None):
        current = self.get_object()
        webhooks.delete_subscription(actor=access_for(request).actor, subscription_id=current.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        responses={200: WebhookDeliverySerializer(many=True), **error_responses({400: "invalid", 404: "not_found"})},
        parameters=[
            OpenApiParameter("status", str, enum=DeliveryStatus.values, description="Only deliveries in this status."),
            OpenApiParameter("event_type", str, description="Only deliveries of events of this type."),
        ],
        description="The subscription's deliveries, newest first: status, attempts, the last response status and "
        "latency, the next attempt.",
    )
    @action(detail=True, methods=["get"], pagination_class=IdCursorPagination, filterset_fields=[])
    def deliveries(self, request, pk=None):
        subscription = self.get_object()
        deliveries = WebhookDelivery.objects.filter(subscription=subscription).select_related("event")
        wanted_status = request.query_params.get("status")
        if wanted_status:
            if wanted_status not in DeliveryStatus.values:
                raise ValidationError(
                    {"status": [gettext("One of %(values)s.") % {"values": ", ".join(DeliveryStatus.values)}]}
                )
            deliveries = deliveries.filter(status=wanted_status)
        if request.query_params.get("event_type"):
            deliveries = deliveries.filter(event__type=request.query_params["event_type"])
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(
        request=None,
        responses={200: WebhookDeliverySerializer, **error_responses({404: "not_found"})},
        description="Send the delivery again from now on, whatever its status: pending, due now, its attempts and "
        "its 24-hour retry period start afresh. The receiver gets the same event id (it de-duplicates by it).",
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=rf"deliveries/(?P<delivery_id>{ID_PATTERN})/resend",
        url_name="delivery-resend",
    )
    def resend(self, request, pk=None, delivery_id=None):
        subscription = self.get_object()
        delivery = webhooks.resend_delivery(
            actor=access_for(request).actor, subscription_id=subscription.pk, delivery_id=int(delivery_id)
        )
        delivery = WebhookDelivery.objects.select_related("event").get(pk=delivery.pk)
        return Response(WebhookDeliverySerializer(delivery).data)
