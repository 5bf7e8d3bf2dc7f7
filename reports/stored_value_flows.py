"""The stored-value report's figures (SPEC §9): the liability (principal and bonus the merchant owes now, in total
and by the store that took the money in) and the flows per business date and store (top-ups, bonus given,
payments, refunds to the balance, withdrawals, expired bonus, adjustments), in integer cents.

The flows of a date with a finished nightly snapshot are its reports.StoredValueFlowSnapshot rows (a few per day);
the dates without one (today, days before the job ran) are read from the stored-value ledger, one GROUP BY over a
created_at range per run of such dates (the (created_at, kind) index), so the cost grows with the entries of those
dates, never with the whole ledger. The liability is the accounts' sums (the balances
check_ledger proves equal to the entries and to the lots) and, by store, the open lots' remainders."""

from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from loyalty.clock import business_tz, end_of_business_day, start_of_business_day
from members.models import Store
from reports.models import StoredValueFlowSnapshot
from reports.snapshots import snapshot_dates
from stored_value.models import EntryKind, StoredValueAccount, StoredValueEntry, StoredValueLot

# A row's figures: (name, entry kind, what is summed, sign). Counts are of entries; cents are positive for what the
# name says (paid, withdrawn, expired: the debits' deltas negated); adjustments keep their sign.
FLOWS = [
    ("top_ups", EntryKind.TOP_UP, "count", 1),
    ("topped_up_cents", EntryKind.TOP_UP, "principal_delta", 1),
    ("bonus_given_cents", EntryKind.BONUS, "bonus_delta", 1),
    ("payments", EntryKind.PAY, "count", 1),
    ("paid_principal_cents", EntryKind.PAY, "principal_delta", -1),
    ("paid_bonus_cents", EntryKind.PAY, "bonus_delta", -1),
    ("refunds", EntryKind.REFUND_TO_BALANCE, "count", 1),
    ("refunded_principal_cents", EntryKind.REFUND_TO_BALANCE, "principal_delta", 1),
    ("refunded_bonus_cents", EntryKind.REFUND_TO_BALANCE, "bonus_delta", 1),
    ("withdrawals", EntryKind.WITHDRAW, "count", 1),
    ("withdrawn_cents", EntryKind.WITHDRAW, "principal_delta", -1),
    ("bonus_forfeited_cents", EntryKind.WITHDRAW, "bonus_delta", -1),
    ("bonus_expired_cents", EntryKind.EXPIRE_BONUS, "bonus_delta", -1),
    ("adjusted_principal_cents", EntryKind.ADJUST, "principal_delta", 1),
    ("adjusted_bonus_cents", EntryKind.ADJUST, "bonus_delta", 1),
]
FIGURES = [name for name, *_ in FLOWS]
KINDS = sorted({kind for _, kind, *_ in FLOWS})


def _parts(principal, bonus):
    principal, bonus = int(principal or 0), int(bonus or 0)
    return {"principal_cents": principal, "bonus_cents": bonus, "total_cents": principal + bonus}


def liability(store_id=None):
    """What the merchant owes now: Σ principal and Σ bonus of the accounts (or, for one store, of the lots its
    top-ups opened), and by_store: the open lots' remainders by the store of the top-up that opened them (store
    null: lots of adjustments and of top-ups made without a store). by_store sums to the total."""
    lots = StoredValueLot.objects.filter(Q(principal_remaining__gt=0) | Q(bonus_remaining__gt=0))
    if store_id is not None:
        lots = lots.filter(top_up__store_id=store_id)
    by_store = (
        lots.values("top_up__store_id")
        .annotate(principal=Sum("principal_remaining"), bonus=Sum("bonus_remaining"))
        .order_by("top_up__store_id")
    )
    codes = dict(Store.objects.values_list("pk", "code"))
    rows = [{"store": codes.get(row["top_up__store_id"]), **_parts(row["principal"], row["bonus"])} for row in by_store]
    if store_id is None:
        sums = StoredValueAccount.objects.aggregate(principal=Sum("principal_cents"), bonus=Sum("bonus_cents"))
        total = _parts(sums["principal"], sums["bonus"])
    else:
        total = _parts(sum(r["principal_cents"] for r in rows), sum(r["bonus_cents"] for r in rows))
    rows.sort(key=lambda row: (row["store"] is None, row["store"] or ""))
    return {**total, "by_store": rows}


def _missing_ranges(first, last, covered):
    """The runs of consecutive dates in [first, last] not in `covered`, as (first, last) pairs."""
    ranges, day, start = [], first, None
    while day <= last:
        if day in covered:
            if start is not None:
                ranges.append((start, day - timedelta(days=1)))
                start = None
        elif start is None:
            start = day
        day += timedelta(days=1)
    if start is not None:
        ranges.append((start, last))
    return ranges


def _groups(first, last, store_id):
    """(date, store_id, kind, entries, Σ principal_delta, Σ bonus_delta) of the stored-value entries written on the
    dates first..last: from the snapshot for a date that has one, else from the ledger (a created_at range per run
    of dates without snapshot: today, or days before the job ran)."""
    covered = snapshot_dates(first, last)
    snapshots = StoredValueFlowSnapshot.objects.filter(business_date__in=covered)
    if store_id is not None:
        snapshots = snapshots.filter(store_id=store_id)
    yield from snapshots.values_list("business_date", "store_id", "kind", "entries", "principal_delta", "bonus_delta")
    missing = _missing_ranges(first, last, covered)
    if not missing:
        return
    in_ranges = Q()
    for start, stop in missing:
        in_ranges |= Q(created_at__gte=start_of_business_day(start), created_at__lt=end_of_business_day(stop))
    entries = StoredValueEntry.objects.filter(in_ranges, kind__in=KINDS)
    if store_id is not None:
        entries = entries.filter(store_id=store_id)
    yield from (
        entries.annotate(day=TruncDate("created_at", tzinfo=business_tz()))
        .values("day", "store_id", "kind")
        .annotate(entries=Count("id"), principal=Sum("principal_delta"), bonus=Sum("bonus_delta"))
        .order_by()
        .values_list("day", "store_id", "kind", "entries", "principal", "bonus")
    )


def flows(first, last, store_id=None):
    """The stored-value ledger entries written on the business dates first..last, per date and store (as the
    entries carry it: a top-up's, a payment's and its refunds', a withdrawal's; null for the lazy bonus expiry,
    adjustments and merges), as the FLOWS figures. Returns (rows, totals)."""
    codes = dict(Store.objects.values_list("pk", "code"))
    by_key = {}
    for day, store, kind, entries, principal, bonus in _groups(first, last, store_id):
        row = by_key.setdefault((day, store), {"date": day.isoformat(), "store": codes.get(store)})
        measured = {"count": entries, "principal_delta": principal, "bonus_delta": bonus}
        for name, flow_kind, measure, sign in FLOWS:
            if flow_kind == kind:
                row[name] = row.get(name, 0) + sign * int(measured[measure] or 0)
    rows = [
        {"date": row["date"], "store": row["store"], **{name: row.get(name, 0) for name in FIGURES}}
        for row in by_key.values()
        if any(name in row for name in FIGURES)
    ]
    rows.sort(key=lambda row: (row["date"], row["store"] is None, row["store"] or ""))
    totals = {name: sum(row[name] for row in rows) for name in FIGURES}
    given = totals["bonus_given_cents"]
    totals["breakage"] = round(totals["bonus_expired_cents"] / given, 4) if given else 0.0
    return rows, totals


def stored_value_report(first, last, store_id=None):
    rows, totals = flows(first, last, store_id)
    return {"from": first, "to": last, "liability": liability(store_id), "rows": rows, "totals": totals}
