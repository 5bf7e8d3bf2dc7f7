"""Reads of points data that more than one caller needs."""

from django.db import connection
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from loyalty import batch
from members.models import Member, Purchase
from points.models import AdjustmentRequest, LedgerEntry, LotStatus, PointsAccount, PointsLot, Redemption
from points.services.ledger import last_valid_day

EXPIRING_DATES_SHOWN = 5


SUMMARY_BALANCES = ("available", "pending", "lifetime_earned", "lifetime_spent", "lifetime_expired")


def points_summary(member_id, *, visible_to=None):
    """Balances and the next expiry dates (soonest first) with the points due on each. With `visible_to` (an
    Access) the member must be one it may see (members.selectors.get_visible_member_or_404's rule), else Http404.
    On PostgreSQL one statement (one round trip, one snapshot); elsewhere (and with loyalty.batch.FAST_PATH off)
    the same reads as two or three indexed statements."""
    member_id = int(member_id)
    if not 0 < member_id < 2**63:  # no such id (the column is a bigint: a larger one is not even comparable)
        raise Http404
    member_where = None
    if visible_to is not None:
        member_where, member_params = "id = %s", [member_id]
        if visible_to.store_ids is not None:
            stores = sorted(visible_to.store_ids) or [None]
            member_where += f" AND home_store_id IN ({', '.join(['%s'] * len(stores))})"
            member_params += stores
        member_where = (member_where, member_params)
    due_params = [member_id, LotStatus.AVAILABLE, timezone.now()]
    if batch.fast():
        visible, account, due = _summary_in_one_statement(member_id, member_where, due_params)
    else:
        visible, account, due = _summary_statements(member_id, member_where, due_params)
    if not visible:
        raise Http404
    balances = dict(zip(SUMMARY_BALANCES, account or [0] * len(SUMMARY_BALANCES), strict=True))
    return {
        **balances,
        "expiring": [{"date": last_valid_day(expires_at).isoformat(), "points": points} for expires_at, points in due],
    }


_DUE_SQL = (
    f"SELECT expires_at, CAST(SUM(remaining) AS BIGINT) AS points FROM {PointsLot._meta.db_table} "  # noqa: S608 - our table
    "WHERE member_id = %s AND status = %s AND remaining > 0 AND expires_at IS NOT NULL AND expires_at > %s "
    f"GROUP BY expires_at ORDER BY expires_at LIMIT {EXPIRING_DATES_SHOWN}"
)


def _summary_statements(member_id, member_where, due_params):
    """(visible, the balances' row or None, [(expires_at, points)]) in two or three statements, pipelined."""
    member_sent = None
    with batch.pipelined():
        if member_where is not None:
            member_sent = batch.select(Member, *member_where, fields=["id"])
        account_sent = batch.send(
            f"SELECT {', '.join(SUMMARY_BALANCES)} FROM {PointsAccount._meta.db_table} WHERE member_id = %s",  # noqa: S608 - our columns
            [member_id],
        )
        due_sent = batch.send(_DUE_SQL, due_params, model=PointsLot, fields=["expires_at", "remaining"])
        visible = member_sent.rows() if member_sent else True
        account, due = account_sent.one(), due_sent.values()
    return bool(visible), account, due


def _summary_in_one_statement(member_id, member_where, due_params):
    """The same three reads in one PostgreSQL statement: the member check as EXISTS, the account row by a left
    join (none yet: NULLs), the due dates aggregated into two arrays in date order. One execute on one cursor
    costs the web about half the CPU of three pipelined ones (bench/RESULTS.md)."""
    visible, params = "TRUE", []
    if member_where is not None:
        visible = f"EXISTS (SELECT 1 FROM {Member._meta.db_table} WHERE {member_where[0]})"  # noqa: S608 - ours
        params += member_where[1]
    sql = (
        f"SELECT {visible}, {', '.join('a.' + column for column in SUMMARY_BALANCES)}, d.dates, d.points "  # noqa: S608 - ours
        f"FROM (SELECT 1) AS one LEFT JOIN {PointsAccount._meta.db_table} AS a ON a.member_id = %s "
        "LEFT JOIN LATERAL (SELECT array_agg(expires_at ORDER BY expires_at) AS dates, "
        f"array_agg(points ORDER BY expires_at) AS points FROM ({_DUE_SQL}) AS due) AS d ON TRUE"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, member_id, *due_params])
        row = cursor.fetchone()
    account = row[1 : 1 + len(SUMMARY_BALANCES)]
    due = zip(row[-2] or (), row[-1] or (), strict=True)
    return row[0], None if account[0] is None else account, list(due)


def ledger_entries(member_id):
    """A member's ledger, newest first (the cursor pagination orders by -id)."""
    return LedgerEntry.objects.filter(member_id=member_id)


def purchases_visible_to(access):
    """Client apps see the orders they recorded; clerks the orders of their stores; others all."""
    queryset = Purchase.objects.all()
    if access.kind == "client":
        return queryset.filter(source=f"client:{access.principal.pk}")
    if access.store_ids is not None:
        return queryset.filter(store_id__in=access.store_ids)
    return queryset


def redemptions_visible_to(access):
    """Store-bound callers see the redemptions of their stores' members and the ones they made themselves
    (a member of another store may redeem at this counter, and it must be able to cancel that)."""
    queryset = Redemption.objects.select_related("reward")
    if access.store_ids is not None:
        return queryset.filter(Q(member__home_store_id__in=access.store_ids) | Q(actor=access.actor))
    return queryset


def adjustment_requests_visible_to(access):
    """Clerks see the requests for their stores' members; marketers and admins all."""
    queryset = AdjustmentRequest.objects.select_related("requested_by", "decided_by", "entry")
    if access.store_ids is not None:
        return queryset.filter(member__home_store_id__in=access.store_ids)
    return queryset


def household_members(member_id):
    """The other members of this member's household, oldest first (none without a household)."""
    return (
        Member.objects.filter(household__members__pk=member_id)
        .exclude(pk=member_id)
        .only("id", "member_no", "name", "status", "household_id")
        .order_by("pk")
    )
