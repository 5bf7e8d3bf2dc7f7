"""Reads of members that more than one caller needs: the member queryset with every app's parts prefetched, and
which members a caller may see or act for (the API's and the admin's access rules in one place)."""

import hmac

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext
from django.utils.translation import gettext as _

from loyalty.access import access_for
from loyalty.config_cache import cached
from loyalty.errors import DomainError, NotFoundError, PermissionDeniedError
from members.extensions import prepare_member_queryset
from members.models import Member, Store


def member_queryset():
    return prepare_member_queryset(Member.objects.select_related("home_store").prefetch_related("tags"))


def visible_members(request):
    """The members the caller may see: all of them, or those whose home store is one of the caller's."""
    access = access_for(request)
    queryset = member_queryset()
    if access.store_ids is not None:
        queryset = queryset.filter(home_store_id__in=access.store_ids)
    return queryset


def active_stores_by_code():
    """{code: Store} of the active stores (cached configuration, see loyalty.config_cache: a store saved in this
    process is seen at once, in the others within CONFIG_CACHE_SECONDS)."""
    return cached(
        "members.active_stores", lambda: {s.code: s for s in Store.objects.filter(is_active=True)}, models=[Store]
    )


def store_for_write(request, store):
    """The store a write acts for: the one asked for, if the caller may act for it, else the caller's only one."""
    access = access_for(request)
    if store is None:
        if access.store_ids is not None and len(access.store_ids) == 1:
            return Store.objects.get(pk=next(iter(access.store_ids)))
        if access.store_ids is not None:
            raise DomainError(_("Say which of your stores this is for."), code="invalid", status=400)
        return None
    if not access.can_act_for_store(store.pk):
        raise PermissionDeniedError(gettext("You cannot act for store %(code)s.") % {"code": store.code})
    return store


def get_visible_member_or_404(request, member_id):
    """For other apps' member sub-resources (/members/{id}/points/ ...): the member if the caller may see her.
    One light query (no representation prefetches: these views show points or tiers, not the member)."""
    access = access_for(request)
    queryset = Member.objects.only("id", "home_store_id", "status")
    if access.store_ids is not None:
        queryset = queryset.filter(home_store_id__in=access.store_ids)
    return get_object_or_404(queryset, pk=member_id)


def may_act_for_member(access, member, member_no=None):
    """Whether the caller may spend the member's points (deduction, redemption, purchase paid with points,
    adjustment, transfer out): she is visible to the caller (home store among the caller's stores, or the caller
    is bound to no store), or the request carries her card number `member_no`, which the counter has from her card
    or member code (membership is chain-wide: any store serves any member who is there) and which enumerating
    member ids does not give."""
    if access.store_ids is None or member.home_store_id in access.store_ids:
        return True
    if not access.store_ids:
        return False  # bound to no store: it serves no counter, so a card number does not open the member either
    if not isinstance(member_no, str) or not member_no:
        return False
    return hmac.compare_digest(member_no.encode(), member.member_no.encode())


def get_member_to_act_for_or_404(request, member_id, member_no=None):
    """The member a spending write is for, if the caller may act for her (may_act_for_member); else 404 not_found,
    the same answer as for a member that does not exist, so her existence does not leak."""
    member = Member.objects.only("id", "home_store_id", "status", "member_no").filter(pk=member_id).first()
    if member is None or not may_act_for_member(access_for(request), member, member_no):
        raise NotFoundError()
    return member
