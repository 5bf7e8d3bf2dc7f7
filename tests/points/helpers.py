"""Shortcuts for points tests: call the services the way the API does, and check the invariants."""

import itertools
from decimal import Decimal

from points import services
from points.audit import ledger_mismatches
from points.models import PointsAccount

_keys = itertools.count(1)


def purchase(member, amount, order_no=None, source="store:A001", **kwargs):
    order_no = order_no or f"O{next(_keys)}"
    body = {"member": member.pk, "order_no": order_no, "amount": str(amount), **{k: str(v) for k, v in kwargs.items()}}
    return services.record_purchase(
        actor="test",
        source=source,
        member_id=member.pk,
        order_no=order_no,
        amount=Decimal(str(amount)),
        fingerprint=services.request_fingerprint(body),
        **kwargs,
    ).result


def refund(purchase_id, amount, refund_no=None):
    refund_no = refund_no or f"R{next(_keys)}"
    return services.record_refund(
        actor="test",
        purchase_id=int(purchase_id),
        refund_no=refund_no,
        amount=Decimal(str(amount)),
        fingerprint=services.request_fingerprint([purchase_id, amount, refund_no]),
    ).result


def adjust(member, points, role="admin", key=None):
    key = key or f"adj-{next(_keys)}"
    return services.adjust_points(
        actor="test",
        role=role,
        scope="test",
        key=key,
        fingerprint=services.request_fingerprint([member.pk, points]),
        member_id=member.pk,
        points=points,
        reason="test",
    ).result


def redeem(member, reward, quantity=1, key=None):
    key = key or f"red-{next(_keys)}"
    return services.redeem_reward(
        actor="test",
        scope="test",
        key=key,
        fingerprint=services.request_fingerprint([member.pk, reward.pk, quantity]),
        member_id=member.pk,
        reward_id=reward.pk,
        quantity=quantity,
    ).result


def event(member, event_type, key=None, **kwargs):
    key = key or f"ev-{next(_keys)}"
    return services.record_event(
        actor="test",
        scope="test",
        key=key,
        fingerprint=services.request_fingerprint([member.pk, event_type, kwargs]),
        member_id=member.pk,
        event_type=event_type,
        **kwargs,
    ).result


def balances(member):
    account = PointsAccount.objects.filter(member=member).first()
    return (account.available, account.pending) if account else (0, 0)


def assert_ledger_consistent():
    assert list(ledger_mismatches()) == []
