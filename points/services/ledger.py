"""The ledger's primitives: lock accounts, earn into a lot, spend lots first-expiring-first, move points between
two members, claw back, return, release and expire. Every function here runs inside the caller's transaction,
after `lock_accounts`; none opens a transaction of its own. These are the only functions that write accounts,
entries, lots and movements.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from django.db import connection
from django.db.models import Case, F, Q, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty import batch, events
from loyalty.clock import business_date, end_of_business_day, start_of_business_day
from loyalty.config_cache import cached
from loyalty.errors import DomainError
from members.models import Member
from members.services import MemberMerged
from points.models import (
    EntryKind,
    ExpiryMode,
    ExpiryWatermark,
    LedgerEntry,
    LotMovement,
    LotStatus,
    PointsAccount,
    PointsLot,
    PointsPolicy,
)

MAX_POINTS = 10**12  # no single change may move more than this (guards against absurd input)


class InsufficientPoints(DomainError):
    code = "insufficient_points"
    default_detail = _("Not enough available points.")


def current_policy(at=None):
    """The points policy in force at `at` (now): the newest version whose valid_from has passed."""
    at = at or timezone.now()
    versions = cached(
        "points.policies", lambda: list(PointsPolicy.objects.order_by("-valid_from", "-id")), models=[PointsPolicy]
    )
    return next((p for p in versions if p.valid_from <= at), None) or PointsPolicy()  # SPEC §2 defaults


def expires_at_for(policy, earned_at):
    """The instant points earned at `earned_at` stop being usable (the start of the day after their last day).

    rolling: N months after the earning date (2024-02-29 + 12 months → last day 2025-02-28);
    fixed_annual: points earned in year Y last until 31 December of Y+1.
    """
    earned_on = business_date(earned_at)
    if policy.expiry_mode == ExpiryMode.FIXED_ANNUAL:
        return start_of_business_day(date(earned_on.year + 2, 1, 1))
    return end_of_business_day(earned_on + relativedelta(months=policy.expiry_months))


def last_valid_day(expires_at):
    return business_date(expires_at - relativedelta(microseconds=1))


def lock_accounts(member_ids, *, include_closed=False):
    """Lock the accounts of these members (created on first use), in id order so two transactions that lock
    the same members can never deadlock. Returns {member_id: PointsAccount}.

    A closed account (its member was merged away) takes no further change: MemberMerged, raised after the lock, so
    a change that checked the member's status before a merge committed is refused here, not written to her."""
    ids = sorted(set(member_ids))
    accounts = {
        a.member_id: a
        for a in PointsAccount.objects.select_for_update().filter(member_id__in=ids).order_by("member_id")
    }
    missing = [member_id for member_id in ids if member_id not in accounts]
    if missing:
        PointsAccount.objects.bulk_create([PointsAccount(member_id=m) for m in missing], ignore_conflicts=True)
        accounts = {
            a.member_id: a
            for a in PointsAccount.objects.select_for_update().filter(member_id__in=ids).order_by("member_id")
        }
    if not include_closed:
        refuse_closed(accounts)
    return accounts


def refuse_closed(accounts):
    """MemberMerged for the first closed one of these locked accounts ({member_id: PointsAccount})."""
    closed = [member_id for member_id, account in accounts.items() if account.closed]
    if closed:
        survivor = Member.objects.filter(pk=closed[0]).values_list("merged_into_id", flat=True).first()
        raise MemberMerged(member=str(closed[0]), merged_into=str(survivor) if survivor else None)


def lock_member_accounts(member_ids):
    """Step 1 of members.locking's order, for changes to a member that are not points mutations (status, identity,
    a merge, a nightly job's chunk): her account locked even when closed; the caller checks her status after the
    locks. Registered in `members.locking.member_lockers`.

    By id only: the same rows and lock (FOR UPDATE, in member-id order, missing accounts created first, as
    lock_accounts does) without building a model per account, so a job can lock 100,000 members' accounts in a
    few statements. Returns the locked member ids, sorted."""
    ids = sorted(set(member_ids))
    if not ids:
        return []
    locked = _lock_account_ids(ids)
    if len(locked) < len(ids):
        present = set(locked)
        PointsAccount.objects.bulk_create(
            [PointsAccount(member_id=m) for m in ids if m not in present], ignore_conflicts=True
        )
        locked = _lock_account_ids(ids)
    return locked


def _lock_account_ids(ids):
    """SELECT member_id ... ORDER BY member_id FOR UPDATE for these (sorted) member ids; the locked ids."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT member_id FROM points_pointsaccount WHERE member_id = ANY(%s) ORDER BY member_id FOR UPDATE",
                [ids],
            )
            return [row[0] for row in cursor.fetchall()]
    return list(
        PointsAccount.objects.select_for_update()
        .filter(member_id__in=ids)
        .order_by("member_id")
        .values_list("member_id", flat=True)
    )


def lock_account(member_id):
    return lock_accounts([member_id])[member_id]


def save_account(account):
    account.save()


def save_accounts(accounts):
    """save_account for many locked accounts. PostgreSQL: one UPDATE ... FROM unnest(one array per column) (every
    column, updated_at set as save() sets it); other databases: save_account each."""
    accounts = list(accounts)
    if connection.vendor != "postgresql":
        for account in accounts:
            save_account(account)
        return
    if not accounts:
        return
    now = timezone.now()
    for account in accounts:
        account.updated_at = now
    fields = [f for f in PointsAccount._meta.concrete_fields if not f.primary_key]
    key = PointsAccount._meta.pk
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in [key, *fields])
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in [key, *fields])
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
    table = quote(PointsAccount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM unnest({arrays}) AS v({columns}) "  # noqa: S608 - our columns
            f"WHERE {table}.{quote(key.column)} = v.{quote(key.column)}",
            [[f.get_db_prep_save(getattr(a, f.attname), connection) for a in accounts] for f in [key, *fields]],
        )


def new_entry(
    account,
    *,
    kind,
    actor,
    available_delta=0,
    pending_delta=0,
    points=None,
    reason="",
    reference="",
    breakdown=None,
    expires_at=None,
    now=None,
    store_id=None,
    channel=None,
):
    """The entry append_entry writes (not saved yet), the account's balances moved by it."""
    account.available += available_delta
    account.pending += pending_delta
    return LedgerEntry(
        member_id=account.member_id,
        kind=kind,
        points=available_delta + pending_delta if points is None else points,
        available_delta=available_delta,
        pending_delta=pending_delta,
        balance_after=account.available,
        pending_after=account.pending,
        reason=reason[:200],
        reference=str(reference)[:100],
        actor=actor[:120],
        breakdown=breakdown,
        expires_at=expires_at,
        created_at=now or timezone.now(),
        store_id=store_id,
        channel=channel,
    )


def append_entry(account, **fields):
    """Move the account's balances and write the entry that says so (balance_after = available after it).
    `store_id` and `channel` say where the change happened (LedgerEntry.store, .channel), when the caller knows.
    The fields: new_entry's."""
    entry = new_entry(account, **fields)
    entry.save(force_insert=True)
    return entry


@dataclass
class Earning:
    """One earn of earn_many: earn()'s arguments but the actor, the kind and the time."""

    account: PointsAccount
    points: int
    available_at: object
    expires_at: object
    reason: str = ""
    reference: str = ""
    breakdown: list | None = None
    purchase: object = None
    store_id: int | None = None
    channel: str | None = None


def _earn_entry(earning, *, actor, kind, now):
    """earn()'s entry (not saved) and whether its points are pending; the account's balances moved."""
    pending = earning.available_at > now
    entry = new_entry(
        earning.account,
        kind=kind,
        actor=actor,
        points=earning.points,
        available_delta=0 if pending else earning.points,
        pending_delta=earning.points if pending else 0,
        reason=earning.reason,
        reference=earning.reference,
        breakdown=earning.breakdown,
        expires_at=earning.expires_at,
        now=now,
        store_id=earning.store_id,
        channel=earning.channel,
    )
    return entry, pending


def _earn_lot(earning, entry, pending, now):
    return PointsLot(
        member_id=earning.account.member_id,
        entry=entry,
        status=LotStatus.PENDING if pending else LotStatus.AVAILABLE,
        points=earning.points,
        remaining=earning.points,
        earned_at=now,
        available_at=earning.available_at,
        expires_at=earning.expires_at,
        purchase=earning.purchase,
        pending_until=earning.available_at if pending else None,
    )


def _earned_event(earning, entry, pending):
    """The data of earn()'s points.earned event."""
    return {
        "member": str(earning.account.member_id),
        "points": earning.points,
        "reference": entry.reference,
        "reason": entry.reason,
        "entry": str(entry.pk),
        "status": "pending" if pending else "available",
        "available_at": earning.available_at,
        "expires_at": earning.expires_at,
        "breakdown": earning.breakdown or [],
    }


def earn(
    account,
    *,
    points,
    actor,
    available_at,
    expires_at,
    reason="",
    reference="",
    breakdown=None,
    purchase=None,
    kind=EntryKind.EARN,
    now=None,
    store_id=None,
    channel=None,
):
    """Add points as a new lot: pending until `available_at`, then available until `expires_at`.

    Returns (entry, lot). A member in debt (negative balance after a claw-back) pays it off first. An earn (kind
    earn) writes a points.earned event into the outbox (loyalty.events), in the caller's transaction."""
    now = now or timezone.now()
    earning = Earning(
        account,
        points,
        available_at,
        expires_at,
        reason=reason,
        reference=reference,
        breakdown=breakdown,
        purchase=purchase,
        store_id=store_id,
        channel=channel,
    )
    was_in_debt = account.available < 0
    entry, pending = _earn_entry(earning, actor=actor, kind=kind, now=now)
    lot = _earn_lot(earning, entry, pending, now)
    settles = not pending and was_in_debt
    event = kind == EntryKind.EARN and events.wanted("points.earned")
    # One statement on PostgreSQL; inside batch.deferring() (a purchase), kept for the service's last statement
    # when nothing here reads the rows or their ids (no debt to settle from the lot, no event naming the entry).
    batch.insert_linked(entry, lot, "entry", defer=not (settles or event))
    note_late_lots([lot])  # a round trip only for a lot expiring within a day (an import of an old order)
    account.lifetime_earned += points
    if settles:
        settle_debt(account, entry)
    if event:  # adjustments report themselves as points.adjusted
        events.emit("points.earned", _earned_event(earning, entry, pending), member_id=account.member_id)
    return entry, lot


def earn_many(earnings, *, actor, kind=EntryKind.EARN, now=None):
    """earn() for each Earning in turn, in bulk: the entries, then the lots, then the events of a run of earnings
    in one INSERT each (the same rows as earn() one by one, in the same id order). An earning for an account in
    debt goes through earn() itself (its debt is paid first, lot by lot). Every account locked by the caller;
    their balances are moved, not saved (save_accounts). Returns [(entry, lot)] in the earnings' order."""
    now = now or timezone.now()
    done, run = [], []

    def write_run():
        if not run:
            return
        entries = LedgerEntry.objects.bulk_create([entry for _, entry, _ in run])
        lots = PointsLot.objects.bulk_create(
            [_earn_lot(earning, entry, pending, now) for (earning, _, pending), entry in zip(run, entries, strict=True)]
        )
        if kind == EntryKind.EARN:
            events.emit_many(
                "points.earned",
                [(_earned_event(item, entry, pending), item.account.member_id) for item, entry, pending in run],
            )
        note_late_lots(lots)
        done.extend(zip(entries, lots, strict=True))
        run.clear()

    for earning in earnings:
        if earning.available_at <= now and earning.account.available < 0:
            write_run()
            done.append(
                earn(
                    earning.account,
                    points=earning.points,
                    actor=actor,
                    available_at=earning.available_at,
                    expires_at=earning.expires_at,
                    reason=earning.reason,
                    reference=earning.reference,
                    breakdown=earning.breakdown,
                    purchase=earning.purchase,
                    kind=kind,
                    now=now,
                    store_id=earning.store_id,
                    channel=earning.channel,
                )
            )
            continue
        entry, pending = _earn_entry(earning, actor=actor, kind=kind, now=now)
        earning.account.lifetime_earned += earning.points
        run.append((earning, entry, pending))
    write_run()
    return done


# A lot opened with an expiry before now + LATE_MARGIN may be behind a nightly expiry run (its cutoff is the end of
# a business date that has ended, and it starts reading from no later than its own start time): it lowers the
# watermark the next run starts from. Any later expiry is ahead of every run that could miss the lot, as long as
# no transaction lasts longer than the margin (maintenance.expire_prepare, expire_finish).
LATE_MARGIN = timedelta(days=1)


def note_late_lots(lots):
    """Lower the expiry watermark (models.ExpiryWatermark.reopened_from) to the earliest expiry of these lots that
    are available now, if it may be behind a run (note_late_expiry). Call in the transaction that made them
    available (created, released, merged, transferred or returned to)."""
    note_late_expiry(
        min(
            (lot.expires_at for lot in lots if lot.status == LotStatus.AVAILABLE and lot.expires_at is not None),
            default=None,
        )
    )


def note_late_expiry(earliest):
    """note_late_lots for the earliest expiry of lots just made available (None: none)."""
    if earliest is not None and earliest < timezone.now() + LATE_MARGIN:
        lower_expiry_watermark(earliest)


def lower_expiry_watermark(earliest):
    """reopened_from = LEAST(reopened_from, earliest). The row lock is held until the caller's transaction ends,
    so an expiry run starting meanwhile (maintenance.expire_prepare locks the row) waits and then reads from there."""
    ExpiryWatermark.objects.get_or_create(pk=1)
    # Always an UPDATE of the row (LEAST, not a WHERE that may match nothing): its lock is what makes a run
    # starting meanwhile wait for this transaction, whose lot it may otherwise read too early and then pass.
    ExpiryWatermark.objects.filter(pk=1).update(
        reopened_from=Case(
            When(Q(reopened_from__isnull=True) | Q(reopened_from__gt=earliest), then=Value(earliest)),
            default=F("reopened_from"),
        )
    )


def settle_debt(account, entry):
    """Pay the member's debt lots (a refund's claw-back beyond her balance) from her available lots, soonest
    expiring first, as spending would. Call after crediting available points to a member who was in debt."""
    debts = list(
        PointsLot.objects.filter(member_id=account.member_id, status=LotStatus.DEBT, remaining__lt=0).order_by("id")
    )
    owed = -sum(debt.remaining for debt in debts)
    takes, _ = plan_spend(account.member_id, owed)
    paid = sum(take.points for take in takes)
    apply_takes(entry, takes)
    movements = []
    for debt in debts:
        share = min(paid, -debt.remaining)
        if share <= 0:
            break
        debt.remaining += share
        paid -= share
        movements.append(LotMovement(entry=entry, lot=debt, points=share))
    PointsLot.objects.bulk_update(debts, ["remaining"])
    LotMovement.objects.bulk_create(movements)


@dataclass
class Take:
    lot: PointsLot
    points: int


# How many of a member's spendable lots send_spendable_lots reads ahead (in the opening round trip of a spend);
# a spend that needs more reads the rest as plan_spend does.
SPENDABLE_FIRST = 200


# The earliest expiry an open lot can have, on PostgreSQL (as maintenance.expiry_floor; -infinity when unbounded):
# no lot index tells an open lot from a closed one (they would stop the nightly expiry's updates being HOT), so a
# spend reads a member's lots by expiry from lot_member_expiry_idx and, without this bound, every lot she ever had
# that expired or was spent to 0 before it finds her first open one. A lot below it that is open again (returned
# to, imported late, merged, released late) lowered reopened_from in its own transaction, under the member's lock.
SPEND_FLOOR_SQL = (
    "COALESCE((SELECT CASE WHEN w.run_started_at IS NOT NULL THEN"
    " CASE WHEN w.run_from IS NOT NULL THEN LEAST(w.run_from, w.reopened_from) END"
    " WHEN w.closed_before IS NOT NULL THEN LEAST(w.closed_before, w.reopened_from) END"
    " FROM points_expirywatermark w WHERE w.id = 1), '-infinity')"
)
SPENDABLE_WHERE = "member_id = %s AND status = %s AND remaining > 0"
SPENDABLE_FROM_FLOOR = f" AND (expires_at IS NULL OR expires_at >= {SPEND_FLOOR_SQL})"


def _spendable_where():
    return SPENDABLE_WHERE + (SPENDABLE_FROM_FLOOR if connection.vendor == "postgresql" else "")


def send_spendable_lots(member_id):
    """The first SPENDABLE_FIRST lots plan_spend would take from, in its order, sent now (loyalty.batch; inside
    `pipelined()` after the account lock, so read under it): pass their `models()` to spend(lots=...)."""
    return batch.select(
        PointsLot,
        _spendable_where(),
        [member_id, LotStatus.AVAILABLE],
        order_by="expires_at ASC NULLS LAST, id ASC",
        limit=SPENDABLE_FIRST,
    )


def plan_spend(member_id, points, exclude_ids=(), lots=None):
    """The available lots `points` would come from, soonest expiry first (then oldest), and the shortfall.
    The account lock protects the lots: no other transaction changes them until ours ends. `lots`: the first of
    them read already (send_spendable_lots); the rest, if they are needed, are read here."""
    takes, needed = [], points
    if lots is not None:
        for lot in lots:
            if needed == 0:
                return takes, needed
            take = min(lot.remaining, needed)
            takes.append(Take(lot, take))
            needed -= take
        if needed == 0 or len(lots) < SPENDABLE_FIRST:
            return takes, needed
        exclude_ids = [*exclude_ids, *(lot.pk for lot in lots)]
    rest = PointsLot.objects.filter(member_id=member_id, status=LotStatus.AVAILABLE, remaining__gt=0)
    if connection.vendor == "postgresql":
        rest = rest.filter(Q(expires_at__isnull=True) | Q(expires_at__gte=RawSQL(SPEND_FLOOR_SQL, [])))  # noqa: S611 - constant
    rest = rest.exclude(pk__in=exclude_ids).order_by(F("expires_at").asc(nulls_last=True), "id")
    for lot in rest.iterator(chunk_size=200):
        take = min(lot.remaining, needed)
        takes.append(Take(lot, take))
        needed -= take
        if needed == 0:
            break
    return takes, needed


def apply_takes(entry, takes):
    for take in takes:
        PointsLot.objects.filter(pk=take.lot.pk).update(remaining=F("remaining") - take.points)
    LotMovement.objects.bulk_create([LotMovement(entry=entry, lot=t.lot, points=-t.points) for t in takes])


def write_spend(entry, takes):
    """Write a spend's entry (not saved yet) and take its points from the lots (apply_takes): on PostgreSQL in one
    statement (data-modifying CTEs, loyalty.batch), elsewhere the entry's INSERT, then apply_takes. The same rows
    either way, the movements in the takes' order."""
    if not batch.fast() or not takes:
        entry.save(force_insert=True)
        apply_takes(entry, takes)
        return
    quote = connection.ops.quote_name
    columns, params = batch.insert_columns(entry)
    entries, lots, movements = (quote(model._meta.db_table) for model in (LedgerEntry, PointsLot, LotMovement))
    taken = ", ".join(["(%s, %s::bigint, %s::bigint)"] * len(takes))
    sql = (
        f"WITH e AS (INSERT INTO {entries} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(params))}) "  # noqa: S608 - our tables
        f"RETURNING id), t(ord, lot, points) AS (VALUES {taken}), "
        f"u AS (UPDATE {lots} SET remaining = {lots}.remaining - t.points FROM t WHERE {lots}.id = t.lot), "
        f"m AS (INSERT INTO {movements} (entry_id, lot_id, points) SELECT e.id, t.lot, -t.points FROM e, t "
        "ORDER BY t.ord) "
        "SELECT id FROM e"
    )
    taken_params = [value for number, take in enumerate(takes) for value in (number, take.lot.pk, take.points)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *taken_params])
        (entry.pk,) = cursor.fetchone()
    entry._state.adding, entry._state.db = False, connection.alias


def spend(
    account,
    *,
    points,
    kind,
    actor,
    reason="",
    reference="",
    now=None,
    allow_negative=False,
    store_id=None,
    channel=None,
    lots=None,
):
    """Take points from available lots, first-expiring-first, with one entry. Raises InsufficientPoints when
    the balance does not cover them (the balance is checked under the account lock, so two concurrent spends
    can never both pass). `lots`: the first spendable lots, read under the lock already (send_spendable_lots)."""
    if points <= 0 or points > MAX_POINTS:
        raise ValueError("points to spend must be positive")
    if account.available < points and not allow_negative:
        raise InsufficientPoints(available=account.available, required=points)
    takes, shortfall = plan_spend(account.member_id, points, lots=lots)
    if shortfall and not allow_negative:
        raise InsufficientPoints(available=account.available, required=points)
    entry = new_entry(
        account,
        kind=kind,
        actor=actor,
        available_delta=-points,
        reason=reason,
        reference=reference,
        now=now,
        store_id=store_id,
        channel=channel,
    )
    write_spend(entry, takes)
    if shortfall:
        add_debt(entry, account.member_id, shortfall, now)
    if kind in (EntryKind.REDEEM, EntryKind.DEDUCT):
        account.lifetime_spent += points
    return entry


def move_points(sender, receiver, *, points, actor, reason_out, reason_in, now=None):
    """Move available points from one member to another (a household transfer): one entry of kind transfer on
    each side. The points leave the sender's lots first-expiring-first and arrive as lots that keep the expiry
    of what was taken (one lot per expiry date), so a transfer never makes points last longer. A receiver in
    debt pays it off first, as with any credit. Both accounts must be locked (`lock_accounts`, id order).
    Returns (out_entry, in_entry); raises InsufficientPoints."""
    if points <= 0 or points > MAX_POINTS:
        raise ValueError("points to move must be positive")
    now = now or timezone.now()
    if sender.available < points:
        raise InsufficientPoints(available=sender.available, required=points)
    takes, shortfall = plan_spend(sender.member_id, points)
    if shortfall:
        raise InsufficientPoints(available=sender.available, required=points)
    by_expiry = {}
    for take in takes:
        by_expiry[take.lot.expires_at] = by_expiry.get(take.lot.expires_at, 0) + take.points
    expiries = [expires_at for expires_at in by_expiry if expires_at is not None]
    out_entry = append_entry(
        sender,
        kind=EntryKind.TRANSFER,
        actor=actor,
        available_delta=-points,
        reason=reason_out,
        reference=f"member:{receiver.member_id}",
        now=now,
    )
    apply_takes(out_entry, takes)
    was_in_debt = receiver.available < 0
    in_entry = append_entry(
        receiver,
        kind=EntryKind.TRANSFER,
        actor=actor,
        available_delta=points,
        reason=reason_in,
        reference=f"member:{sender.member_id}",
        expires_at=min(expiries, default=None),
        now=now,
    )
    received = PointsLot.objects.bulk_create(
        [
            PointsLot(
                member_id=receiver.member_id,
                entry=in_entry,
                status=LotStatus.AVAILABLE,
                points=moved,
                remaining=moved,
                earned_at=now,
                available_at=now,
                expires_at=expires_at,
            )
            for expires_at, moved in by_expiry.items()
        ]
    )
    note_late_lots(received)
    if was_in_debt:
        settle_debt(receiver, in_entry)
    return out_entry, in_entry


def add_debt(entry, member_id, points, now):
    now = now or timezone.now()
    PointsLot.objects.create(
        member_id=member_id,
        entry=entry,
        status=LotStatus.DEBT,
        points=-points,
        remaining=-points,
        earned_at=now,
        available_at=now,
        expires_at=None,
    )


def claw_back(account, *, purchase, points, actor, reason, reference, now=None):
    """Reverse `points` earned by `purchase` (a refund): its pending points first, then its available ones, then
    other available lots; beyond the balance the member goes into debt (a negative balance that blocks
    redemption until earned back). The entry carries the purchase's store and channel."""
    now = now or timezone.now()
    own = list(
        PointsLot.objects.filter(
            member_id=account.member_id,  # lot_member_expiry_idx: lots have no index by purchase
            purchase=purchase,
            remaining__gt=0,
            status__in=[LotStatus.PENDING, LotStatus.AVAILABLE],
        ).order_by("-status", "id")
    )  # descending: "pending" before "available"
    pending_takes, available_takes, needed = [], [], points
    for lot in own:
        take = min(lot.remaining, needed)
        if take:
            (pending_takes if lot.status == LotStatus.PENDING else available_takes).append(Take(lot, take))
            needed -= take
    shortfall = 0
    if needed:
        more, shortfall = plan_spend(account.member_id, needed, exclude_ids=[t.lot.pk for t in available_takes])
        available_takes += more
    from_pending = sum(t.points for t in pending_takes)
    entry = append_entry(
        account,
        kind=EntryKind.REVERSE,
        actor=actor,
        points=-points,
        pending_delta=-from_pending,
        available_delta=-(points - from_pending),
        reason=reason,
        reference=reference,
        now=now,
        store_id=purchase.store_id,
        channel=purchase.channel,
    )
    apply_takes(entry, pending_takes + available_takes)
    if shortfall > 0:
        add_debt(entry, account.member_id, shortfall, now)
    account.lifetime_earned -= points
    return entry


def give_back(
    account,
    *,
    original_entry,
    points,
    already_returned,
    kind,
    actor,
    reason,
    reference,
    now=None,
    store_id=None,
    channel=None,
):
    """Return `points` of what `original_entry` spent to the very lots it took them from (their original
    expiry), skipping the `already_returned` first points (earlier partial returns). Points whose lot has
    expired meanwhile are returned and expired at once, so they count in lifetime_expired. Points spent by a
    duplicate before she was merged into this account's member come back as a new lot of hers with the dates of
    the lot they were taken from (that lot belongs to the closed duplicate)."""
    now = now or timezone.now()
    movements = list(
        LotMovement.objects.filter(
            entry=original_entry,
            points__lt=0,
            lot__status__in=[LotStatus.AVAILABLE, LotStatus.EXPIRED, LotStatus.MERGED],
        )
        .select_related("lot")
        .order_by("id")
    )
    returns, skip, left = [], already_returned, points
    for movement in movements:
        taken = -movement.points
        if skip >= taken:
            skip -= taken
            continue
        amount = min(taken - skip, left)
        skip = 0
        returns.append(Take(movement.lot, amount))
        left -= amount
        if left == 0:
            break
    returned = points - left  # debt movements are not returned: the debt stays paid
    was_in_debt = account.available < 0
    entry = append_entry(
        account,
        kind=kind,
        actor=actor,
        available_delta=returned,
        reason=reason,
        reference=reference,
        now=now,
        store_id=store_id,
        channel=channel,
    )
    own = [r for r in returns if r.lot.member_id == account.member_id]
    moved = [r for r in returns if r.lot.member_id != account.member_id]
    live = [r for r in own if r.lot.status == LotStatus.AVAILABLE]
    reborn = [r for r in moved if r.lot.expires_at is None or r.lot.expires_at > now]
    expired = (
        sum(r.points for r in own if r.lot.status == LotStatus.EXPIRED)
        + sum(r.points for r in moved)
        - sum(r.points for r in reborn)
    )
    for take in live:
        PointsLot.objects.filter(pk=take.lot.pk).update(remaining=F("remaining") + take.points)
    LotMovement.objects.bulk_create([LotMovement(entry=entry, lot=r.lot, points=r.points) for r in live])
    reborn_lots = PointsLot.objects.bulk_create(
        [
            PointsLot(
                member_id=account.member_id,
                entry=entry,
                status=LotStatus.AVAILABLE,
                points=r.points,
                remaining=r.points,
                earned_at=r.lot.earned_at,
                available_at=r.lot.available_at,
                expires_at=r.lot.expires_at,
                purchase_id=r.lot.purchase_id,
            )
            for r in reborn
        ]
    )
    note_late_lots([r.lot for r in live] + reborn_lots)
    if kind in (EntryKind.CANCEL,):
        account.lifetime_spent -= returned
    if expired:
        append_entry(
            account,
            kind=EntryKind.EXPIRE,
            actor=actor,
            available_delta=-expired,
            reason="returned points whose lots had expired",
            reference=f"expired-on-return:{entry.pk}",
            now=now,
        )
        account.lifetime_expired += expired
    if was_in_debt and (live or reborn):
        settle_debt(account, entry)
    return entry, returned


RELEASE_REASON = "pending period ended: these points can now be used"


def release_reference(lot):
    """What a release entry names: the order (or other source) its lot was earned by, as its earn entry says."""
    return lot.entry.reference or f"lot:{lot.pk}"


def release_member_lots(account, *, now, actor="job:release_pending"):
    """Make the member's pending lots whose pending period has ended available, the soonest freed first: one
    release entry per lot with points left in it, naming its order (the earn entry's reference) and carrying the
    lot's expiry. A member who was in debt then pays it from her available lots, on the last release entry.
    maintenance.RELEASE_SQL (the set-based release) writes exactly these entries; keep the two in step."""
    lots = list(
        PointsLot.objects.filter(member_id=account.member_id, pending_until__lte=now)
        .select_related("entry")
        .order_by("available_at", "id")
    )
    was_in_debt = account.available < 0
    released, entry = 0, None
    for lot in lots:
        if not lot.remaining:  # refunded in full while pending: nothing to release, nothing to say
            continue
        entry = append_entry(
            account,
            kind=EntryKind.RELEASE,
            actor=actor,
            points=lot.remaining,
            available_delta=lot.remaining,
            pending_delta=-lot.remaining,
            reason=RELEASE_REASON,
            reference=release_reference(lot),
            expires_at=lot.expires_at,
            now=now,
        )
        released += lot.remaining
    PointsLot.objects.filter(pk__in=[lot.pk for lot in lots]).update(status=LotStatus.AVAILABLE, pending_until=None)
    for lot in lots:
        lot.status = LotStatus.AVAILABLE
    note_late_lots(lots)
    if was_in_debt and entry is not None:
        settle_debt(account, entry)
    return released


def expire_member_lots(account, *, as_of, now=None, actor="job:expire_points"):
    """Expire what remains of the member's lots whose last valid day is `as_of` or earlier, with one expire
    entry per member and business date (a database constraint makes a second one impossible)."""
    cutoff = end_of_business_day(as_of)
    reference = f"expiry:{as_of.isoformat()}"
    if LedgerEntry.objects.filter(member_id=account.member_id, kind=EntryKind.EXPIRE, reference=reference).exists():
        return 0
    lots = list(
        PointsLot.objects.filter(
            member_id=account.member_id, status=LotStatus.AVAILABLE, expires_at__lte=cutoff
        ).exclude(remaining=0)
    )
    total = sum(lot.remaining for lot in lots)
    if not total:
        PointsLot.objects.filter(
            member_id=account.member_id, status=LotStatus.AVAILABLE, remaining=0, expires_at__lte=cutoff
        ).update(status=LotStatus.EXPIRED)
        return 0
    entry = append_entry(
        account,
        kind=EntryKind.EXPIRE,
        actor=actor,
        available_delta=-total,
        reason=f"points expired on {as_of.isoformat()}",
        reference=reference,
        now=now,
    )
    LotMovement.objects.bulk_create([LotMovement(entry=entry, lot=lot, points=-lot.remaining) for lot in lots])
    PointsLot.objects.filter(member_id=account.member_id, status=LotStatus.AVAILABLE, expires_at__lte=cutoff).update(
        status=LotStatus.EXPIRED, remaining=0
    )
    account.lifetime_expired += total
    events.emit("points.expired", expired_event_data(account, entry, as_of), member_id=account.member_id)
    return total


def expired_event_data(account, entry, as_of):
    """The points.expired event of one member and date (maintenance.EXPIRE_EVENTS_SQL writes the same, set-based)."""
    return {
        "member": str(account.member_id),
        "points": -entry.points,
        "reference": entry.reference,
        "entry": str(entry.pk),
        "date": as_of.isoformat(),
        "balance": entry.balance_after,
    }


def lots_total(member_id, status):
    return PointsLot.objects.filter(member_id=member_id, status=status).aggregate(total=Sum("remaining"))["total"] or 0
