"""HTTP for purchases, refunds, events, balances and ledgers, adjustments and their approval, deductions,
household transfers, rewards, redemptions and earning rules. Each view validates input, calls one service and
returns its result."""

import uuid

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty import batch
from loyalty.access import ROLE_ADMIN, ROLE_CLERK, ROLE_MANAGER, ROLE_MARKETER, MemberPrincipal, access_for
from loyalty.api import ID_PATTERN, IsMember, error_responses
from loyalty.errors import NotFoundError
from members.models import Member, Purchase
from members.selectors import (
    get_member_to_act_for_or_404,
    get_visible_member_or_404,
    may_act_for_member,
    store_for_write,
)
from points import selectors, services
from points.filters import LedgerFilter, RewardFilter
from points.models import AdjustmentRequest, EarningRule, LedgerEntry, Redemption, Reward
from points.serializers import (
    AdjustmentInputSerializer,
    AdjustmentRequestSerializer,
    DecisionInputSerializer,
    DeductionInputSerializer,
    DeductionResultSerializer,
    EarningRuleSerializer,
    EventInputSerializer,
    EventResultSerializer,
    LedgerEntrySerializer,
    MyHouseholdSerializer,
    MyRedemptionInputSerializer,
    PointsSummarySerializer,
    PurchaseInputSerializer,
    PurchasePreviewSerializer,
    PurchaseResultSerializer,
    RedemptionInputSerializer,
    RedemptionResultSerializer,
    RefundInputSerializer,
    RefundResultSerializer,
    RewardSerializer,
    SignInInputSerializer,
    TransferInputSerializer,
    TransferResultSerializer,
    fast_purchase_input,
)
from points.services.approvals import adjustment_request_representation
from points.services.spending import redemption_representation

MARKETING = {ROLE_ADMIN, ROLE_MARKETER}
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="A unique key per intended write; retries reuse it.",
)


def validated(serializer_class, request, **kwargs):
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def idempotency_key(request):
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise services.IdempotencyKeyRequired()
    if len(key) > 200:
        raise ValidationError({"Idempotency-Key": [gettext("At most 200 characters.")]})
    return key


def idempotency_scope(request):
    access = access_for(request)
    return f"{access.kind}:{access.principal.pk}"


def fingerprint(request, data):
    """Of the path and the validated body, so "129.9" and "129.90" are the same request."""
    body = {key: getattr(value, "pk", value) for key, value in data.items()}
    return services.request_fingerprint({"path": request.path, "body": body})


def unknown_member(field="member"):
    """The 400 of an id in the body that names no member (API.md: invalid on that field)."""
    return ValidationError({field: [gettext("No member with this id.")]})


def unknown_reward():
    return ValidationError({"reward": [gettext("No reward with this id.")]})


def existing_member(member_id, field="member"):
    member = Member.objects.filter(pk=member_id).first()
    if member is None:
        raise unknown_member(field)
    return member


def sent_member_no(request):
    """The card number in the body, read before the body is validated, so that the member check keeps its place
    (before the Idempotency-Key and body checks) on the /members/{id}/points/... writes."""
    data = request.data
    return data.get("member_no") if isinstance(data, dict) else None


def purchase_source(request, store):
    """Order numbers are unique per client app, or per store for orders keyed in by staff."""
    access = access_for(request)
    if access.kind == "client":
        return f"client:{access.principal.pk}"
    return f"store:{store.code}" if store else "staff"


def respond(outcome, replay_status=None):
    code = (replay_status or outcome.status_code) if outcome.replayed else outcome.status_code
    response = Response(outcome.result, status=code)
    if outcome.replayed:
        response["Idempotent-Replayed"] = "true"
    return response


class PurchaseViewSet(viewsets.GenericViewSet):
    client_scopes = {"create": "purchases:write", "preview": "purchases:write", "refunds": "purchases:write"}
    lookup_value_regex = ID_PATTERN
    queryset = Purchase.objects.none()

    def _purchase_input(self, request, *, member_needed=True):
        """The validated body. The member is looked up here when the view needs her (a preview, points_used's
        permission check); otherwise record_purchase reads her under her account lock anyway and answers the same
        400 for an unknown id (one query less on the hot path)."""
        # The common body without the serializer (the same data; anything else, errors included, the serializer's).
        data = fast_purchase_input(request.data) or validated(PurchaseInputSerializer, request)
        if member_needed or data["points_used"]:
            data["member"] = existing_member(data["member"])
        if data["points_used"] and not may_act_for_member(access_for(request), data["member"], data.get("member_no")):
            raise NotFoundError()  # paying with the points of a member the caller may not act for
        data["store"] = store_for_write(request, data.get("store"))
        return data

    @extend_schema(
        request=PurchaseInputSerializer,
        responses={
            201: PurchaseResultSerializer,
            200: PurchaseResultSerializer,
            **error_responses(
                {
                    400: "invalid",
                    404: "not_found (points_used for a member of another store without her member_no)",
                    409: "idempotency_conflict / member_frozen / "
                    "insufficient_points / deduction_limit / "
                    "already_recorded",
                }
            ),
        },
        description="Record an order and award its points. The same order_no again: 200 with the "
        "original result while its idempotency record is kept (IDEMPOTENCY_RETENTION_DAYS, "
        "at least 30 days); after that, 409 already_recorded with the purchase's id.",
    )
    def create(self, request):
        data = self._purchase_input(request, member_needed=False)
        outcome = services.record_purchase(
            actor=access_for(request).actor,
            source=purchase_source(request, data["store"]),
            member_id=getattr(data["member"], "pk", data["member"]),
            order_no=data["order_no"],
            amount=data["amount"],
            store=data["store"],
            channel=data["channel"],
            occurred_at=data.get("occurred_at"),
            lines=data["lines"],
            points_used=data["points_used"],
            fingerprint=fingerprint(request, data),
        )
        return respond(outcome, replay_status=status.HTTP_200_OK)

    @extend_schema(
        request=PurchaseInputSerializer,
        responses={200: PurchasePreviewSerializer, **error_responses({400: "invalid"})},
        description="What the purchase would earn now; nothing is written.",
    )
    @action(detail=False, methods=["post"])
    def preview(self, request):
        data = self._purchase_input(request)
        result = services.preview_purchase(
            member=data["member"],
            amount=data["amount"],
            store=data["store"],
            channel=data["channel"],
            occurred_at=data.get("occurred_at"),
            lines=data["lines"],
            points_used=data["points_used"],
        )
        return Response(result)

    @extend_schema(
        request=RefundInputSerializer,
        responses={
            201: RefundResultSerializer,
            200: RefundResultSerializer,
            **error_responses(
                {
                    400: "invalid",
                    404: "not_found",
                    409: "refund_exceeds_purchase / idempotency_conflict / already_recorded",
                }
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def refunds(self, request, pk=None):
        purchase = get_object_or_404(selectors.purchases_visible_to(access_for(request)), pk=pk)
        data = validated(RefundInputSerializer, request)
        outcome = services.record_refund(
            actor=access_for(request).actor,
            purchase_id=purchase.pk,
            refund_no=data["refund_no"],
            amount=data["amount"],
            lines=data["lines"],
            occurred_at=data.get("occurred_at"),
            fingerprint=fingerprint(request, data),
        )
        return respond(outcome, replay_status=status.HTTP_200_OK)


class EventView(APIView):
    client_scopes = {"POST": "events:write"}

    @extend_schema(
        request=EventInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: EventResultSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    409: "already_signed_in / order_not_eligible / already_reviewed / "
                    "member_frozen / idempotency_conflict",
                }
            ),
        },
        description="An engagement event happens now: an `occurred_at` more than EVENT_CLOCK_SKEW_SECONDS "
        "(default 300) from the server's clock, back-dated or ahead, is 400 invalid; within it, the server's now "
        "counts (its business date, daily counts and caps).",
    )
    def post(self, request):
        key = idempotency_key(request)
        data = validated(EventInputSerializer, request)
        # record_event reads the member under her account lock and answers an unknown id with this view's 400
        # before anything else (one query less).
        outcome = services.record_event(
            actor=access_for(request).actor,
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            member_id=data["member"],
            event_type=data["type"],
            occurred_at=data.get("occurred_at"),
            order_no=data["order_no"],
            payload=data["payload"],
        )
        return respond(outcome)


class MemberPointsViewSet(viewsets.GenericViewSet):
    """/members/{id}/points/ and its ledger, adjustments, deductions and transfers."""

    lookup_value_regex = ID_PATTERN
    queryset = LedgerEntry.objects.none()
    client_scopes = {
        "summary": "points:read",
        "ledger": "points:read",
        "deductions": "points:write",
        "transfers": "points:write",
    }
    staff_roles = {"adjustments": {ROLE_ADMIN, ROLE_MARKETER, ROLE_MANAGER, ROLE_CLERK}}
    filterset_class = LedgerFilter

    def get_queryset(self):
        return selectors.ledger_entries(self.kwargs.get("pk"))

    @extend_schema(responses={200: PointsSummarySerializer, **error_responses({404: "not_found"})})
    @action(detail=True, methods=["get"], url_path="points", filterset_class=None)
    def summary(self, request, pk=None):
        return Response(selectors.points_summary(pk, visible_to=access_for(request)))

    @extend_schema(responses={200: LedgerEntrySerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="points/ledger")
    def ledger(self, request, pk=None):
        get_visible_member_or_404(request, pk)
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(LedgerEntrySerializer(page, many=True).data)

    @extend_schema(
        request=AdjustmentInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: LedgerEntrySerializer,
            202: AdjustmentRequestSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    403: "adjustment_limit",
                    404: "not_found",
                    409: "insufficient_points / idempotency_conflict",
                }
            ),
        },
        description="Adjust points now, within your role's limit per entry and the daily totals (your "
        "adjustments of the business day, the member's): 201 with the ledger entry; over a limit or a total 403 "
        "adjustment_limit (for a total: `per` actor or member, `daily_total`, `adjusted_today`, `left`). "
        "With `request_approval: true` nothing moves "
        "yet: 202 with a pending adjustment request that another manager approves or rejects "
        "at /adjustment-requests/{id}/approve/ or /reject/.",
    )
    @action(detail=True, methods=["post"], url_path="points/adjustments", filterset_class=None)
    def adjustments(self, request, pk=None):
        member = get_member_to_act_for_or_404(request, pk, sent_member_no(request))
        key = idempotency_key(request)
        data = validated(AdjustmentInputSerializer, request)
        access = access_for(request)
        common = {
            "scope": idempotency_scope(request),
            "key": key,
            "fingerprint": fingerprint(request, data),
            "member_id": member.pk,
            "points": data["points"],
            "reason": data["reason"],
        }
        if data.get("request_approval"):
            outcome = services.request_adjustment(requester=access.principal, **common)
        else:
            outcome = services.adjust_points(actor=access.actor, role=access.role, **common)
        return respond(outcome)

    @extend_schema(
        request=TransferInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: TransferResultSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    404: "not_found",
                    409: "transfer_disabled / not_same_household / transfer_limit / "
                    "insufficient_points / member_frozen / idempotency_conflict",
                }
            ),
        },
        description="Give available points to another member of the same household (when the points "
        "policy allows transfers; within its daily limit per sending member). The points "
        "keep their expiry.",
    )
    @action(detail=True, methods=["post"], url_path="points/transfers", filterset_class=None)
    def transfers(self, request, pk=None):
        member = get_member_to_act_for_or_404(request, pk, sent_member_no(request))
        key = idempotency_key(request)
        data = validated(TransferInputSerializer, request)
        receiver = existing_member(data["to"], field="to")
        outcome = services.transfer_points(
            actor=access_for(request).actor,
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            from_member_id=member.pk,
            to_member_id=receiver.pk,
            points=data["points"],
            reason=data["reason"],
        )
        return respond(outcome)

    @extend_schema(
        request=DeductionInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: DeductionResultSerializer,
            **error_responses({400: "invalid", 404: "not_found", 409: "deduction_limit / insufficient_points"}),
        },
        description="Pay with points. For a member of another store than the caller's, send her card number "
        "`member_no` too (from her card or member code); without it, or with another, 404 not_found.",
    )
    @action(detail=True, methods=["post"], url_path="points/deductions", filterset_class=None)
    def deductions(self, request, pk=None):
        # A write for the checkout at this store: any member of the chain may pay with points here, with her card.
        member = get_member_to_act_for_or_404(request, pk, sent_member_no(request))
        key = idempotency_key(request)
        data = validated(DeductionInputSerializer, request)
        store = store_for_write(request, None) if access_for(request).kind != "client" else None
        outcome = services.deduct_points(
            actor=access_for(request).actor,
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            member_id=member.pk,
            source=purchase_source(request, store),
            order_no=data["order_no"],
            points=data["points"],
            order_amount=data.get("amount"),
        )
        return respond(outcome)


class VersionedConfigurationMixin:
    """create, partial_update and POST .../versions/ of configuration kept in versions (rewards, earning rules):
    the serializer checks the shape, one points service writes (loyalty.versions holds the rule). A subclass names
    its services and the keyword its change and version services take the row's id by; its schema says the rest
    (extend_schema_view)."""

    create_service = change_service = version_service = None
    id_argument = ""
    filterset_class = None  # the list's filters (a subclass's own); the versions action takes none

    def create(self, request):
        data = validated(self.serializer_class, request)
        saved = self.create_service(actor=access_for(request).actor, values=data)
        return Response(self.serializer_class(saved).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        current = self.get_object()
        data = validated(self.serializer_class, request, partial=True)
        saved = self.change_service(actor=access_for(request).actor, changes=data, **{self.id_argument: current.pk})
        return Response(self.serializer_class(saved).data)

    @action(detail=True, methods=["post"], filterset_class=None)
    def versions(self, request, pk=None):
        current = self.get_object()
        data = validated(self.serializer_class, request, partial=True)
        new = self.version_service(actor=access_for(request).actor, changes=data, **{self.id_argument: current.pk})
        return Response(self.serializer_class(new).data, status=status.HTTP_201_CREATED)


def versioned_rule_schema(serializer, *, create_description=None, version_description, **more):
    """The schema of a VersionedConfigurationMixin view for rules whose versions may not start at the same instant
    (409 overlapping_version): earning rules and top-up rules. `more` adds other actions' extend_schema."""
    return {
        "create": extend_schema(
            request=serializer,
            responses={201: serializer, **error_responses({400: "invalid", 409: "overlapping_version"})},
            description=create_description,
        ),
        "partial_update": extend_schema(
            request=serializer(partial=True),
            responses={
                200: serializer,
                **error_responses(
                    {400: "invalid / version_keeps_its_terms", 404: "not_found", 409: "overlapping_version"}
                ),
            },
            description="End (valid_until) or switch (is_active) a rule in place. Its other fields are its "
            "terms: change them with POST .../versions/.",
        ),
        "versions": extend_schema(
            request=serializer(partial=True),
            responses={
                201: serializer,
                **error_responses({400: "invalid", 404: "not_found", 409: "overlapping_version"}),
            },
            description=version_description,
        ),
        **more,
    }


@extend_schema_view(
    create=extend_schema(
        request=RewardSerializer, responses={201: RewardSerializer, **error_responses({400: "invalid"})}
    ),
    partial_update=extend_schema(
        request=RewardSerializer(partial=True),
        responses={
            200: RewardSerializer,
            **error_responses({400: "invalid / version_keeps_its_terms", 404: "not_found", 409: "version_replaced"}),
        },
        description="Change a reward in place. Once redeemed, its terms (code, kind, cost_points, "
        "voucher_amount) stay: change them with POST .../versions/.",
    ),
    versions=extend_schema(
        request=RewardSerializer(partial=True),
        responses={
            201: RewardSerializer,
            **error_responses({400: "invalid", 404: "not_found", 409: "version_replaced"}),
        },
        description="A new version of the reward: its values with the fields sent, under the same code. "
        "The old version keeps its terms and is retired; its stock moves to the new one.",
    ),
)
class RewardViewSet(VersionedConfigurationMixin, viewsets.ModelViewSet):
    """The rewards catalogue: everyone reads it (members too); marketers and admins write it."""

    serializer_class = RewardSerializer
    filterset_class = RewardFilter
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "head", "options"]
    client_scopes = {"list": "rewards:read", "retrieve": "rewards:read"}
    staff_roles = {"create": MARKETING, "partial_update": MARKETING, "versions": MARKETING}
    queryset = Reward.objects.all()
    create_service = staticmethod(services.create_reward)
    change_service = staticmethod(services.change_reward)
    version_service = staticmethod(services.add_reward_version)
    id_argument = "reward_id"

    def get_permissions(self):
        if self.action in ("list", "retrieve") and isinstance(self.request.user, MemberPrincipal):
            return [IsMember()]
        return super().get_permissions()

    def get_queryset(self):
        queryset = Reward.objects.all()
        if isinstance(self.request.user, MemberPrincipal):
            queryset = queryset.filter(is_active=True)
        return queryset


class RedemptionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    lookup_value_regex = ID_PATTERN
    client_scopes = {"create": "redemptions:write", "cancel": "redemptions:write", "list": "points:read"}
    serializer_class = RedemptionResultSerializer
    filterset_fields = ["member", "reward", "status"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Redemption.objects.none()
        return selectors.redemptions_visible_to(access_for(self.request))

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([redemption_representation(r) for r in page])

    @extend_schema(
        request=RedemptionInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: RedemptionResultSerializer,
            **error_responses(
                {
                    400: "invalid",
                    404: "not_found",
                    409: "insufficient_points / out_of_stock / "
                    "limit_reached / not_eligible / reward_unavailable / "
                    "member_frozen",
                }
            ),
        },
        description="Redeem a reward. For a member of another store than the caller's, send her card number "
        "`member_no` too (from her card or member code); without it, or with another, 404 not_found.",
    )
    def create(self, request):
        key = idempotency_key(request)
        data = validated(RedemptionInputSerializer, request)
        member, reward = _member_and_reward(data["member"], data["reward"])
        if member is None:  # an unknown id stays 400 invalid on `member` (API.md)
            raise unknown_member()
        if not may_act_for_member(access_for(request), member, data.get("member_no")):
            raise NotFoundError()
        if reward is None:
            raise unknown_reward()
        outcome = services.redeem_reward(
            actor=access_for(request).actor,
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            member_id=member.pk,
            reward_id=reward.pk,
            quantity=data["quantity"],
            store=store_for_write(request, None) if access_for(request).kind == "staff" else None,
        )
        return respond(outcome)

    @extend_schema(
        request=None,
        responses={200: RedemptionResultSerializer, **error_responses({404: "not_found", 409: "already_cancelled"})},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        redemption = get_object_or_404(self.get_queryset(), pk=pk)
        result = services.cancel_redemption(actor=access_for(request).actor, redemption_id=redemption.pk)
        return Response(result)


class AdjustmentRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Adjustments waiting for a manager (staff only; clerks see their stores' members): list them
    (`?status=pending`), approve or reject one."""

    lookup_value_regex = ID_PATTERN
    serializer_class = AdjustmentRequestSerializer
    filterset_fields = ["status", "member"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AdjustmentRequest.objects.none()
        return selectors.adjustment_requests_visible_to(access_for(self.request))

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([adjustment_request_representation(r) for r in page])

    def retrieve(self, request, pk=None):
        return Response(adjustment_request_representation(get_object_or_404(self.get_queryset(), pk=pk)))

    @extend_schema(
        request=DecisionInputSerializer,
        responses={
            200: AdjustmentRequestSerializer,
            **error_responses(
                {
                    400: "invalid",
                    403: "approval_limit / own_request / permission_denied",
                    404: "not_found",
                    409: "already_decided / insufficient_points",
                }
            ),
        },
        description="Approve: the adjustment is written now, once. You may not approve your own request, "
        "nor one over your own role's limit.",
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        adjustment = get_object_or_404(self.get_queryset(), pk=pk)
        data = validated(DecisionInputSerializer, request)
        return Response(
            services.approve_adjustment(
                approver=access_for(request).principal, request_id=adjustment.pk, note=data["note"]
            )
        )

    @extend_schema(
        request=DecisionInputSerializer,
        responses={
            200: AdjustmentRequestSerializer,
            **error_responses(
                {
                    400: "invalid",
                    403: "approval_limit / own_request / permission_denied",
                    404: "not_found",
                    409: "already_decided",
                }
            ),
        },
        description="Reject: nothing moves. Whoever may approve it may reject it; the requester may withdraw her own.",
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        adjustment = get_object_or_404(self.get_queryset(), pk=pk)
        data = validated(DecisionInputSerializer, request)
        return Response(
            services.reject_adjustment(
                approver=access_for(request).principal, request_id=adjustment.pk, note=data["note"]
            )
        )


def _member_and_reward(member_id, reward_id):
    """The member and the reward of a redemption (None for an unknown id), read in one round trip on PostgreSQL
    (loyalty.batch); the caller judges them in its order."""
    with batch.pipelined():
        member_sent = batch.select(Member, "id = %s", [member_id])
        reward_sent = batch.select(Reward, "id = %s", [reward_id])
        members, rewards = member_sent.models(), reward_sent.models()
    return (members[0] if members else None), (rewards[0] if rewards else None)


def _existing_reward(reward_id):
    reward = Reward.objects.filter(pk=reward_id).first()
    if reward is None:
        raise unknown_reward()
    return reward


@extend_schema_view(
    **versioned_rule_schema(
        EarningRuleSerializer,
        version_description="A new version of the rule: its values with the fields sent (typically new terms "
        "from a new valid_from). The old version stays as it was; the newest in force wins.",
    )
)
class EarningRuleViewSet(
    VersionedConfigurationMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Earning rules, versioned: a change is a new version from a date; an old one is closed by valid_until."""

    serializer_class = EarningRuleSerializer
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "head", "options"]
    staff_roles = {"create": MARKETING, "partial_update": MARKETING, "versions": MARKETING}
    filterset_fields = ["channel", "event_type", "is_active"]
    queryset = EarningRule.objects.select_related("store")
    create_service = staticmethod(services.create_earning_rule)
    change_service = staticmethod(services.change_earning_rule)
    version_service = staticmethod(services.add_earning_rule_version)
    id_argument = "rule_id"


# --- The member herself ---------------------------------------------------------------------------------------


class MyPointsView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: PointsSummarySerializer})
    def get(self, request):
        return Response(selectors.points_summary(request.user.pk))


class MyLedgerView(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsMember]
    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return selectors.ledger_entries(None)
        return selectors.ledger_entries(self.request.user.pk)


class MySignInView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        request=SignInInputSerializer,
        responses={201: EventResultSerializer, **error_responses({409: "already_signed_in"})},
        description="Sign in for today (same rules as the sign_in event). Idempotency-Key optional: "
        "the business date is the natural key. An `occurred_at` more than EVENT_CLOCK_SKEW_SECONDS (default 300) "
        "from the server's clock is 400 invalid; within it, the server's now counts.",
    )
    def post(self, request):
        member = request.user.member
        data = validated(SignInInputSerializer, request)
        # Without a key each call is a new attempt: a second sign-in the same day is 409 already_signed_in.
        key = request.headers.get("Idempotency-Key", "").strip() or f"sign-in:{uuid.uuid4()}"
        outcome = services.record_event(
            actor=str(request.user),
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            member_id=member.pk,
            event_type="sign_in",
            occurred_at=data.get("occurred_at"),
        )
        return respond(outcome)


class MyRedemptionsView(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsMember]
    serializer_class = RedemptionResultSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Redemption.objects.none()
        return Redemption.objects.filter(member_id=self.request.user.pk).select_related("reward")

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([redemption_representation(r) for r in page])

    @extend_schema(
        request=MyRedemptionInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: RedemptionResultSerializer,
            **error_responses(
                {
                    409: "insufficient_points / out_of_stock / limit_reached / "
                    "not_eligible / reward_unavailable / member_frozen"
                }
            ),
        },
    )
    def create(self, request):
        key = idempotency_key(request)
        data = validated(MyRedemptionInputSerializer, request)
        reward = _existing_reward(data["reward"])
        outcome = services.redeem_reward(
            actor=str(request.user),
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            member_id=request.user.pk,
            reward_id=reward.pk,
            quantity=data["quantity"],
        )
        return respond(outcome)


class MyTransfersView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        request=TransferInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: TransferResultSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    409: "transfer_disabled / not_same_household / transfer_limit / "
                    "insufficient_points / member_frozen / idempotency_conflict",
                }
            ),
        },
        description="Give some of your available points to a member of your household "
        "(GET /api/v1/me/household/ lists them).",
    )
    def post(self, request):
        key = idempotency_key(request)
        data = validated(TransferInputSerializer, request)
        # No existence check here: to a member, an unknown id is just not of her household.
        outcome = services.transfer_points(
            actor=str(request.user),
            scope=idempotency_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            from_member_id=request.user.pk,
            to_member_id=data["to"],
            points=data["points"],
            reason=data["reason"],
        )
        return respond(outcome)


class MyHouseholdView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: MyHouseholdSerializer})
    def get(self, request):
        household_id = Member.objects.filter(pk=request.user.pk).values_list("household_id", flat=True).first()
        others = selectors.household_members(request.user.pk) if household_id else []
        return Response(
            {
                "id": str(household_id) if household_id else None,
                "members": [{"id": str(m.pk), "member_no": m.member_no, "name": m.name} for m in others],
            }
        )
