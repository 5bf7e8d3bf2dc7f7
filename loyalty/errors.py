"""Domain failures: exceptions with a machine code, raised by services, mapped to HTTP in loyalty/api.py."""

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class DomainError(Exception):
    """A business rule refused the operation. `code` is the API's machine code, `status` its HTTP status."""

    status = 409
    code = "conflict"
    default_detail = _("The request conflicts with the current state.")

    def __init__(self, detail=None, *, code=None, status=None, **extra):
        self.detail = detail or self.default_detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra  # further fields for the error body, e.g. the existing member's id
        super().__init__(self.detail)


class NotFoundError(DomainError):
    status = 404
    code = "not_found"
    default_detail = _("Not found.")


class PermissionDeniedError(DomainError):
    status = 403
    code = "permission_denied"
    default_detail = _("You do not have permission to perform this action.")


class InvalidInput(DomainError):
    """Input that only a service can judge (it needs the database); shaped like a serializer's 400."""

    status = 400
    code = "invalid"
    default_detail = _("Invalid input.")

    def __init__(self, errors, detail=None):
        super().__init__(detail or gettext("Invalid input: %(fields)s.") % {"fields": ", ".join(errors)})
        self.errors = errors


class Throttled(DomainError):
    status = 429
    code = "throttled"
    default_detail = _("Too many requests; try again later.")

    def __init__(self, detail=None, *, retry_after=None):
        super().__init__(detail)
        self.retry_after = retry_after
