"""Shared API plumbing: who is calling (principals and access), permissions, pagination, and the one place where
every failure under /api/ becomes the error shape of API.md: {"code", "detail", "errors"?}.
"""

import contextvars
import csv
import json
import logging
import sqlite3
import threading

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.db.backends.signals import connection_created
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.utils.functional import cached_property
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views import defaults as django_defaults
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import exceptions, parsers, permissions, renderers, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.throttling import ScopedRateThrottle

from loyalty.access import ClientAppPrincipal, MemberPrincipal, staff_role
from loyalty.csv_cells import neutralise_row
from loyalty.errors import DomainError, InvalidInput
from loyalty.errors import Throttled as ThrottledError
from loyalty.network import client_ip

logger = logging.getLogger(__name__)

# --- Permissions ----------------------------------------------------------------------------------------------

ID_PATTERN = r"[0-9]{1,18}"  # ids are bigints; longer digit strings cannot exist and must not reach the DB


def _required(view, request, attribute):
    """A view declares per-action requirements as {action or method: value}; '*' is the fallback."""
    mapping = getattr(view, attribute, None) or {}
    action = getattr(view, "action", None)
    for key in (action, request.method, "*"):
        if key in mapping:
            return mapping[key]
    return None


class IsStaffOrClientApp(permissions.BasePermission):
    """Staff with a role, or a client app holding the view's scope. Member tokens are refused here: they reach
    only the /me/ views, which use IsMember.

    Views narrow it with `client_scopes = {"list": "members:read", "POST": "members:write"}` and
    `staff_roles = {"POST": {"admin", "marketer"}}` (default: every staff role).
    """

    message = gettext_lazy("You do not have permission to perform this action.")

    def has_permission(self, request, view):
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        if isinstance(user, MemberPrincipal):
            self.message = _("A member token reaches only /api/v1/me/.")
            return False
        if isinstance(user, ClientAppPrincipal):
            if user.store_ids is not None and not user.store_ids:
                # Bound to no store and not to all stores: it acts for nobody (never "every store" by default).
                self.message = _("This API key is bound to no store: an admin binds it to stores, or to all stores.")
                return False
            scope = _required(view, request, "client_scopes")
            if scope is None:
                self.message = _("Client apps cannot use this endpoint.")
                return False
            if scope not in user.scopes:
                self.message = _("This API key lacks the scope %(scope)s.") % {"scope": scope}
                return False
            return True
        role = staff_role(user)
        if role is None:
            self.message = _("Your account has no staff role (clerk, marketer or admin).")
            return False
        roles = _required(view, request, "staff_roles")
        if roles is not None and role not in roles:
            self.message = _("The %(role)s role cannot do this.") % {"role": role}
            return False
        return True


class IsMember(permissions.BasePermission):
    message = gettext_lazy("This endpoint needs a member token.")

    def has_permission(self, request, view):
        return isinstance(request.user, MemberPrincipal)


class FailOpenScopedRateThrottle(ScopedRateThrottle):
    """A rate limit that lets the request through when its cache (Redis) is down, rather than failing a login
    because the counter cannot be read. Logged, so the outage is seen. The caller is told by loyalty.network's
    client_ip (X-Forwarded-For only behind settings.NUM_PROXIES proxies), never by a header the client writes."""

    def get_ident(self, request):
        return client_ip(request) or ""

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:  # the cache backend's connection errors
            logger.warning("rate limit skipped: cache unavailable", exc_info=True)
            return True


# --- Pagination -----------------------------------------------------------------------------------------------


class IdCursorPagination(CursorPagination):
    """Cursor pages, newest first by id; `page_size` up to 500, and a clear 400 beyond that."""

    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = "-id"

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise exceptions.ValidationError(
                {
                    "page_size": [
                        _("Must be an integer from 1 to %(max_page_size)s.") % {"max_page_size": self.max_page_size}
                    ]
                }
            )
        return int(raw)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({"cursor": [_("Invalid cursor.")]}) from None


# --- The database: the web's timeouts, and outages ------------------------------------------------------------

_serving_request = contextvars.ContextVar("loyalty_serving_request", default=False)


class DatabaseTimeoutsMiddleware:
    """PostgreSQL connections opened while serving a request get the web's lock_timeout and statement_timeout
    (settings.WEB_DB_LOCK_TIMEOUT_SECONDS, WEB_DB_STATEMENT_TIMEOUT_SECONDS), so a request stuck behind a lock or
    in a runaway statement fails (503, see database_unavailable) instead of holding a worker. Connections opened
    outside a request (Celery workers, management commands: the nightly jobs) are left without them."""

    def __init__(self, get_response):
        self.get_response = get_response
        connection_created.connect(_set_web_timeouts, dispatch_uid="loyalty.api.web_timeouts")

    def __call__(self, request):
        token = _serving_request.set(True)
        try:
            return self.get_response(request)
        finally:
            _serving_request.reset(token)


def _set_web_timeouts(sender, connection, **kwargs):
    if connection.vendor != "postgresql" or not _serving_request.get():
        return
    if settings.DATABASE_POOL_MODE == "transaction":
        return  # a session setting would stay on a pooled server session for other clients: set on the role instead
    limits = [
        (name, f"{max(1, round(seconds * 1000))}ms")
        for name, seconds in (
            ("lock_timeout", settings.WEB_DB_LOCK_TIMEOUT_SECONDS),
            ("statement_timeout", settings.WEB_DB_STATEMENT_TIMEOUT_SECONDS),
        )
        if seconds
    ]  # 0: the server's own setting stays
    if not limits:
        return
    # Once per session (a persistent connection keeps them), on the driver's cursor: not a query of the request.
    with connection.connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + ", ".join(["set_config(%s, %s, false)"] * len(limits)),
            [value for limit in limits for value in limit],
        )


RETRY_AFTER_SECONDS = 2  # what a 503 for a busy or unreachable database asks the client to wait
# SQLSTATE classes a retry can get past: connection exception, transaction rollback (deadlock, serialization
# failure), insufficient resources (too many connections), operator intervention (statement timeout, a session
# terminated, the server shutting down), system error; and 55P03, lock_not_available (lock timeout).
_TRANSIENT_SQLSTATE_CLASSES = {"08", "40", "53", "57", "58"}


def database_unavailable(exc):
    """True when `exc` is the database being busy or out of reach, not a bug: a lock or statement timeout, a
    deadlock, the session terminated or its connection lost (OperationalError), or a connection already closed
    (InterfaceError). The request's transaction did not commit, or (the connection broke at COMMIT) its outcome
    is unknown; either way a retry with the same idempotency key or order number is safe."""
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        return False  # the embedded demo database: its errors stay 500s, as before
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    # psycopg 3's sqlstate (psycopg2's pgcode); None when the connection was lost or refused.
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return state is None or state == "55P03" or state[:2] in _TRANSIENT_SQLSTATE_CLASSES


def _unavailable(request, exc):
    if request is not None:
        logger.warning(
            "database unavailable on %s %s: %s: %s",
            request.method,
            request.path,
            type(exc.__cause__ or exc).__name__,
            (str(exc).strip().splitlines() or [""])[0],
        )
    body = error_body(
        "temporarily_unavailable",
        _(
            "The database is busy or out of reach; try again in a moment. "
            "Retrying with the same Idempotency-Key or order number is safe."
        ),
    )
    return body, {"Retry-After": str(RETRY_AFTER_SECONDS)}


# --- Request bodies: size and depth ---------------------------------------------------------------------------

MAX_JSON_DEPTH = 64  # arrays and objects inside each other; no request of the API comes near it


def _too_deep(data):
    """True when `data` nests arrays/objects more than MAX_JSON_DEPTH deep (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
    return False


def _nesting_error():
    return exceptions.ValidationError(
        {"non_field_errors": [_("The JSON body nests deeper than %(depth)s levels.") % {"depth": MAX_JSON_DEPTH}]}
    )


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a 400 `invalid` (not a 500) for a body nested past the interpreter's recursion limit,
    and for one nested deeper than MAX_JSON_DEPTH (which later code walking it recursively could not follow)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise _nesting_error() from None
        if _too_deep(data):
            raise _nesting_error()
        return data


def _too_large_body():
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_body(
        "request_too_large",
        _("The request body is larger than the %(limit)s bytes allowed.") % {"limit": limit},
    )


def _declared_too_large(request):
    """A Content-Length over DATA_UPLOAD_MAX_MEMORY_SIZE: refused before anything reads (or authenticates) it."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return limit is not None and length > limit


# --- Content negotiation -------------------------------------------------------------------------------------


class RememberingContentNegotiation(DefaultContentNegotiation):
    """DRF's content negotiation, its choice remembered per (the view's renderer classes, the format asked for, the
    Accept header): the same inputs always give the same renderer and media type, and parsing the Accept header
    again on every request was about 5 % of a points summary read's CPU (issue 14). A refusal (406, or 404 for an
    unknown format) is never remembered: it is worked out, and raised, each time. At most MAX_REMEMBERED choices
    (Accept headers are few: clients send one or two shapes), then the others are worked out each time."""

    MAX_REMEMBERED = 512
    _remembered = {}

    def select_renderer(self, request, renderers, format_suffix=None):
        query_format = None if format_suffix else request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (
            tuple(type(renderer) for renderer in renderers),
            format_suffix,
            query_format,
            request.META.get("HTTP_ACCEPT"),
        )
        found = self._remembered.get(key)
        if found is not None:
            return renderers[found[0]], found[1]
        renderer, media_type = super().select_renderer(request, renderers, format_suffix)
        if len(self._remembered) < self.MAX_REMEMBERED:
            index = next(i for i, candidate in enumerate(renderers) if candidate is renderer)
            self._remembered[key] = (index, media_type)
        return renderer, media_type


# --- Input serializers of the hot paths -----------------------------------------------------------------------

_shared_fields_lock = threading.Lock()


class SharedFieldsSerializer(serializers.Serializer):
    """An input serializer whose fields are built and bound once per class and shared by its instances.

    DRF deep-copies every declared field for every serializer instance (so that one instance may change its fields
    without touching another's); each copy runs the field's __init__ again. On the purchase path that copying was
    about 12 % of a request's CPU (issue 14), for fields no view changes. Validation is the same code on the same
    field classes, so the validated data and the errors are exactly the serializer's (tests/points/
    test_input_validation.py compares both ways over random bodies).

    For input serializers only, whose fields nobody changes per instance and whose validation reads neither the
    context nor `partial`: an instance made with a context or partial=True takes its own copies, as DRF does.

    One set per language: DRF's length and range messages (`lazy_format`) keep the text of their first rendering,
    so fields shared across languages would answer every later request in the language of the first error."""

    @cached_property
    def fields(self):
        if self.partial or self._context:
            return super().fields
        cls = type(self)
        language = get_language()
        shared = cls.__dict__.get("_shared_fields", {}).get(language)
        if shared is None:
            with _shared_fields_lock:
                by_language = cls.__dict__.get("_shared_fields", {})
                shared = by_language.get(language)
                if shared is None:
                    # Bound to a template instance of the class (no data, no context), never to a request's.
                    shared = serializers.Serializer.fields.func(cls())
                    cls._shared_fields = {**by_language, language: shared}
        return shared


# --- Errors ---------------------------------------------------------------------------------------------------

_CODES = {
    exceptions.NotAuthenticated: (401, "not_authenticated"),
    exceptions.AuthenticationFailed: (401, "not_authenticated"),
    exceptions.PermissionDenied: (403, "permission_denied"),
    exceptions.NotFound: (404, "not_found"),
    exceptions.MethodNotAllowed: (405, "method_not_allowed"),
    exceptions.NotAcceptable: (406, "not_acceptable"),
    exceptions.UnsupportedMediaType: (415, "unsupported_media_type"),
    exceptions.Throttled: (429, "throttled"),
    exceptions.ParseError: (400, "parse_error"),
}


def flatten_errors(detail, prefix=""):
    """DRF's nested error detail as {"field": [...], "lines.0.quantity": [...]}."""
    if isinstance(detail, dict):
        out = {}
        for key, value in detail.items():
            name = "non_field_errors" if key in ("non_field_errors", "__all__") else str(key)
            out.update(flatten_errors(value, f"{prefix}{name}" if not prefix else f"{prefix}.{name}"))
        return out
    if isinstance(detail, list) and detail and all(isinstance(item, (dict, list)) for item in detail):
        out = {}
        for index, item in enumerate(detail):
            if item:
                out.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    messages = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(message) for message in messages]}


def error_body(code, detail, errors=None, **extra):
    body = {"code": code, "detail": str(detail)}
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return body


def validation_response(errors):
    fields = ", ".join(errors)
    return Response(error_body("invalid", _("Invalid input: %(fields)s.") % {"fields": fields}, errors), status=400)


def exception_handler(exc, context):
    """DRF's exception handler for the whole API: every failure in the shape of API.md."""
    from rest_framework.views import set_rollback  # imported here: DRF imports this module while loading views

    if isinstance(exc, RequestDataTooBig):  # a body longer than its Content-Length said (or without one)
        set_rollback()
        return Response(_too_large_body(), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))

    if isinstance(exc, InvalidInput):
        set_rollback()
        return validation_response(exc.errors)
    if isinstance(exc, DomainError):
        set_rollback()
        headers = {}
        if isinstance(exc, ThrottledError) and exc.retry_after:
            headers["Retry-After"] = str(int(exc.retry_after))
        return Response(error_body(exc.code, exc.detail, **exc.extra), status=exc.status, headers=headers)
    if isinstance(exc, exceptions.ValidationError):
        set_rollback()
        return validation_response(flatten_errors(exc.detail))
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        status, code = next(
            (mapped for klass, mapped in _CODES.items() if isinstance(exc, klass)),
            (exc.status_code, exc.default_code),
        )
        headers = {}
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            request = context.get("request")
            view = context.get("view")
            header = view.get_authenticate_header(request) if view and request else None
            headers["WWW-Authenticate"] = header or "Api-Key"
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(code, exc.detail), status=status, headers=headers)
    if database_unavailable(exc):
        set_rollback()
        body, headers = _unavailable(context.get("request"), exc)
        return Response(body, status=503, headers=headers)
    return None  # unexpected: ApiErrorMiddleware logs it and answers 500 in JSON


_STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    429: "throttled",
    500: "server_error",
}


def _is_api(request):
    return request.path.startswith("/api/")


class ApiErrorMiddleware:
    """Unexpected exceptions under /api/ answer a JSON 500 (logged), never Django's HTML page, even with DEBUG.
    A body declared larger than DATA_UPLOAD_MAX_MEMORY_SIZE is answered 413 `request_too_large` before any view
    (or authentication) runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _is_api(request) and _declared_too_large(request):
            return JsonResponse(_too_large_body(), status=413)
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and _is_api(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            # Django's own pages (a URL that matches nothing, DEBUG's technical 404, CSRF failures) in JSON.
            code = _STATUS_CODES.get(response.status_code, "error")
            return JsonResponse(error_body(code, response.reason_phrase), status=response.status_code)
        return response

    def process_exception(self, request, exception):
        if not _is_api(request):
            return None
        if database_unavailable(exception):
            body, headers = _unavailable(request, exception)
            return JsonResponse(body, status=503, headers=headers)
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(_too_large_body(), status=413)
        logger.exception("Unhandled error on %s %s", request.method, request.path)
        return JsonResponse(error_body("server_error", "An unexpected error occurred; it has been logged."), status=500)


def handler400(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("invalid", "Bad request."), status=400)
    return django_defaults.bad_request(request, exception)


def handler403(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)
    return django_defaults.permission_denied(request, exception)


def handler404(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return django_defaults.page_not_found(request, exception)


def handler500(request):
    if _is_api(request):
        return JsonResponse(error_body("server_error", "An unexpected error occurred; it has been logged."), status=500)
    return django_defaults.server_error(request)


# --- Schema ---------------------------------------------------------------------------------------------------


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string", "format": "decimal"}]})
class _PointsOrMoneyField(serializers.Field):
    """insufficient_points counts points (an integer); insufficient_balance counts money (a decimal string)."""


class ErrorSerializer(serializers.Serializer):
    """The error shape of API.md. `code` and `detail` are always there; the other fields belong to the codes named
    in their descriptions. The schema closes the object (additionalProperties false), so a new field that an error
    carries must be declared here first: the API tests check every error body against it."""

    code = serializers.CharField(help_text="machine code, e.g. invalid, not_found, insufficient_points")
    detail = serializers.CharField(help_text="a sentence for people")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="validation errors by field (400 invalid only)",
    )
    # The fields below belong to the codes their help texts name (every DomainError's extra fields; a test in
    # tests/loyalty/test_schema.py finds them in the code and fails when one is missing here).
    id = serializers.CharField(required=False, help_text="member_exists: the existing member's id")
    member_no = serializers.CharField(required=False, help_text="member_exists: the existing member's number")
    member = serializers.CharField(required=False, help_text="member_merged, member_frozen, member_anonymised")
    merged_into = serializers.CharField(
        required=False, allow_null=True, help_text="member_merged, already_merged: the member she was merged into"
    )
    available = _PointsOrMoneyField(
        required=False, help_text="insufficient_points: points available; insufficient_balance: money available"
    )
    required = _PointsOrMoneyField(
        required=False, help_text="insufficient_points: points asked for; insufficient_balance: money asked for"
    )
    redeemed = serializers.IntegerField(required=False, help_text="limit_reached: redemptions so far")
    limit = serializers.IntegerField(
        required=False,
        help_text="limit_reached: the reward's per-member limit; adjustment_limit, approval_limit: the most points "
        "one adjustment may move; transfer_limit: points a day",
    )
    per = serializers.ChoiceField(
        choices=["actor", "member"], required=False, help_text="adjustment_limit: whose daily total is spent"
    )
    daily_total = serializers.IntegerField(required=False, help_text="adjustment_limit: points a day")
    adjusted_today = serializers.IntegerField(required=False, help_text="adjustment_limit: points adjusted today")
    left = _PointsOrMoneyField(
        required=False,
        help_text="adjustment_limit: points left today; daily_limit: money left today; out_of_stock (coupons): "
        "coupons left",
    )
    sent_today = serializers.IntegerField(required=False, help_text="transfer_limit: points sent today")
    daily_limit = serializers.CharField(required=False, help_text="daily_limit: money a day (decimal string)")
    spent_today = serializers.CharField(required=False, help_text="daily_limit: money spent today (decimal string)")
    max_points = serializers.IntegerField(required=False, help_text="deduction_limit: the most points this order takes")
    refundable = serializers.CharField(
        required=False, help_text="refund_exceeds_purchase, refund_exceeds_payment: what is left to refund"
    )
    unspent = serializers.CharField(required=False, help_text="withdrawal_exceeds_unspent: unspent principal")
    purchase = serializers.CharField(required=False, help_text="already_recorded: the purchase recorded earlier")
    refund = serializers.CharField(required=False, help_text="already_recorded: the refund recorded earlier")
    top_up = serializers.CharField(required=False, help_text="already_recorded: the top-up recorded earlier")
    payment = serializers.CharField(required=False, help_text="already_paid: the payment recorded earlier")
    version = serializers.CharField(required=False, help_text="overlapping_version: the version in the way")
    replaced_by = serializers.CharField(required=False, help_text="version_replaced: the version that replaced it")
    request_status = serializers.CharField(required=False, help_text="already_decided: the request's status")
    tier = serializers.CharField(required=False, allow_null=True, help_text="not_eligible: the member's tier")
    eligible = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="not_eligible: the tiers the reward is for"
    )
    households = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="household_conflict: the two households"
    )
    latest_as_of = serializers.DateField(required=False, help_text="business_date_not_ended: the latest date allowed")
    attempts_left = serializers.IntegerField(required=False, help_text="pin_invalid: wrong PINs left before the lock")
    locked = serializers.BooleanField(required=False, help_text="pin_invalid: the PIN is locked")
    members = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="limit_reached (coupons): the members over the limit"
    )
    used_at = serializers.DateTimeField(required=False, help_text="coupon_used, undo_window_passed: when it was used")
    valid_until = serializers.DateField(required=False, help_text="coupon_expired: its last valid day")
    window_minutes = serializers.IntegerField(required=False, help_text="undo_window_passed: the undo window")
    has_pin = serializers.BooleanField(required=False, help_text="pin_required, pin_invalid: false when she has none")

    def get_fields(self):
        fields = super().get_fields()
        fields["fields"] = serializers.ListField(  # a Serializer's own attribute name: added here
            child=serializers.CharField(), required=False, help_text="campaign_running: terms that cannot change now"
        )
        return fields

    reason = serializers.CharField(required=False, help_text="coupon_not_applicable: why the coupon does not apply")


def document_unavailable(result, generator, request, public):
    """drf-spectacular postprocessing hook: every operation may answer 503 `temporarily_unavailable` with a
    Retry-After header (the database is unreachable, or a lock or statement timeout cut the request off; nothing
    was written and a retry with the same key is safe)."""
    error = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                operation.setdefault("responses", {}).setdefault(
                    "503",
                    {
                        "description": "`temporarily_unavailable`: nothing was written; retry after the given seconds.",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
                        "content": {"application/json": {"schema": error}},
                    },
                )
    return result


# The answers any operation may give, declared on every operation that does not declare its own (see
# document_common_errors): who may call it decides 401 and 403, a path id 404, a body 400, 413 and 415, a query
# 400.
_COMMON_ERRORS = {
    "400": "`invalid`: the input is wrong (see `errors`); nothing was written.",
    "401": "`not_authenticated`: no credentials, or credentials that are wrong or expired.",
    "403": "`permission_denied`: the caller's role, scope or stores do not allow this.",
    "404": "`not_found`: no such object, or one the caller's stores do not reach.",
    "413": "`request_too_large`: the body is larger than the server accepts; nothing was read.",
    "415": "`unsupported_media_type`: send the body as application/json (or a form where one is documented).",
    "429": "`throttled`: too many requests; retry after the given seconds.",
}


# An operation whose body is required although no single field of it is (a phone or an external_id, say) marks
# itself with extend_schema(extensions={BODY_REQUIRED: True}); document_common_errors turns the mark into
# requestBody.required.
BODY_REQUIRED = "x-body-required"


def document_common_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: declare the error answers the shared plumbing gives on every operation
    (authentication, permissions, a path id that matches nothing, invalid input, throttling), in the error shape,
    so a generated client knows them; and close the Error object so that undeclared fields cannot creep in."""
    error = {"$ref": "#/components/schemas/Error"}
    schemas = result.get("components", {}).get("schemas", {})
    if "Error" in schemas:
        schemas["Error"]["additionalProperties"] = False
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            if operation.pop(BODY_REQUIRED, False) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
            responses = operation.setdefault("responses", {})
            statuses = ["401", "403", "429"]
            if "{" in path:
                statuses.append("404")
            if operation.get("requestBody"):
                statuses += ["400", "413", "415"]
            elif any(p.get("in") == "query" for p in operation.get("parameters", [])):
                statuses.append("400")
            for status in statuses:
                responses.setdefault(
                    status,
                    {"description": _COMMON_ERRORS[status], "content": {"application/json": {"schema": error}}},
                )
            if "429" in responses:
                responses["429"].setdefault(
                    "headers", {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
                )
            operation["responses"] = dict(sorted(responses.items()))
    return result


def error_responses(codes):
    """OpenAPI responses for the error statuses of an endpoint: {409: "member_exists", 400: "invalid"}."""
    return {status: OpenApiResponse(ErrorSerializer, description=f"`{code}`") for status, code in codes.items()}


class CsvRenderer(renderers.BaseRenderer):
    """Lets `?format=csv` select CSV on report views; the views stream the rows themselves."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "code" in data:  # an error: keep the JSON error shape
            return json.dumps(data).encode()
        return data if isinstance(data, bytes) else str(data).encode()


class _Echo:
    def write(self, value):
        return value


def csv_response(filename, header, rows):
    """A streaming CSV download (UTF-8 with a BOM so spreadsheet programs read Chinese names right). Text cells that
    a spreadsheet would run as a formula are neutralised (loyalty.csv_cells); numbers are written as they are."""
    writer = csv.writer(_Echo())

    def lines():
        yield "\ufeff" + writer.writerow(neutralise_row(header))
        for row in rows:
            yield writer.writerow(neutralise_row(row))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
