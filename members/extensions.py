"""How higher apps (points, tiers, reports) add their parts to the member representation and list filters
without members importing them (apps depend one way: members is at the bottom).

Each app registers, in its AppConfig.ready(), a MemberField: how to prepare the member queryset (select_related /
prefetch_related, so a page of members costs a fixed number of queries) and how to represent one member. Until an
app registers a field, the representation carries its empty value (no tier, zero points, no RFM yet).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loyalty.registry import ExtensionPoint


@dataclass(frozen=True)
class MemberField:
    name: str
    represent: Callable[[Any], Any]
    prepare_queryset: Callable[[Any], Any] = lambda queryset: queryset


EMPTY_VALUES = {
    "tier": None,
    "points": {"available": 0, "pending": 0},
    "growth_value": 0,
    "rfm": None,
}
FILTER_NAMES = ("tier", "segment", "lifecycle")
_fields = ExtensionPoint("member_fields", "MemberField by name: a part of the member representation", keyed=True)
_filters = ExtensionPoint("member_filters", "filter_queryset(queryset, value) by list filter name", keyed=True)
# listener(member), called after a registration has committed (campaigns' registration bonus). A failing listener
# is logged and does not undo the registration.
member_registered = ExtensionPoint("member_registered", "listener(member) after a member's registration commits")
# part(member) -> [(label, value)]: one part of the admin member page's summary at the top ("at a glance": points,
# tier, segment, stored value, last purchases), by key; the page shows them in GLANCE_ORDER, then any others. An
# app registers its part in its admin module (the summary is the admin's), so the page has no second implementation
# of a figure: each part calls the selector the app's API uses.
member_glance = ExtensionPoint("member_glance", "part(member) -> [(label, value)] on the admin member page", keyed=True)
GLANCE_ORDER = ("points", "tier", "rfm", "stored_value", "purchases")
# shortcut(request, term) -> URL or None: where the admin member search goes with a term that is no member's key
# (no card number, phone or openid matched): a coupon code opens the coupon counter with it (campaigns). The first
# URL answered wins; registered in the higher app's admin module.
member_search_shortcuts = ExtensionPoint(
    "member_search_shortcuts", "shortcut(request, term) -> URL or None for the admin member search"
)
# step(stdout=, style=), run by `manage.py load_demo_data` after the demo members and staff exist, in registration
# order: the higher apps' demo data (reports: the purchase and points history the dashboard shows).
demo_data_steps = ExtensionPoint("demo_data_steps", "step(stdout=, style=) after load_demo_data's members and staff")


def register_member_field(field: MemberField):
    if field.name not in EMPTY_VALUES:
        raise ValueError(f"Unknown member field {field.name!r}; add it to EMPTY_VALUES first.")
    _fields.register(field, key=field.name)


def register_member_filter(name, filter_queryset):
    """`filter_queryset(queryset, value)` answers ?<name>=value on the member list (tier, segment, lifecycle)."""
    if name not in FILTER_NAMES:
        raise ValueError(f"Unknown member filter {name!r}.")
    _filters.register(filter_queryset, key=name)


def prepare_member_queryset(queryset):
    for field in _fields:
        queryset = field.prepare_queryset(queryset)
    return queryset


def represent_member_field(name, member):
    field = _fields.get(name)
    return field.represent(member) if field else EMPTY_VALUES[name]


def filter_members_by(name, queryset, value):
    """Filter by a field a higher app owns (tier, segment, lifecycle); with no such app, no member matches."""
    filter_queryset = _filters.get(name)
    return queryset.none() if filter_queryset is None else filter_queryset(queryset, value)
