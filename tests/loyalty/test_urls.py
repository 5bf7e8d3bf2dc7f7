"""loyalty.urls tries the hot paths' routes first (issue 14). They must resolve every path exactly as the full list
of patterns alone does: the same view, arguments, name and route, and nothing else may change."""

import pytest
from django.urls import get_resolver
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, URLResolver

from loyalty import urls

PATHS = [
    "/api/v1/purchases/",
    "/api/v1/purchases/preview/",
    "/api/v1/purchases/12/refunds/",
    "/api/v1/members/123/points/",
    "/api/v1/members/123/points/ledger/",
    "/api/v1/members/123/",
    "/api/v1/members/",
    "/api/v1/members/x/points/",
    "/api/v1/members/1234567890123456789/points/",
    "/api/v1/events/",
    "/api/v1/redemptions/",
    "/api/v1/redemptions/5/cancel/",
    "/api/v1/me/points/",
    "/api/v1/me/points/ledger/",
    "/api/v1/me/sign-in/",
    "/api/v1/me/redemptions/",
    "/api/v1/me/",
    "/api/v1/rewards/",
    "/api/v1/purchases",
    "/api/v1/events",
    "/api/v1/nothing/",
    "/healthz",
]


def _resolved(resolver, path):
    try:
        match = resolver.resolve(path)
    except Resolver404:
        return None
    return match.func, match.args, match.kwargs, match.url_name, match.route, match.namespaces


@pytest.mark.parametrize("path", PATHS)
def test_hot_routes_resolve_as_the_full_list_does(path):
    without = URLResolver(RegexPattern(r"^/"), urls.urlpatterns[1:])
    assert _resolved(get_resolver(), path) == _resolved(without, path)


def test_each_hot_route_is_the_apps_own_pattern_and_matched_first():
    hot = urls.urlpatterns[0]
    assert [pattern.name for pattern in hot.url_patterns] == list(urls.HOT_ROUTES)
    for name, path in [
        ("purchase-list", "/api/v1/purchases/"),
        ("member-points-summary", "/api/v1/members/7/points/"),
        ("events", "/api/v1/events/"),
        ("redemption-list", "/api/v1/redemptions/"),
        ("me-points", "/api/v1/me/points/"),
        ("me-sign-in", "/api/v1/me/sign-in/"),
        ("me-redemptions", "/api/v1/me/redemptions/"),
    ]:
        assert hot.resolve(path[1:]).url_name == name
        assert get_resolver().resolve(path).url_name == name
