"""The counter as the admin's browser tests find it: one store, its clerk, a marketer, a member with a phone, the
purchase rule in force (2 points per 1 CNY, available at once) and a reward of 150 points, all made through the
services, as the admin would make them."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from points import services
from tests.factories import MemberFactory, StaffUserFactory, StoreFactory

SETUP = "staff:setup"


@dataclass
class Counter:
    store: object
    clerk: object
    marketer: object
    member: object
    rule: object
    reward: object


@pytest.fixture
def counter(migration_defaults):
    store = StoreFactory(code="SH01", name="Jing'an")
    rule = services.create_earning_rule(
        actor=SETUP,
        values={
            "channel": "purchase",
            "name": "Purchase: 2 points per 1 CNY",
            "points_per_unit": Decimal("2"),
            "pending_days": 0,
            # newer than the migration's default rule (2000-01-01), so this one is in force
            "valid_from": timezone.now() - timedelta(days=1),
        },
    )
    reward = services.create_reward(
        actor=SETUP,
        values={"code": "tea-mug", "name": "Tea mug", "kind": "gift", "cost_points": 150, "stock": 5},
    )
    return Counter(
        store=store,
        clerk=StaffUserFactory(username="clerk", role="clerk", stores=[store]),
        marketer=StaffUserFactory(username="marketer", role="marketer"),
        member=MemberFactory(home_store=store, phone="+8613800138000", name="Wang Fang", birthday=None),
        rule=rule,
        reward=reward,
    )
