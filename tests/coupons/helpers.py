"""Shortcuts for coupon tests: templates saved directly, and the services called the way the API calls them."""

import itertools
from decimal import Decimal

from campaigns.models_coupons import CouponTemplate
from campaigns.services import coupons
from points.services import request_fingerprint

_keys = itertools.count(1)


def template(**kwargs):
    values = {"name": "20 off 100", "kind": "amount_off", "amount_off": Decimal("20"), "threshold": Decimal("100")}
    if "valid_from" not in kwargs:
        values["valid_days"] = 30
    return CouponTemplate.objects.create(**{**values, **kwargs})


def issue(template_, *members, source="api"):
    return coupons.issue_within(
        actor="test", template_id=template_.pk, member_ids=[member.pk for member in members], source=source
    )


def redeem(code, *, store=None, amount="150.00", order_no=None, key=None, source="store:A001", member_id=None):
    order_no = order_no or f"O{next(_keys)}"
    key = key or f"redeem-{next(_keys)}"
    return coupons.redeem_coupon(
        actor="test",
        scope="test",
        key=key,
        fingerprint=request_fingerprint([code, order_no, amount, key]),
        code=code,
        order_no=order_no,
        store=store,
        amount=Decimal(amount),
        source=source,
        member_id=member_id,
    )
