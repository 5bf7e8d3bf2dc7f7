"""DRF authentication: `Api-Key <key>` for client apps, `Bearer <token>` for staff and members, and the admin
session for staff. A malformed or unknown credential is a 401 (never an anonymous pass-through)."""

from django.utils.translation import gettext
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from loyalty.access import ClientAppPrincipal
from loyalty.credentials import STAFF_TOKEN_PREFIX, authenticate_api_key, staff_user_for_token
from loyalty.registry import ExtensionPoint

bearer_token_readers = ExtensionPoint(
    "bearer_token_readers",
    "reader(token) -> (user, auth) or None: a bearer token that is not a staff token (members register the "
    "reader of their signed access tokens). The first reader that recognises the token wins.",
    keyed=True,
)


def _credential(request, keyword):
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != keyword.lower():
        return None
    value = value.strip()
    if not value or " " in value:
        raise exceptions.AuthenticationFailed(gettext("Malformed %(keyword)s credentials.") % {"keyword": keyword})
    return value


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        key = _credential(request, self.keyword)
        if key is None:
            return None
        found = authenticate_api_key(key)
        if found is None:
            raise exceptions.AuthenticationFailed(_("Invalid or inactive API key."))
        client, store_ids = found
        return ClientAppPrincipal(client, store_ids), client

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Staff tokens start with `stf_`; anything else goes to the registered readers (member access tokens)."""

    keyword = "Bearer"

    def authenticate(self, request):
        token = _credential(request, self.keyword)
        if token is None:
            return None
        if token.startswith(STAFF_TOKEN_PREFIX):
            user = staff_user_for_token(token)
            if user is None:
                raise exceptions.AuthenticationFailed(_("Invalid or expired staff token."))
            return user, token
        for reader in bearer_token_readers:
            found = reader(token)
            if found is not None:
                return found
        raise exceptions.AuthenticationFailed(_("Invalid or expired member token."))

    def authenticate_header(self, request):
        return self.keyword


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """The admin's session, so a logged-in clerk can use the browsable API and Swagger UI."""


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "loyalty.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Client apps: `Api-Key <key>` (from `manage.py create_api_client`).",
        }


class BearerScheme(OpenApiAuthenticationExtension):
    target_class = "loyalty.authentication.BearerTokenAuthentication"
    name = "Bearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "Staff token from /api/v1/auth/staff-token or member access token from "
            "/api/v1/auth/member-token.",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "loyalty.authentication.StaffSessionAuthentication"
    name = "AdminSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "The admin's session (staff), with the CSRF token for writes.",
        }
