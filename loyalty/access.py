"""Who is calling: principals for client apps and members, staff roles, and the Access a request has.

Plain Python with no DRF import, so authentication classes and services can use it without import cycles.
"""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

ROLE_ADMIN, ROLE_MARKETER, ROLE_MANAGER, ROLE_CLERK = "admin", "marketer", "manager", "clerk"
# Strongest first: a staff account in several role groups acts with the first of hers.
STAFF_ROLES = (ROLE_ADMIN, ROLE_MARKETER, ROLE_MANAGER, ROLE_CLERK)
# Roles bound to the stores they work at (user.stores): a clerk, and a store manager, who does what a clerk does
# plus the money-handling stored-value actions (withdrawals, adjustments).
STORE_BOUND_ROLES = frozenset({ROLE_MANAGER, ROLE_CLERK})

# Scopes a client app may be given; `create_api_client` grants exactly those it is given.
CLIENT_SCOPES = {
    "members:read": _("look members up"),
    "members:write": _("register and update members, tag them"),
    "purchases:write": _("record purchases and refunds"),
    "events:write": _("post engagement events"),
    "points:read": _("read balances and ledgers"),
    "points:write": _("deduct points at checkout"),
    "rewards:read": _("read the rewards catalogue"),
    "redemptions:write": _("redeem and cancel rewards"),
    "stored_value:read": _("read stored-value balances and ledgers"),
    "stored_value:write": _("top up, pay from and refund to the stored value"),
    "coupons:read": _("read coupon templates, members' coupons, check a coupon"),
    "coupons:write": _("redeem coupons, issue coupons to members"),
}


class ClientAppPrincipal:
    """request.user for a client app authenticated by API key."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, client, store_ids):
        self.client = client
        self.pk = client.pk
        self.store_ids = store_ids  # frozenset of store ids (empty: no store), or None: all stores (all_stores)
        self.scopes = frozenset(client.scopes or ())

    def __str__(self):
        return f"client:{self.client.name}"


class MemberPrincipal:
    """request.user for a member authenticated by a member token: reaches /api/v1/me/ only."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, member):
        self.member = member
        self.pk = member.pk

    def __str__(self):
        return f"member:{self.member.pk}"


def staff_role(user):
    """The strongest role of a staff user (admin > marketer > manager > clerk), or None."""
    if not getattr(user, "is_authenticated", False) or isinstance(user, (ClientAppPrincipal, MemberPrincipal)):
        return None
    if not user.is_active:
        return None
    if user.is_superuser:
        return ROLE_ADMIN
    cached = getattr(user, "_loyalty_role", False)
    if cached is not False:
        return cached
    groups = set(user.groups.values_list("name", flat=True))
    role = next((r for r in STAFF_ROLES if r in groups), None)
    user._loyalty_role = role
    return role


@dataclass(frozen=True)
class Access:
    """What the caller may touch: `store_ids` None means every store, an empty set none. `actor` labels ledger and
    audit rows."""

    kind: str  # staff | client | member
    actor: str
    role: str | None = None
    store_ids: frozenset | None = None
    principal: object = None

    def can_act_for_store(self, store_id):
        return self.store_ids is None or store_id in self.store_ids


def access_for(request):
    """Build (once per request) the Access of the authenticated caller."""
    cached = getattr(request, "_loyalty_access", None)
    if cached is not None:
        return cached
    user = request.user
    if isinstance(user, ClientAppPrincipal):
        access = Access("client", str(user), None, user.store_ids, user)
    elif isinstance(user, MemberPrincipal):
        access = Access("member", str(user), None, frozenset(), user)
    else:
        role = staff_role(user)
        store_ids = None
        if role in STORE_BOUND_ROLES:
            store_ids = frozenset(user.stores.values_list("id", flat=True))
        access = Access("staff", f"staff:{user.get_username()}", role, store_ids, user)
    request._loyalty_access = access
    return access
