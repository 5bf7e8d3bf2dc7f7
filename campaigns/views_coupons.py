"""HTTP for coupons (SPEC §10, API.md "Stored value and coupons"): templates for marketers, issuing, the check and
the redemption at the counter or POS, the undo, and the wallets. Each view validates input, checks whom the caller
may act for, calls one service and returns its result."""

from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from campaigns import coupon_lists
from campaigns.filters import CouponFilter
from campaigns.models_coupons import Coupon, CouponBatch, CouponSource, CouponTemplate
from campaigns.serializers_coupons import (
    CouponBatchSerializer,
    CouponCheckInputSerializer,
    CouponCheckResultSerializer,
    CouponIssueInputSerializer,
    CouponIssueResultSerializer,
    CouponRedeemInputSerializer,
    CouponRedeemResultSerializer,
    CouponSerializer,
    CouponTemplateSerializer,
)
from campaigns.services import coupons
from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, access_for
from loyalty.api import BODY_REQUIRED, ID_PATTERN, IsMember, JSONParser, error_responses
from loyalty.errors import NotFoundError, PermissionDeniedError
from members.models import Member
from members.selectors import get_visible_member_or_404, store_for_write
from points.views import IDEMPOTENCY_HEADER, fingerprint, idempotency_key, idempotency_scope, purchase_source, respond

MARKETING = {ROLE_ADMIN, ROLE_MARKETER}
CODE_PATTERN = r"[A-Za-z0-9-]{1,40}"
MALFORMED = "invalid (a malformed code or a wrong check character, refused before any lookup)"
ISSUE_DESCRIPTION = f"""Issue this template's coupons to listed members (at most {coupons.MAX_MEMBERS_PER_ISSUE}, each
once), all or nothing, with `Idempotency-Key` (a retry answers the first result). Each coupon gets an unguessable
12-character code with a check character and is valid from the issue day for `valid_days` days (the issue day
counts), or between the template's fixed dates.

Marketers and admins issue to any member; a clerk or store manager, and a client app (scope `coupons:write`), to
members of their stores. 409 `out_of_stock` (the total quantity would be passed; `left` says how many remain),
`limit_reached` (`members` would pass the per-member limit, counting their coupons that are not void),
`template_inactive` (inactive, or its fixed validity ended).

`{{"tag": code}}` or `{{"segment": code}}` (marketers and admins) issue to every active member of the tag, or of the RFM
segment as of the newest completed RFM run, as a job: 202 with the batch (`GET /api/v1/coupon-batches/{{id}}/`
follows it). The job walks member ids in chunks, one transaction each, under the same template lock: members
over the per-member limit are skipped (`skipped_over_limit`), and when the total quantity runs out the rest
(`skipped_over_quantity`); each member gets one coupon per batch however often a chunk is retried.

An uploaded list (marketers and admins): `multipart/form-data` with `file`, a CSV (UTF-8) whose header names one
key column, `member_no` (card number), `phone` or `external_id` (other columns are ignored), at most
COUPON_LIST_MAX_ROWS rows (400 `invalid`) and COUPON_LIST_MAX_BYTES bytes (413 `request_too_large`), as a job:
202 with the batch. Each line issues one coupon to its member, or is written with its reason to the batch's
rejects file (`rejects`: GET /api/v1/coupon-batches/{{id}}/rejects/, CSV `line, key, reason`): a malformed key,
a duplicate of an earlier line, an unknown member, one erased on her request or not active, the same member as an
earlier line, the per-member limit reached, the total quantity used up."""
CHECK_DESCRIPTION = """Whether the coupon could be used on this order now, and its discount, writing nothing.
`reason` when not valid, checked in this order: `void`, `used`, `expired`, `not_yet_valid`, `not_owner` (when
`member` is sent and the coupon is another's), `wrong_store` (the template's stores), `wrong_category` (when the
order's `categories` are sent and none is the template's), `below_threshold`, `not_stackable_with_points` (the
template's `stackable_with_points` is false and the order uses `points_used` > 0 points as cash). Discounts:
amount_off its amount; percent_off the percent of the amount, rounded half up to the cent, at most
`max_discount`; gift and free_item their value (`amount_off`, 0 without); never more than the amount. 400
`invalid` for a mistyped code (its check character is wrong: no lookup is made), 404 `not_found` for a
well-formed code that does not exist."""
REDEEM_DESCRIPTION = """Use the coupon on an order, once, with `Idempotency-Key` (a retry answers the first result).
The coupon row is locked, then checked as in /coupons/check/, then marked used with the order, store and
discount: of several tills redeeming one code at the same moment exactly one gets 201, the others 409
`coupon_used`. 409 `coupon_expired`; 409 `coupon_not_applicable` with `reason` (`void`, `not_yet_valid`,
`not_owner`, `wrong_store`, `wrong_category`, `below_threshold`, `not_stackable_with_points`: the template is not
stackable with points as cash and the order uses points, as `points_used` or as a deduction already recorded for
this `order_no` from the same client app or store). Refunding the order in full (POST
/purchases/{id}/refunds/ with the same order_no from the same client app or store) returns the coupon if it is
still valid (`coupons_returned` in the refund's answer); a clerk can undo it within a few minutes
(/coupons/{code}/undo/)."""


@extend_schema_view(
    create=extend_schema(responses={201: CouponTemplateSerializer, **error_responses({400: "invalid"})}),
    partial_update=extend_schema(
        responses={
            200: CouponTemplateSerializer,
            **error_responses({400: "invalid", 404: "not_found", 409: "template_in_use"}),
        },
        description="Once a coupon was issued from the template, its terms (kind, amounts, threshold, validity, "
        "stores, categories, stackable_with_points) stay (409 template_in_use); its name, description, quantity "
        "(not below what is issued), limit, automatic issue and `is_active` may change.",
    ),
    destroy=extend_schema(
        responses={204: None, **error_responses({404: "not_found", 409: "template_in_use"})},
        description="Delete a template no coupon was issued from; deactivate the others (`is_active: false`).",
    ),
)
class CouponTemplateViewSet(viewsets.ModelViewSet):
    """Coupon templates: staff and client apps (`coupons:read`) read them; marketers and admins write."""

    serializer_class = CouponTemplateSerializer
    lookup_value_regex = ID_PATTERN
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["kind", "is_active"]
    staff_roles = {"create": MARKETING, "partial_update": MARKETING, "destroy": MARKETING}
    client_scopes = {"list": "coupons:read", "retrieve": "coupons:read", "issue": "coupons:write"}

    def get_queryset(self):
        return CouponTemplate.objects.order_by("-id")

    def _validated(self, request, **kwargs):
        serializer = CouponTemplateSerializer(data=request.data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def create(self, request):
        template = coupons.create_template(actor=access_for(request).actor, values=self._validated(request))
        return Response(CouponTemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        current = self.get_object()
        changes = self._validated(request, partial=True)
        template = coupons.change_template(actor=access_for(request).actor, template_id=current.pk, changes=changes)
        return Response(CouponTemplateSerializer(template).data)

    def destroy(self, request, pk=None):
        current = self.get_object()
        coupons.delete_template(actor=access_for(request).actor, template_id=current.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request={
            "application/json": CouponIssueInputSerializer,
            "multipart/form-data": CouponIssueInputSerializer,
        },
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: CouponIssueResultSerializer,
            202: CouponBatchSerializer,
            **error_responses(
                {
                    400: "invalid / idempotency_key_required",
                    403: "permission_denied",
                    404: "not_found",
                    409: "out_of_stock / limit_reached / template_inactive / idempotency_conflict",
                    413: "request_too_large (an uploaded list over COUPON_LIST_MAX_BYTES)",
                }
            ),
        },
        description=ISSUE_DESCRIPTION,
        extensions={BODY_REQUIRED: True},  # no one field is required, but members, a tag, a segment or a file must come
    )
    @action(detail=True, methods=["post"], parser_classes=[JSONParser, MultiPartParser])
    def issue(self, request, pk=None):
        template = self.get_object()
        key = idempotency_key(request)
        serializer = CouponIssueInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        access = access_for(request)
        scope = f"{idempotency_scope(request)}:coupons"
        if "members" not in data:
            if access.role not in MARKETING:
                raise PermissionDeniedError(_("Only marketers and admins issue to a tag, a segment or a list."))
            member_list, body = None, data
            if "file" in data:
                member_list, body = _uploaded_list(data["file"])
            outcome = coupons.start_batch(
                actor=access.actor,
                scope=scope,
                key=key,
                fingerprint=fingerprint(request, body),
                template_id=template.pk,
                tag=data.get("tag"),
                segment=data.get("segment"),
                member_list=member_list,
            )
            return respond(outcome)
        member_ids = data["members"]
        if access.store_ids is not None:
            # Clerks, store managers and store-bound apps issue to members of their stores only.
            visible = set(
                Member.objects.filter(pk__in=member_ids, home_store_id__in=access.store_ids).values_list(
                    "pk", flat=True
                )
            )
            if set(member_ids) - visible:
                raise NotFoundError(_("No member with one of these ids at your stores."))
        source = CouponSource.API if access.kind == "client" or access.role in MARKETING else CouponSource.CLERK
        outcome = coupons.issue_coupons(
            actor=access.actor,
            scope=scope,
            key=key,
            fingerprint=fingerprint(request, {"members": member_ids}),
            template_id=template.pk,
            member_ids=member_ids,
            source=source,
        )
        return respond(outcome)


def _uploaded_list(upload):
    """(member_list for start_batch, the body to fingerprint: the file's name and a digest of its bytes) of an
    uploaded file; 413 request_too_large past COUPON_LIST_MAX_BYTES (read no further), 400 invalid for a file
    coupon_lists refuses."""
    member_list = coupon_lists.read_member_list(upload)
    return member_list, {"file": member_list.digest, "name": member_list.name}


class CouponBatchViewSet(viewsets.GenericViewSet):
    """/coupon-batches/{id}/: a bulk issue's progress (marketers and admins); /rejects/: an uploaded list's
    rejected lines."""

    queryset = CouponBatch.objects.none()
    lookup_value_regex = ID_PATTERN
    staff_roles = {"*": MARKETING}

    def _batch(self, pk):
        batch = CouponBatch.objects.filter(pk=pk).first()
        if batch is None:
            raise NotFoundError()
        return batch

    @extend_schema(responses={200: CouponBatchSerializer, **error_responses({404: "not_found"})})
    def retrieve(self, request, pk=None):
        return Response(coupons.batch_representation(self._batch(pk)))

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV: line, key, reason"),
            **error_responses({404: "not_found (no such batch, or not an uploaded list)"}),
        },
        description="An uploaded list's rejects file: every line that issued nothing, with its line in the file, "
        "its key and the reason, in line order (complete once the batch is done).",
    )
    @action(detail=True, methods=["get"])
    def rejects(self, request, pk=None):
        batch = self._batch(pk)
        if not batch.list_key:
            raise NotFoundError("This batch was not issued to an uploaded list: it has no rejects file.")
        return coupon_lists.rejects_response(batch)


def _counter_input(request, serializer_class):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    data["code"] = coupons.parse_code(data["code"])
    data["store"] = store_for_write(request, data.get("store"))
    return data


class CouponViewSet(viewsets.GenericViewSet):
    """The counter: check, redeem, undo."""

    queryset = Coupon.objects.none()
    lookup_field = "code"
    lookup_value_regex = CODE_PATTERN
    client_scopes = {"check": "coupons:read", "redeem": "coupons:write"}  # undo: staff only (a clerk)

    @extend_schema(
        request=CouponCheckInputSerializer,
        responses={200: CouponCheckResultSerializer, **error_responses({400: MALFORMED, 404: "not_found"})},
        description=CHECK_DESCRIPTION,
    )
    @action(detail=False, methods=["post"])
    def check(self, request):
        data = _counter_input(request, CouponCheckInputSerializer)
        return Response(
            coupons.check_coupon(
                code=data["code"],
                store=data["store"],
                amount=data["amount"],
                member_id=data.get("member"),
                categories=data.get("categories"),
                points_used=data.get("points_used", 0),
            )
        )

    @extend_schema(
        request=CouponRedeemInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            201: CouponRedeemResultSerializer,
            **error_responses(
                {
                    400: f"{MALFORMED} / idempotency_key_required",
                    404: "not_found",
                    409: "coupon_used / coupon_expired / coupon_not_applicable / idempotency_conflict",
                }
            ),
        },
        description=REDEEM_DESCRIPTION,
    )
    @action(detail=False, methods=["post"])
    def redeem(self, request):
        key = idempotency_key(request)
        data = _counter_input(request, CouponRedeemInputSerializer)
        access = access_for(request)
        outcome = coupons.redeem_coupon(
            actor=access.actor,
            scope=f"{idempotency_scope(request)}:coupons",
            key=key,
            fingerprint=fingerprint(request, data),
            code=data["code"],
            order_no=data["order_no"],
            store=data["store"],
            amount=data["amount"],
            source=purchase_source(request, data["store"]),
            member_id=data.get("member"),
            categories=data.get("categories"),
            points_used=data.get("points_used", 0),
        )
        return respond(outcome)

    @extend_schema(
        request=None,
        responses={
            200: CouponSerializer,
            **error_responses({400: MALFORMED, 404: "not_found", 409: "coupon_not_used / undo_window_passed"}),
        },
        description="A clerk takes back a coupon's use within COUPON_UNDO_MINUTES (10 by default) of it: unused "
        "again, its order cleared. A clerk or store manager only for uses at her stores (else 404). Later, a "
        "refund of the order returns it. Client apps cannot.",
    )
    @action(detail=True, methods=["post"])
    def undo(self, request, code=None):
        access = access_for(request)
        return Response(
            coupons.undo_redemption(actor=access.actor, code=coupons.parse_code(code), store_ids=access.store_ids)
        )


def _coupons_page(view, member_id):
    queryset = view.filter_queryset(
        Coupon.objects.filter(member_id=member_id).select_related("template", "store").order_by("-id")
    )
    page = view.paginate_queryset(queryset)
    return view.get_paginated_response([coupons.coupon_representation(coupon) for coupon in page])


class MemberCouponViewSet(viewsets.GenericViewSet):
    """/members/{id}/coupons/: a member's coupons, for staff who may see her and client apps (`coupons:read`)."""

    lookup_value_regex = ID_PATTERN
    queryset = Coupon.objects.none()
    client_scopes = {"coupons": "coupons:read"}
    filterset_class = CouponFilter

    @extend_schema(responses={200: CouponSerializer(many=True), **error_responses({404: "not_found"})})
    @action(detail=True, methods=["get"])
    def coupons(self, request, pk=None):
        member = get_visible_member_or_404(request, pk)
        return _coupons_page(self, member.pk)


class MyCouponsView(mixins.ListModelMixin, viewsets.GenericViewSet):
    """/me/coupons/: the member's own wallet."""

    permission_classes = [IsMember]
    serializer_class = CouponSerializer
    filterset_class = CouponFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Coupon.objects.none()
        return Coupon.objects.filter(member_id=self.request.user.pk)

    def list(self, request):
        return _coupons_page(self, request.user.pk)
