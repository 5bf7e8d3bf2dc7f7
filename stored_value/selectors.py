"""Reads of stored value that more than one caller needs."""

from django.db.models import Q

from stored_value.models import Payment, StoredValueAccount, StoredValueEntry, TopUp
from stored_value.services.ledger import balance


def summary(member_id):
    """Her balances (cents and decimal strings) and whether she has a payment PIN: one indexed query."""
    account = StoredValueAccount.objects.filter(member_id=member_id).first() or StoredValueAccount(member_id=member_id)
    return {**balance(account), "has_pin": account.has_pin, "pin_locked": account.pin_locked_at is not None}


def ledger_entries(member_id):
    """Her ledger, newest first (the cursor pagination orders by -id)."""
    return StoredValueEntry.objects.filter(member_id=member_id).select_related("store")


def payments_visible_to(access):
    """Client apps see the payments they took; store-bound staff those taken at their stores; others all."""
    queryset = Payment.objects.all()
    if access.kind == "client":
        return queryset.filter(source=f"client:{access.principal.pk}")
    if access.store_ids is not None:
        return queryset.filter(store_id__in=access.store_ids)
    return queryset


def top_ups_visible_to(access):
    """Store-bound staff see the top-ups taken at their stores or of their stores' members; others all."""
    queryset = TopUp.objects.all()
    if access.store_ids is not None:
        return queryset.filter(Q(store_id__in=access.store_ids) | Q(member__home_store_id__in=access.store_ids))
    return queryset
