"""HTTP for the platform: staff login (bearer tokens) and the nightly job runs."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from loyalty.access import staff_role
from loyalty.api import ID_PATTERN, error_body, error_responses
from loyalty.credentials import issue_staff_token, revoke_staff_token
from loyalty.login_guard import authenticate_staff
from loyalty.models import JobRun
from loyalty.serializers import JobRunSerializer, StaffLoginSerializer, StaffTokenSerializer


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
