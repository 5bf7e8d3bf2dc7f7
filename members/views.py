"""HTTP for members, tags, stores, the message log, logins and the member's own profile.

Each view validates input, calls one service, and serialises the result. Who may see which member is decided by
`access_for(request)`: clerks and store-bound client apps see the members of their stores only (others are 404,
so existence does not leak).
"""

import django_filters
from django.conf import settings
from django.db.models import Count
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, access_for
from loyalty.api import BODY_REQUIRED, ID_PATTERN, IsMember, error_responses
from loyalty.errors import DomainError, NotFoundError
from loyalty.messaging import mark_read
from loyalty.models import Message, MessageChannel, MessageStatus
from loyalty.network import client_ip
from loyalty.serializers import JobRunSerializer
from members import services
from members.filters import MemberFilter, MessageFilter
from members.models import Member, MemberStatus, Store, Tag, TagKind
from members.selectors import member_queryset, store_for_write, visible_members
from members.serializers import (
    InboxMessageSerializer,
    MemberLoginSerializer,
    MemberMergeInputSerializer,
    MemberMergeResultSerializer,
    MemberRegistrationSerializer,
    MemberSerializer,
    MemberStatusChangeSerializer,
    MemberTagInputSerializer,
    MemberTokensSerializer,
    MemberUpdateSerializer,
    MessageSerializer,
    OtpRequestSerializer,
    OtpSentSerializer,
    ProfileUpdateSerializer,
    RefreshSerializer,
    StoreSerializer,
    TagSerializer,
    TokenPairSerializer,
    WechatIdentitySerializer,
)

MARKETING = {ROLE_ADMIN, ROLE_MARKETER}
MERGE_IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Optional: a retry with the same key and body answers the original result (the duplicate is the "
    "merge's natural key anyway).",
)


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = MemberSerializer
    filterset_class = MemberFilter
    lookup_value_regex = ID_PATTERN
    client_scopes = {
        "list": "members:read",
        "retrieve": "members:read",
        "create": "members:write",
        "partial_update": "members:write",
        "add_tag": "members:write",
        "remove_tag": "members:write",
        "wechat_identities": "members:read",
        "add_wechat_identity": "members:write",
    }
    staff_roles = {"freeze": {ROLE_ADMIN}, "unfreeze": {ROLE_ADMIN}, "anonymise": {ROLE_ADMIN}, "merge": {ROLE_ADMIN}}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Member.objects.none()
        queryset = visible_members(self.request)
        if self.action == "list" and not self.request.query_params.get("status"):
            # A merged duplicate is not listed as herself: her phone, card number and external id find her survivor.
            queryset = queryset.exclude(status=MemberStatus.MERGED)
        return queryset

    def _respond(self, member, status_code=status.HTTP_200_OK):
        member = member_queryset().get(pk=member.pk)
        return Response(MemberSerializer(member, context=self.get_serializer_context()).data, status=status_code)

    @extend_schema(
        request=MemberRegistrationSerializer,
        responses={201: MemberSerializer, **error_responses({400: "invalid", 409: "member_exists"})},
        extensions={BODY_REQUIRED: True},  # every field is optional alone, but a phone or an external_id must come
    )
    def create(self, request):
        payload = MemberRegistrationSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        member = services.register_member(
            actor=access_for(request).actor,
            phone=data.get("phone"),
            external_id=data.get("external_id"),
            name=data["name"],
            gender=data["gender"],
            birthday=data.get("birthday"),
            email=data["email"],
            store=store_for_write(request, data.get("store")),
            channel=data["channel"],
            referral_code=data.get("referral_code"),
            consents=data.get("consents"),
        )
        return self._respond(member, status.HTTP_201_CREATED)

    @extend_schema(
        request=MemberUpdateSerializer,
        responses={200: MemberSerializer, **error_responses({400: "invalid", 404: "not_found", 409: "member_exists"})},
    )
    def partial_update(self, request, pk=None):
        member = self.get_object()
        payload = MemberUpdateSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        changes = dict(payload.validated_data)
        consents = changes.pop("consents", None)
        if "home_store" in changes:
            changes["home_store"] = store_for_write(request, changes["home_store"])
        member = services.update_member(
            actor=access_for(request).actor, member=member, changes=changes, consents=consents
        )
        return self._respond(member)

    @extend_schema(
        request=MemberTagInputSerializer,
        responses={
            201: MemberSerializer,
            200: MemberSerializer,
            **error_responses({400: "invalid", 404: "not_found", 409: "member_merged / member_anonymised"}),
        },
        description="Tag a member by hand: 201 when added, 200 when she already had the tag.",
    )
    @action(detail=True, methods=["post"], url_path="tags")
    def add_tag(self, request, pk=None):
        member = self.get_object()
        payload = MemberTagInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        added = services.add_member_tag(
            actor=access_for(request).actor, member=member, tag=payload.validated_data["tag"]
        )
        return self._respond(member, status.HTTP_201_CREATED if added else status.HTTP_200_OK)

    @extend_schema(
        request=None,
        responses={204: None, **error_responses({404: "not_found"})},
        description="Remove a manual tag; removing one the member does not have is a no-op (204).",
    )
    @action(detail=True, methods=["delete"], url_path=r"tags/(?P<tag_code>[-a-zA-Z0-9_]+)")
    def remove_tag(self, request, pk=None, tag_code=None):
        member = self.get_object()
        services.remove_member_tag(actor=access_for(request).actor, member=member, tag_code=tag_code)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        responses={200: WechatIdentitySerializer(many=True), **error_responses({404: "not_found"})},
        description="The member's WeChat identities (openid per app id, unionid).",
    )
    @action(detail=True, methods=["get"], url_path="wechat-identities", pagination_class=None)
    def wechat_identities(self, request, pk=None):
        member = self.get_object()
        rows = member.wechat_identities.order_by("id")
        return Response(WechatIdentitySerializer(rows, many=True).data)

    @extend_schema(
        request=WechatIdentitySerializer,
        responses={
            201: WechatIdentitySerializer,
            200: WechatIdentitySerializer,
            **error_responses(
                {400: "invalid", 404: "not_found", 409: "wechat_identity_taken / member_merged / member_anonymised"}
            ),
        },
        description="Bind a WeChat identity to the member (the mini-program's or official account's openid, and "
        "the unionid when WeChat gives one): 201 when added, 200 when she had it already. An openid of an app "
        "belongs to one member: bound to another, 409 `wechat_identity_taken`. Find a member by it with "
        "`GET /api/v1/members/?wechat_openid=...&wechat_app_id=...` or `?unionid=...`.",
    )
    @wechat_identities.mapping.post
    def add_wechat_identity(self, request, pk=None):
        member = self.get_object()
        payload = WechatIdentitySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        identity, created = services.add_wechat_identity(
            actor=access_for(request).actor, member=member, **payload.validated_data
        )
        return Response(
            WechatIdentitySerializer(identity).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def _status_change(self, request, service):
        member = self.get_object()
        payload = MemberStatusChangeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        access = access_for(request)
        member = service(actor=access.actor, member=member, reason=payload.validated_data["reason"], role=access)
        return self._respond(member)

    @extend_schema(
        request=MemberStatusChangeSerializer,
        responses={200: MemberSerializer, **error_responses({409: "member_merged / member_anonymised"})},
        description="Freeze a member (admin): she earns nothing and cannot redeem until unfrozen.",
    )
    @action(detail=True, methods=["post"])
    def freeze(self, request, pk=None):
        return self._status_change(request, services.freeze_member)

    @extend_schema(
        request=MemberStatusChangeSerializer,
        responses={200: MemberSerializer, **error_responses({409: "member_merged / member_anonymised"})},
    )
    @action(detail=True, methods=["post"])
    def unfreeze(self, request, pk=None):
        return self._status_change(request, services.unfreeze_member)

    @extend_schema(
        request=MemberMergeInputSerializer,
        parameters=[MERGE_IDEMPOTENCY_HEADER],
        responses={
            201: MemberMergeResultSerializer,
            200: MemberMergeResultSerializer,
            **error_responses(
                {
                    400: "invalid",
                    403: "permission_denied",
                    404: "not_found",
                    409: "already_merged / member_merged / member_anonymised / member_frozen / idempotency_conflict",
                }
            ),
        },
        description=(
            "Merge the member `duplicate` into this one (admin; irreversible). Her open points lots move with their "
            "own available and expiry dates (a negative balance as debt), balances and lifetime figures add up, "
            "both ledgers show a `merge` entry (they sum to zero); her growth value is mirrored onto this member "
            "with its dates, purchases, redemptions and tags move, this member keeps the better tier (history "
            "reason `merge`), and takes the duplicate's phone / external_id when she has none. The duplicate is "
            "closed: status `merged`, `merged_into` this member; her phone, card number and external id now find "
            "this member (lists, OTP login), and any write for her answers 409 `member_merged`.\n\n"
            "The same duplicate merged into the same member again answers 200 with the original result; with "
            "the same Idempotency-Key and body, the original 201. 400 `invalid` for a merge into herself or an "
            "unknown duplicate; 409 `already_merged` (she was merged into someone else: `merged_into`), "
            "`member_merged` (this member was herself merged away: merge into `merged_into`), "
            "`member_anonymised`, `member_frozen` (unfreeze first)."
        ),
    )
    @action(detail=True, methods=["post"])
    def merge(self, request, pk=None):
        survivor = self.get_object()
        payload = MemberMergeInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            raise ValidationError({"Idempotency-Key": [_("At most 200 characters.")]})
        access = access_for(request)
        outcome = services.merge_members(
            actor=access.actor,
            survivor_id=survivor.pk,
            duplicate_id=int(payload.validated_data["duplicate"]),
            reason=payload.validated_data["reason"],
            idempotency_scope=f"{access.kind}:{access.principal.pk}",
            idempotency_key=key,
        )
        response = Response(outcome.result, status=outcome.status_code)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        request=MemberStatusChangeSerializer,
        responses={200: MemberSerializer},
        description="Erase the member's personal data on her request (admin; irreversible). Her card "
        "number, ledger and purchases stay.",
    )
    @action(detail=True, methods=["post"])
    def anonymise(self, request, pk=None):
        return self._status_change(request, services.anonymise_member)


class TagViewSet(viewsets.ModelViewSet):
    """Tags: every staff role and client apps read them; marketers and admins write manual tags."""

    serializer_class = TagSerializer
    lookup_field = "code"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filterset_fields = ["kind", "is_active"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    client_scopes = {"list": "members:read", "retrieve": "members:read"}
    staff_roles = {"create": MARKETING, "partial_update": MARKETING, "destroy": MARKETING, "recompute": MARKETING}

    def get_queryset(self):
        return Tag.objects.annotate(member_count=Count("member_tags"))

    @extend_schema(
        request=None,
        responses={202: JobRunSerializer, **error_responses({404: "not_found"})},
        description="Recompute a rule tag now, as of yesterday (the last business date that has ended; the "
        "nightly rule_tags job does all of them).",
    )
    @action(detail=True, methods=["post"])
    def recompute(self, request, code=None):
        from loyalty.tasks import dispatch_job

        tag = self.get_object()
        if tag.kind != TagKind.RULE:
            raise DomainError(_("Only rule-based tags are recomputed."), code="invalid", status=400)
        # As of the job's default date (yesterday): a run may not act for a day that has not ended.
        run = dispatch_job(
            "rule_tags", None, params={"tags": [tag.code]}, force=True, triggered_by=access_for(request).actor
        )
        run.refresh_from_db()
        return Response(JobRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    def perform_destroy(self, instance):
        if instance.kind == TagKind.RULE:
            raise DomainError(
                _("Rule-based tags are switched off (is_active=false), not deleted."), code="tag_is_rule_based"
            )
        instance.delete()


class StoreViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = StoreSerializer
    lookup_field = "code"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    client_scopes = {"list": "members:read", "retrieve": "members:read"}
    queryset = Store.objects.all()


class MessageLogViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The staff message log. Clerks see messages to members of their stores only."""

    serializer_class = MessageSerializer
    filterset_class = MessageFilter

    def get_queryset(self):
        queryset = Message.objects.all()
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        access = access_for(self.request)
        if access.store_ids is not None:
            queryset = queryset.filter(member__home_store_id__in=access.store_ids)
        return queryset


# --- Authentication -------------------------------------------------------------------------------------------


class OtpView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=OtpRequestSerializer,
        responses={202: OtpSentSerializer, **error_responses({400: "invalid", 429: "throttled"})},
        auth=[],
        summary="Send a 6-digit login code to a phone by SMS.",
        description="At most one code per phone per `retry_after` seconds and a few per hour, and a limit per client "
        "address (behind a trusted proxy: the address it saw); 429 `throttled` with `Retry-After` beyond, nothing "
        "sent.",
    )
    def post(self, request):
        payload = OtpRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.request_login_code(phone=payload.validated_data["phone"], ip_address=client_ip(request))
        body = {
            "sent": True,
            "expires_in": int(settings.OTP_TTL.total_seconds()),
            "retry_after": int(settings.OTP_RESEND_INTERVAL.total_seconds()),
        }
        return Response(OtpSentSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class MemberTokenView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=MemberLoginSerializer,
        responses={
            200: MemberTokensSerializer,
            **error_responses({400: "invalid / otp_invalid / otp_expired", 429: "throttled"}),
        },
        auth=[],
        summary="Exchange a login code for member tokens (registers a new phone).",
        description="The code is checked against the newest code the caller's address asked for (else the phone's "
        "newest). Wrong codes are counted per code: a few from the address that asked for it, a few from all others; "
        "past that the code is burnt for that side (429 `throttled`): ask for a new one after `Retry-After`.",
    )
    def post(self, request):
        payload = MemberLoginSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        member, created = services.verify_login_code(**payload.validated_data, ip_address=client_ip(request))
        member = member_queryset().get(pk=member.pk)
        body = {**services.issue_member_tokens(member), "created": created, "member": member}
        return Response(MemberTokensSerializer(body).data)


class MemberTokenRefreshView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RefreshSerializer,
        responses={200: TokenPairSerializer, **error_responses({401: "not_authenticated"})},
        auth=[],
        summary="New member tokens for a refresh token (rotation: the refresh token sent is used up).",
        description="Answers a new access token and the next refresh token of the same login (it expires when the "
        "login does). A refresh token works once: presented again, it revokes every token of its login (401). "
        "401 `not_authenticated` also for an unknown, expired or revoked token (logout), and after the member was "
        "frozen, anonymised, merged or given a new phone: she logs in again.",
    )
    def post(self, request):
        payload = RefreshSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        tokens = services.refresh_member_tokens(payload.validated_data["refresh"])
        return Response(TokenPairSerializer(tokens).data)


class MemberTokenLogoutView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RefreshSerializer,
        responses={204: None, **error_responses({400: "invalid", 401: "not_authenticated"})},
        auth=[],
        summary="Log a member out: revoke the refresh token sent and every other token of its login.",
        description="Idempotent (204 again for a revoked token); 401 `not_authenticated` for a token never issued. "
        "Her other logins (other devices) stay; access tokens already issued expire within their short lifetime.",
    )
    def post(self, request):
        payload = RefreshSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        services.revoke_member_tokens(payload.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- The member herself ---------------------------------------------------------------------------------------


class MeView(APIView):
    permission_classes = [IsMember]

    def _member(self):
        return member_queryset().get(pk=self.request.user.pk)

    @extend_schema(responses={200: MemberSerializer})
    def get(self, request):
        return Response(MemberSerializer(self._member()).data)

    @extend_schema(
        request=ProfileUpdateSerializer, responses={200: MemberSerializer, **error_responses({400: "invalid"})}
    )
    def patch(self, request):
        member = self._member()
        payload = ProfileUpdateSerializer(data=request.data, partial=True, context={"member": member})
        payload.is_valid(raise_exception=True)
        changes = dict(payload.validated_data)
        consents = changes.pop("consents", None)
        services.update_member(actor=str(request.user), member=member, changes=changes, consents=consents)
        return Response(MemberSerializer(self._member()).data)


class InboxFilter(django_filters.FilterSet):
    # `true` or `false` only: a BooleanFilter takes any other word as "no filter" and would answer every message.
    read = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")], method="filter_read", help_text="true or false"
    )
    kind = django_filters.CharFilter()

    def filter_read(self, queryset, name, value):
        return queryset.filter(read_at__isnull=value == "false")

    class Meta:
        model = Message
        fields = []


class MyMessagesView(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The member's in-app inbox: her inbox messages, newest first, read or not (`?read=false`: the unread ones)."""

    permission_classes = [IsMember]
    serializer_class = InboxMessageSerializer
    filterset_class = InboxFilter
    lookup_value_regex = ID_PATTERN

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return Message.objects.filter(
            member_id=self.request.user.pk, channel=MessageChannel.INBOX, status=MessageStatus.SENT
        )

    @extend_schema(
        request=None,
        responses={200: InboxMessageSerializer, **error_responses({404: "not_found"})},
        description="Mark one of her inbox messages read (again: no change).",
    )
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        message = mark_read(member_id=request.user.pk, message_id=int(pk))
        if message is None:
            raise NotFoundError()
        return Response(InboxMessageSerializer(message).data)
