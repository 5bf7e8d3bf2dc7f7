"""loyalty.api.RememberingContentNegotiation remembers DRF's choice of renderer per (renderers, format, Accept):
the first and the remembered answers must be DRF's own, and refusals are raised every time (issue 14)."""

import pytest
from django.http import Http404
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from loyalty.api import RememberingContentNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "text/html",
    "text/html, application/json;q=0.9",
    "application/*",
    "application/xml",
    "text/csv",
    "application/json;q=0, text/html;q=0.1",
    "garbage/",
    "",
]
FORMATS = [None, "json", "api", "csv"]


def _answer(negotiation, accept, query_format, renderers):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    path = "/api/v1/x/" + (f"?format={query_format}" if query_format else "")
    request = Request(APIRequestFactory().get(path, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers)
    except exceptions.NotAcceptable as exc:
        return "NotAcceptable", str(exc.detail)
    except Http404:
        return "Http404"
    return renderers.index(renderer), media_type


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query_format", FORMATS)
@pytest.mark.parametrize("with_browsable", [False, True])
def test_the_same_choice_as_drf_first_and_when_remembered(accept, query_format, with_browsable):
    classes = [JSONRenderer, BrowsableAPIRenderer] if with_browsable else [JSONRenderer]
    expected = _answer(DefaultContentNegotiation(), accept, query_format, [c() for c in classes])
    for _ in range(3):  # first worked out, then remembered (or refused again)
        assert _answer(RememberingContentNegotiation(), accept, query_format, [c() for c in classes]) == expected


def test_settings_use_it():
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is RememberingContentNegotiation
