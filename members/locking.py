"""The one lock order for a member's rows, and the helper that takes all of them.

Every transaction that changes a member locks her rows in this order, and never the other way round, so two
transactions on the same members can wait for each other but never deadlock, and a check made after the locks
sees every change committed before them:

0. for a manual adjustment by a clerk or a marketer only: the adjuster's lock (`points.services.spending.
   lock_adjuster`, a transaction-scoped PostgreSQL advisory lock on her actor label), before any member's rows.
   It serialises one staff member's adjustments to all members, so her daily total is checked after her previous
   adjustment committed; a transaction takes at most one, and nothing that holds a member's lock asks for it;
1. her points account (`points.services.ledger.lock_accounts`): the member's lock. Every change to points,
   growth, tier, status or identity takes it first, so one account lock serialises all of them;
2. her member tier row (`tiers.services.lock_member_tiers`);
3. her stored-value account (`stored_value.services.ledger.lock_stored_value_accounts`; every stored-value change
   takes steps 1 to 3 through `stored_value.services.ledger.lock_member`);
4. her member row itself (status, identifiers);
5. anything else (purchases, redemptions, reward stock by conditional UPDATE, tags), and last the rows shared by
   many members that an earn may take: a campaign's budget row (`campaigns.services.budgets.take`), several in
   campaign-id order. A referral's second earn (the referrer's campaigns) comes after the first's; the rare
   deadlock this allows against a purchase whose own campaigns took the same rows in the other order is detected
   by PostgreSQL and answered 503 `temporarily_unavailable` with Retry-After (the retry is idempotent).

Several members (a referral, a transfer, a merge): each step for all of them in member-id order before the next
step (both accounts in id order, then both tier rows in id order, ...). Checks on what these rows say (status,
tier restriction, balance, limits) come after the locks, never before. Nightly jobs follow the same order for
their chunk: they lock the chunk's accounts in id order before touching tiers or lots (an app that cannot import
points takes the steps registered before its own through `member_lockers`, as the tiers downgrade does).

Apps above members take part through `member_lockers`: each registers, in AppConfig.ready(), a function that
locks its own rows for a list of member ids (in id order); INSTALLED_APPS order is the lock order above.
"""

from loyalty.registry import ExtensionPoint
from members.models import Member

member_lockers = ExtensionPoint(
    "member_lockers",
    "locker(member_ids) locks the registering app's rows of these members, in member-id order, in the caller's "
    "transaction. Registered in lock order (INSTALLED_APPS order: points, then tiers, then stored value).",
)


def lock_members(member_ids):
    """Lock every row of these members, in the documented order, inside the caller's transaction; return the
    member rows (fresh, locked) by id. Use it for changes that are not points mutations (status, merge, identity)
    so they serialise with purchases and redemptions, which take the points account first."""
    ids = sorted(set(member_ids))
    for locker in member_lockers:
        locker(ids)
    members = Member.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")
    return {member.pk: member for member in members}
