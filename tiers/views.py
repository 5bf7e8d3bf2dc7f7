"""HTTP for the tier ladder and a member's standing."""

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty.access import MemberPrincipal
from loyalty.api import ID_PATTERN, IsMember, error_responses
from members.selectors import get_visible_member_or_404
from tiers import selectors
from tiers.models import Tier
from tiers.serializers import MemberStandingSerializer, TierSerializer


class TierLadderView(APIView):
    """The ladder with thresholds and benefits: staff, client apps and members read it."""

    client_scopes = {"GET": "members:read"}

    def get_permissions(self):
        if isinstance(self.request.user, MemberPrincipal):
            return [IsMember()]
        return super().get_permissions()

    @extend_schema(responses={200: TierSerializer(many=True)})
    def get(self, request):
        return Response([selectors.tier_representation(tier) for tier in Tier.objects.order_by("rank")])


class MemberTierViewSet(viewsets.GenericViewSet):
    lookup_value_regex = ID_PATTERN
    queryset = Tier.objects.none()
    client_scopes = {"standing": "members:read"}

    @extend_schema(responses={200: MemberStandingSerializer, **error_responses({404: "not_found"})})
    @action(detail=True, methods=["get"], url_path="tier")
    def standing(self, request, pk=None):
        member = get_visible_member_or_404(request, pk)
        return Response(selectors.member_standing(member.pk))


class MyTierView(APIView):
    permission_classes = [IsMember]

    @extend_schema(responses={200: MemberStandingSerializer})
    def get(self, request):
        return Response(selectors.member_standing(request.user.pk))
