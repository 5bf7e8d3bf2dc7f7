"""HTTP for stored value: a member's balance and ledger, top-ups, payments and their refunds, withdrawals and
adjustments (managers), the payment PIN, and the member's own view. Each view validates input, checks whom the
caller may act for, calls one service and returns its result."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty.access import ROLE_ADMIN, ROLE_MANAGER, access_for
from loyalty.api import ID_PATTERN, IsMember, error_responses
from loyalty.errors import NotFoundError
from members.selectors import (
    get_member_to_act_for_or_404,
    get_visible_member_or_404,
    may_act_for_member,
    store_for_write,
)
from points.views import (
    IDEMPOTENCY_HEADER,
    MARKETING,
    VersionedConfigurationMixin,
    existing_member,
    fingerprint,
    idempotency_key,
    idempotency_scope,
    purchase_source,
    respond,
    sent_member_no,
    validated,
    versioned_rule_schema,
)
from stored_value import selectors, services
from stored_value.filters import EntryFilter, TopUpRuleFilter
from stored_value.models import Payment, StoredValueEntry, TopUp, TopUpRule
from stored_value.serializers import (
    MyStoredValuePinInputSerializer,
    StoredValueAdjustmentInputSerializer,
    StoredValueAdjustmentResultSerializer,
    StoredValueEntrySerializer,
    StoredValuePaymentInputSerializer,
    StoredValuePaymentResultSerializer,
    StoredValuePinInputSerializer,
    StoredValuePinResultSerializer,
    StoredValueRefundInputSerializer,
    StoredValueRefundResultSerializer,
    StoredValueSummarySerializer,
    StoredValueTopUpInputSerializer,
    StoredValueTopUpResultSerializer,
    StoredValueWithdrawalInputSerializer,
    StoredValueWithdrawalResultSerializer,
    TopUpPreviewInputSerializer,
    TopUpPreviewSerializer,
    TopUpRuleSerializer,
    TopUpTierSerializer,
)
from stored_value.services.balances import entry_representation
from stored_value.services.ledger import cents, money

MANAGERS = {ROLE_ADMIN, ROLE_MANAGER}


def stored_value_scope(request):
    """Idempotency keys of stored-value writes, per caller, apart from her keys of points writes."""
    return f"{idempotency_scope(request)}:stored-value"


def _entries_page(view, member_id):
    page = view.paginate_queryset(view.filter_queryset(selectors.ledger_entries(member_id)))
    return view.get_paginated_response([entry_representation(entry) for entry in page])


class MemberStoredValueViewSet(viewsets.GenericViewSet):
    """/members/{id}/stored-value/, its ledger, adjustments (managers) and the PIN (staff)."""

    lookup_value_regex = ID_PATTERN
    queryset = StoredValueEntry.objects.none()
    client_scopes = {"summary": "stored_value:read", "ledger": "stored_value:read"}
    staff_roles = {"adjustments": MANAGERS}
    filterset_class = EntryFilter

    @extend_schema(responses={200: StoredValueSummarySerializer, **error_responses({404: "not_found"})})
    @action(detail=True, methods=["get"], url_path="stored-value", filterset_class=None)
    def summary(self, request, pk=None):
        member = get_visible_member_or_404(request, pk)
        return Response(selectors.summary(member.pk))

    @extend_schema(responses={200: StoredValueEntrySerializer(many=True), **error_responses({404: "not_found"})})
    @action(detail=True, methods=["get"], url_path="stored-value/ledger")
    def ledger(self, request, pk=None):
        member = get_visible_member_or_404(request, pk)
        return _entries_page(self, member.pk)

    @extend_schema(
        request=StoredValueAdjustmentInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: StoredValueAdjustmentResultSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    403: "permission_denied",
                    404: "not_found",
                    409: "insufficient_balance / idempotency_conflict",
                }
            ),
        },
        description="A store manager's or an admin's correction of the principal or the bonus (signed decimal "
        "strings), with a reason; never below zero. Audited.",
    )
    @action(detail=True, methods=["post"], url_path="stored-value/adjustments", filterset_class=None)
    def adjustments(self, request, pk=None):
        member = get_member_to_act_for_or_404(request, pk, sent_member_no(request))
        key = idempotency_key(request)
        data = validated(StoredValueAdjustmentInputSerializer, request)
        access = access_for(request)
        outcome = services.adjust(
            actor=access.actor,
            role=access.role,
            scope=stored_value_scope(request),
            key=key,
            fingerprint=fingerprint(request, data),
            member_id=member.pk,
            principal_cents=cents(data["principal"]),
            bonus_cents=cents(data["bonus"]),
            reason=data["reason"],
        )
        return respond(outcome)

    @extend_schema(
        request=StoredValuePinInputSerializer,
        responses={200: StoredValuePinResultSerializer, **error_responses({400: "invalid", 403: "permission_denied"})},
        description="Staff set (or reset) the member's 6-digit payment PIN with her at the counter; it lifts a lock "
        "after too many wrong PINs. Client apps cannot.",
    )
    @action(detail=True, methods=["post"], url_path="stored-value/pin", filterset_class=None)
    def pin(self, request, pk=None):
        member = get_member_to_act_for_or_404(request, pk, sent_member_no(request))
        data = validated(StoredValuePinInputSerializer, request)
        return Response(services.set_pin(actor=access_for(request).actor, member_id=member.pk, pin=data["pin"]))


class TopUpViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_value_regex = ID_PATTERN
    client_scopes = {"create": "stored_value:write", "retrieve": "stored_value:read"}
    serializer_class = StoredValueTopUpResultSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return TopUp.objects.none()
        return selectors.top_ups_visible_to(access_for(self.request)).select_related("store")

    def retrieve(self, request, pk=None):
        top_up = get_object_or_404(self.get_queryset(), pk=pk)
        return Response(services.balances.top_up_representation(top_up))

    @extend_schema(
        request=StoredValueTopUpInputSerializer,
        responses={
            201: StoredValueTopUpResultSerializer,
            200: StoredValueTopUpResultSerializer,
            **error_responses(
                {
                    400: "invalid",
                    403: "permission_denied",
                    409: "idempotency_conflict / already_recorded / member_frozen / member_merged",
                }
            ),
        },
        description="Money paid in for a member (the payment happened outside: cash, card, WeChat Pay, Alipay), with "
        "the bonus money, bonus points and growth of the top-up rule in force for the store. The payment reference "
        "is unique per payment method: the same one again with the same body answers 200 with the first result; "
        "with another body 409 idempotency_conflict.",
    )
    def create(self, request):
        data = validated(StoredValueTopUpInputSerializer, request)
        member = existing_member(data["member"])  # adding money is open for any member of the chain
        store = store_for_write(request, data.get("store"))
        outcome = services.top_up(
            actor=access_for(request).actor,
            member_id=member.pk,
            amount_cents=cents(data["amount"]),
            payment_method=data["payment_method"],
            payment_ref=data["payment_ref"],
            store=store,
            fingerprint=fingerprint(request, {**data, "store": store}),
        )
        return respond(outcome, replay_status=status.HTTP_200_OK)


class PaymentViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_value_regex = ID_PATTERN
    client_scopes = {"create": "stored_value:write", "refunds": "stored_value:write", "retrieve": "stored_value:read"}
    serializer_class = StoredValuePaymentResultSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Payment.objects.none()
        return selectors.payments_visible_to(access_for(self.request)).select_related("store")

    def retrieve(self, request, pk=None):
        payment = get_object_or_404(self.get_queryset(), pk=pk)
        return Response(services.balances.payment_representation(payment))

    @extend_schema(
        request=StoredValuePaymentInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: StoredValuePaymentResultSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    403: "pin_required / pin_invalid / permission_denied",
                    404: "not_found",
                    409: "insufficient_balance / daily_limit / already_paid / idempotency_conflict / member_frozen",
                }
            ),
        },
        description="Pay an order from the member's balance: principal and bonus are spent in proportion to what "
        "she holds (bonus rounded down to the cent, the odd cent from the principal). A member who has a payment "
        "PIN gives it (`pin`; 403 pin_required without, pin_invalid when wrong, with `attempts_left`; after 5 wrong "
        "ones `locked: true` until staff set a new PIN). For a member of another store than the caller's, send "
        "her card number `member_no` too; without it, or with another, 404 not_found.",
    )
    def create(self, request):
        key = idempotency_key(request)
        data = validated(StoredValuePaymentInputSerializer, request)
        member = existing_member(data["member"])
        access = access_for(request)
        if not may_act_for_member(access, member, data.get("member_no")):
            raise NotFoundError()  # paying with the money of a member the caller may not act for
        store = store_for_write(request, data.get("store"))
        body = {name: value for name, value in data.items() if name != "pin"}  # the PIN is never kept, not even hashed
        outcome = services.pay(
            actor=access.actor,
            scope=stored_value_scope(request),
            key=key,
            fingerprint=fingerprint(request, {**body, "store": store}),
            member_id=member.pk,
            source=purchase_source(request, store),
            order_no=data["order_no"],
            amount_cents=cents(data["amount"]),
            store=store,
            pin=data.get("pin"),
        )
        return respond(outcome)

    @extend_schema(
        request=StoredValueRefundInputSerializer,
        responses={
            201: StoredValueRefundResultSerializer,
            200: StoredValueRefundResultSerializer,
            **error_responses({400: "invalid", 404: "not_found", 409: "refund_exceeds_payment / idempotency_conflict"}),
        },
        description="Refund (part of) a payment to the balance: the principal and the bonus come back in the "
        "payment's own proportion, never more than was paid. `refund_no` is the idempotency key (per payment): "
        "the same again answers 200 with the first result.",
    )
    @action(detail=True, methods=["post"])
    def refunds(self, request, pk=None):
        payment = get_object_or_404(self.get_queryset(), pk=pk)
        data = validated(StoredValueRefundInputSerializer, request)
        outcome = services.refund_payment(
            actor=access_for(request).actor,
            payment_id=payment.pk,
            refund_no=data["refund_no"],
            amount_cents=cents(data["amount"]),
            fingerprint=fingerprint(request, data),
        )
        return respond(outcome, replay_status=status.HTTP_200_OK)


class WithdrawalView(APIView):
    staff_roles = {"POST": MANAGERS}

    @extend_schema(
        request=StoredValueWithdrawalInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: StoredValueWithdrawalResultSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    403: "permission_denied",
                    404: "not_found",
                    409: "withdrawal_exceeds_unspent / idempotency_conflict",
                }
            ),
        },
        description="A store manager or an admin pays back unspent principal of a top-up in money (all of it when "
        "no amount is given), with a reason; the same share of what is left of that top-up's bonus is forfeited "
        "(rounded up). Audited.",
    )
    def post(self, request):
        key = idempotency_key(request)
        data = validated(StoredValueWithdrawalInputSerializer, request)
        access = access_for(request)
        top_up = TopUp.objects.filter(pk=data["top_up"]).first()
        if top_up is None:
            raise ValidationError({"top_up": [gettext("No top-up with this id.")]})
        if not selectors.top_ups_visible_to(access).filter(pk=top_up.pk).exists():
            raise NotFoundError()
        store = store_for_write(request, data.get("store"))
        outcome = services.withdraw(
            actor=access.actor,
            role=access.role,
            scope=stored_value_scope(request),
            key=key,
            fingerprint=fingerprint(request, {**data, "store": store}),
            top_up_id=top_up.pk,
            amount_cents=cents(data["amount"]) if data.get("amount") is not None else None,
            reason=data["reason"],
            store=store,
        )
        return respond(outcome)


# --- The member herself ---------------------------------------------------------------------------------------


class MyStoredValueView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: StoredValueSummarySerializer})
    def get(self, request):
        return Response(selectors.summary(request.user.pk))


class MyStoredValueLedgerView(mixins.ListModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsMember]
    serializer_class = StoredValueEntrySerializer
    filterset_class = EntryFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StoredValueEntry.objects.none()
        return selectors.ledger_entries(self.request.user.pk)

    def list(self, request):
        return _entries_page(self, request.user.pk)


class MyPinView(APIView):
    permission_classes = [IsMember]

    @extend_schema(
        request=MyStoredValuePinInputSerializer,
        responses={
            200: StoredValuePinResultSerializer,
            **error_responses({400: "invalid", 403: "pin_required / pin_invalid"}),
        },
        description="Set your 6-digit payment PIN; to change it, give the current one as `current_pin` (a wrong "
        "one counts like a wrong PIN at a payment). A locked PIN is reset by staff at a counter.",
    )
    def post(self, request):
        data = validated(MyStoredValuePinInputSerializer, request)
        return Response(
            services.change_own_pin(member_id=request.user.pk, pin=data["pin"], current_pin=data.get("current_pin"))
        )


@extend_schema_view(
    **versioned_rule_schema(
        TopUpRuleSerializer,
        create_description="A top-up rule (marketer or admin): tiers of amount → bonus money (decimal strings), "
        "optional bonus points and growth, optional bonus_valid_days, for one store or every store. At least one "
        "tier, every amount at least 0.01 and at most once; two active versions for the same store may not start at "
        "the same instant (409 overlapping_version).",
        version_description="A new version of the rule: its values with the fields sent (typically new tiers from a "
        "new valid_from). The old version stays as it was; for a store, the newest valid_from in force wins.",
        list=extend_schema(description="Top-up rules, every version; filter by `is_active` or `store` (a store code)."),
    )
)
class TopUpRuleViewSet(
    VersionedConfigurationMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Top-up rules, versioned like earning rules: a change of terms is a new version from a date."""

    serializer_class = TopUpRuleSerializer
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "head", "options"]
    staff_roles = {"create": MARKETING, "partial_update": MARKETING, "versions": MARKETING}
    client_scopes = {"preview": "stored_value:read"}
    filterset_class = TopUpRuleFilter
    queryset = TopUpRule.objects.select_related("store")
    create_service = staticmethod(services.create_top_up_rule)
    change_service = staticmethod(services.change_top_up_rule)
    version_service = staticmethod(services.add_top_up_rule_version)
    id_argument = "rule_id"

    @extend_schema(
        parameters=[TopUpPreviewInputSerializer],
        responses={200: TopUpPreviewSerializer, **error_responses({400: "invalid"})},
        description="What a top-up of `amount` at `store` would get now (nothing is written): the rule and tier in "
        "force, the bonus money, bonus points, growth value and when the bonus would expire. For the counter "
        "(before taking the money) and for marketers trying rules.",
    )
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def preview(self, request):
        data = TopUpPreviewInputSerializer(data=request.query_params)
        data.is_valid(raise_exception=True)
        amount = cents(data.validated_data["amount"])
        terms = services.top_up_terms(amount, at=timezone.now(), store=data.validated_data.get("store"))
        return Response(
            {
                "amount": money(amount),
                "amount_cents": amount,
                "bonus": money(terms.bonus),
                "bonus_cents": terms.bonus,
                "bonus_points": terms.points,
                "bonus_growth": terms.growth,
                "bonus_expires_at": services.balances.iso(terms.bonus_expires_at),
                "rule": str(terms.rule.pk) if terms.rule else None,
                "tier": TopUpTierSerializer(terms.tier).data if terms.tier else None,
            }
        )
