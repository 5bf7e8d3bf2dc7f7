"""Where higher apps plug into the points engine without points importing them (apps depend one way).

tiers registers the tier multiplier (an earn modifier), the growth-value listener and the reward tier check;
campaigns registers campaign multipliers and bonuses. Each hook runs inside the caller's transaction, after the
member's account is locked, so what it writes commits or rolls back with the points.
"""

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from loyalty.registry import ExtensionPoint


@dataclass
class EarnContext:
    """What an earn is for: a modifier reads it and returns extra breakdown lines."""

    member: Any
    channel: str  # purchase, sign_in, share, review, referral, birthday, custom
    base_points: int
    occurred_at: datetime
    store: Any = None
    purchase_channel: str = ""
    amount: Decimal | None = None
    lines: list = field(default_factory=list)
    event_type: str = ""
    preview: bool = False  # True: nothing may be written (purchase preview)
    purchase: Any = None  # the purchase being recorded (None in a preview)
    reference: str = ""  # what the points are for: the order_no, the event's key, the trigger
    streak: int = 0  # sign_in: the consecutive days including this one
    payload: dict = field(default_factory=dict)  # what else a trigger carries (a segment move's from and to)
    actor: str = ""
    cap_left: int | None = None  # what the member's daily cap leaves today (None: not capped)
    earlier: list = field(default_factory=list)  # the breakdown lines before this modifier's (base, tier, ...)


@dataclass
class Activity:
    """A recorded activity other apps react to (growth value, tier upgrade, campaign participation)."""

    kind: str  # purchase, refund, event
    member: Any
    occurred_at: datetime
    purchase: Any = None
    refund: Any = None
    amount: Decimal | None = None
    event_type: str = ""
    preview: bool = False


_earn_modifiers = ExtensionPoint("earn_modifiers", "modifier(EarnContext) -> extra breakdown lines")
_earn_prefetchers = ExtensionPoint(
    "earn_prefetchers", "prefetch(member_ids) -> context manager in which modifiers read what it read for them"
)
_locked_reads = ExtensionPoint(
    "locked_reads", "send(member_id) -> answer(); answer() -> keep(member): an app's rows read in an opening round trip"
)
_activity_listeners = ExtensionPoint("activity_listeners", "listener(Activity) -> fields merged into the result")
_redemption_checks = ExtensionPoint("redemption_checks", "check(member, reward) raises when she may not redeem it")
_reward_fulfillers = ExtensionPoint("reward_fulfillers", "fulfil(redemption) -> the code it handed out, or None")
_redemption_cancel_listeners = ExtensionPoint("redemption_cancel_listeners", "listener(redemption) on its cancel")


def register_earn_modifier(modifier):
    """`modifier(context) -> [{"source": "tier:gold", "points": 65}, ...]` (extra points on top of base)."""
    _earn_modifiers.register(modifier)


def register_earn_prefetcher(prefetch):
    """`prefetch(member_ids)` -> a context manager: inside it, an earn modifier answers for these members from what
    it read in one statement (the same answers as without it; nothing they read may change inside it)."""
    _earn_prefetchers.register(prefetch)


@contextmanager
def earns_prefetched(member_ids):
    """The earn modifiers' reads for many members at once (a job's chunk deciding each member's earn in turn)."""
    with ExitStack() as stack:
        for prefetch in _earn_prefetchers:
            stack.enter_context(prefetch(member_ids))
        yield


def register_locked_read(send):
    """`send(member_id)` sends (loyalty.batch) the statement(s) an app's hooks would send first for a member whose
    account is locked (tiers: her tier row, locked), in the opening round trip of a write right after the account
    lock, and returns `answer()`; `answer()` reads them (in the order sent) and returns `keep(member)`, which the
    service calls with her row once it knows her account was locked then, so that the hooks use what was read."""
    _locked_reads.register(send)


def send_locked_reads(member_id):
    """Each registered app's locked read for this member, sent now (see register_locked_read): a list of answer()."""
    return [send(member_id) for send in _locked_reads]


def keep_locked_reads(answers, member, *, account_locked):
    """Read the answers of send_locked_reads in order; when `account_locked`, hand them to the hooks of `member`
    (else they are dropped and the hooks read again, under the lock the service takes then)."""
    keeps = [answer() for answer in answers]
    if account_locked and member is not None:
        for keep in keeps:
            keep(member)


def register_activity_listener(listener):
    """`listener(activity) -> {"growth_awarded": 139, "tier_change": {...}}`: fields merged into the result."""
    _activity_listeners.register(listener)


def register_redemption_check(check):
    """`check(member, reward)` raises a DomainError (e.g. not_eligible) when the member may not redeem it."""
    _redemption_checks.register(check)


def register_reward_fulfiller(fulfil):
    """`fulfil(redemption) -> code | None`, inside the redemption's transaction after it is saved: hands out what
    the reward gives (campaigns: a real coupon for a reward of kind coupon) and returns its code, or None when the
    reward is not its. May raise a DomainError, which refuses the redemption."""
    _reward_fulfillers.register(fulfil)


def register_redemption_cancel_listener(listener):
    """`listener(redemption)`, inside the cancel's transaction: takes back what fulfil handed out (or raises a
    DomainError when it cannot, which refuses the cancel)."""
    _redemption_cancel_listeners.register(listener)


def fulfil_reward(redemption):
    for fulfil in _reward_fulfillers:
        code = fulfil(redemption)
        if code:
            return code
    return None


def redemption_cancelled(redemption):
    for listener in _redemption_cancel_listeners:
        listener(redemption)


def earn_breakdown(context):
    lines = [{"source": "base", "points": context.base_points}]
    for modifier in _earn_modifiers:
        context.earlier = list(lines)
        lines.extend(line for line in modifier(context) if line.get("points"))
    return lines


def activity_fields(activity, defaults):
    result = dict(defaults)
    for listener in _activity_listeners:
        result.update(listener(activity) or {})
    return result


def check_redemption(member, reward):
    for check in _redemption_checks:
        check(member, reward)
