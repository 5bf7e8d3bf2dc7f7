"""Shortcuts for stored-value tests: call the services the way the API does, and read balances."""

import itertools

from points.audit import all_ledger_mismatches
from points.services import request_fingerprint
from stored_value import services
from stored_value.models import StoredValueAccount, TopUpRule

_keys = itertools.count(1)


def rule(tiers, **kwargs):
    """A top-up rule for every store, in force from long ago (saved directly: tests of the rule service go through
    create_top_up_rule)."""
    from datetime import UTC, datetime

    return TopUpRule.objects.create(
        name="top-up bonus", tiers=tiers, valid_from=datetime(2020, 1, 1, tzinfo=UTC), **kwargs
    )


def top_up(member, amount_cents, ref=None, method="wechat_pay", store=None):
    ref = ref or f"T{next(_keys)}"
    return services.top_up(
        actor="test",
        member_id=member.pk,
        amount_cents=amount_cents,
        payment_method=method,
        payment_ref=ref,
        store=store,
        fingerprint=request_fingerprint([member.pk, amount_cents, method, ref, store and store.pk]),
    ).result


def pay(member, amount_cents, order_no=None, key=None, pin=None, source="store:A001", store=None):
    order_no = order_no or f"O{next(_keys)}"
    key = key or f"pay-{next(_keys)}"
    return services.pay(
        actor="test",
        scope="test",
        key=key,
        fingerprint=request_fingerprint([member.pk, order_no, amount_cents]),
        member_id=member.pk,
        source=source,
        order_no=order_no,
        amount_cents=amount_cents,
        store=store,
        pin=pin,
    ).result


def refund(payment_id, amount_cents, refund_no=None):
    refund_no = refund_no or f"R{next(_keys)}"
    return services.refund_payment(
        actor="test",
        payment_id=int(payment_id),
        refund_no=refund_no,
        amount_cents=amount_cents,
        fingerprint=request_fingerprint([payment_id, amount_cents, refund_no]),
    ).result


def withdraw(top_up_id, amount_cents=None, role="manager", key=None, reason="customer asked for her money back"):
    key = key or f"wd-{next(_keys)}"
    return services.withdraw(
        actor="test-manager",
        role=role,
        scope="test",
        key=key,
        fingerprint=request_fingerprint([top_up_id, amount_cents, reason]),
        top_up_id=int(top_up_id),
        amount_cents=amount_cents,
        reason=reason,
    ).result


def adjust(member, principal=0, bonus=0, role="manager", key=None, reason="correction"):
    key = key or f"adj-{next(_keys)}"
    return services.adjust(
        actor="test-manager",
        role=role,
        scope="test",
        key=key,
        fingerprint=request_fingerprint([member.pk, principal, bonus, reason]),
        member_id=member.pk,
        principal_cents=principal,
        bonus_cents=bonus,
        reason=reason,
    ).result


def balances(member):
    """(principal, bonus) in cents."""
    account = StoredValueAccount.objects.filter(member=member).first()
    return (account.principal_cents, account.bonus_cents) if account else (0, 0)


def assert_ledger_consistent():
    assert list(all_ledger_mismatches()) == []
