"""Credentials of the platform: client-app API keys and staff bearer tokens. Only hashes are stored."""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from loyalty.access import CLIENT_SCOPES
from loyalty.config_cache import cached
from loyalty.errors import InvalidInput
from loyalty.models import ApiClient, StaffToken

API_KEY_PREFIX = "lk"
STAFF_TOKEN_PREFIX = "stf_"  # noqa: S105 - a prefix, not a secret


def _sha256(value):
    return hashlib.sha256(value.encode()).hexdigest()


# --- Client apps ----------------------------------------------------------------------------------------------


def create_api_client(*, name, scopes, stores=(), all_stores=False, is_active=True):
    """Create a client app and return (client, key). The key is shown once; only its hash is kept.

    The client gets exactly the `scopes` given and acts for exactly the `stores` given, or for every store with
    `all_stores=True`; nothing is assumed: no stores and no `all_stores`, both, or an unknown scope raise
    InvalidInput."""
    if isinstance(scopes, str) or not isinstance(scopes, list | tuple | set | frozenset):
        raise InvalidInput({"scopes": [gettext("Give the list of scopes the client may use.")]})
    scopes = sorted(set(scopes))
    unknown = [scope for scope in scopes if scope not in CLIENT_SCOPES]
    if unknown:
        raise InvalidInput({"scopes": [gettext("Unknown scope(s): %(unknown)s.") % {"unknown": ", ".join(unknown)}]})
    stores = list(stores)
    if all_stores and stores:
        raise InvalidInput(
            {"stores": [gettext("A client for all stores is bound to no particular store: give one or the other.")]}
        )
    if not all_stores and not stores:
        raise InvalidInput({"stores": [gettext("Give the stores the client acts for, or all stores.")]})
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = f"{API_KEY_PREFIX}_{prefix}.{secret}"
    with transaction.atomic(durable=True):
        client = ApiClient.objects.create(
            name=name,
            prefix=prefix,
            key_hash=_sha256(key),
            scopes=scopes,
            all_stores=all_stores,
            is_active=is_active,
        )
        client.stores.set(stores)
    return client, key


def rotate_api_key(client):
    """Give a client app a new key (the old one stops working at once) and return it."""
    prefix = secrets.token_hex(4)
    key = f"{API_KEY_PREFIX}_{prefix}.{secrets.token_urlsafe(32)}"
    client.prefix, client.key_hash = prefix, _sha256(key)
    client.save(update_fields=["prefix", "key_hash"])  # a save: clears the cached keys of this process
    return key


def _store_ids(client):
    """None for a client of all stores, else the ids of its stores (empty: it acts for no store)."""
    return None if client.all_stores else frozenset(store.pk for store in client.stores.all())


def _active_clients():
    """Active client apps by key prefix, with their store ids (cached: every API request needs them)."""

    def load():
        clients = ApiClient.objects.filter(is_active=True).prefetch_related("stores")
        return {client.prefix: (client, _store_ids(client)) for client in clients}

    return cached("members.api_clients", load, models=[ApiClient, ApiClient.stores.through])


def authenticate_api_key(key):
    """(ApiClient, store ids: None for all stores) for an active key, or None. Constant-time comparison of the
    hashes. A key deactivated or rotated in another process stops working within CONFIG_CACHE_SECONDS."""
    head, _, _ = key.partition(".")
    if not head.startswith(f"{API_KEY_PREFIX}_"):
        return None
    found = _active_clients().get(head[len(API_KEY_PREFIX) + 1 :])
    if found is None or not hmac.compare_digest(found[0].key_hash, _sha256(key)):
        return None
    client, _ = found
    now = timezone.now()
    if client.last_used_at is None or now - client.last_used_at > timedelta(minutes=5):
        # At most one write per client per five minutes: last use is for operators, not for every request.
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    return found


# --- Staff tokens ---------------------------------------------------------------------------------------------


def issue_staff_token(*, user):
    """A new bearer token for a staff user, valid for STAFF_TOKEN_TTL. Returns (token, expires_at)."""
    token = STAFF_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + settings.STAFF_TOKEN_TTL
    StaffToken.objects.create(user=user, token_hash=_sha256(token), expires_at=expires_at)
    StaffToken.objects.filter(user=user, expires_at__lt=timezone.now()).delete()
    return token, expires_at


def staff_user_for_token(token):
    row = (
        StaffToken.objects.select_related("user")
        .filter(token_hash=_sha256(token), expires_at__gt=timezone.now(), user__is_active=True)
        .first()
    )
    return row.user if row else None


def revoke_staff_token(token):
    return StaffToken.objects.filter(token_hash=_sha256(token)).delete()[0] > 0
