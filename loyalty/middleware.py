"""Django middleware of the service's own (the others are Django's or in loyalty.api)."""

from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.contrib.sessions.middleware import SessionMiddleware
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    """Django's MessageMiddleware with the message storage made on first use. Only the admin's pages add or show
    messages; the API's requests never touch them, and made up front the storage (a cookie and a session store,
    with a cookie signer) was 3 % of a points summary read's CPU. A storage nobody used has nothing to write:
    Django's update() then leaves the response as it is, so skipping it changes no byte."""

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)


class LazySessionMiddleware(SessionMiddleware):
    """Django's SessionMiddleware; for a request without a session cookie (every API client's: they send keys and
    tokens), the empty session store is made on first use. Nothing in such a request touches it unless something
    reads or writes the session (the admin's login, DRF's session authentication): then it is made and Django's
    own handling follows. Untouched, it was never accessed, never modified and is empty, for which Django's
    process_response sets no cookie and no Vary header, so returning the response as it is changes no byte."""

    def process_request(self, request):
        if settings.SESSION_COOKIE_NAME in request.COOKIES:
            return super().process_request(request)
        request.session = SimpleLazyObject(lambda: self.SessionStore(None))

    def process_response(self, request, response):
        session = getattr(request, "session", None)
        if isinstance(session, SimpleLazyObject) and session._wrapped is empty:
            return response
        return super().process_response(request, response)
