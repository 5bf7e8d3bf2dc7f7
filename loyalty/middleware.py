"""Django middleware of the service's own (the others are Django's or in loyalty.api)."""

from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
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
