"""Engagement events that earn points: sign-in (with streak), share (daily cap), review (one per own order),
custom events a marketer defined, and the yearly birthday bonus."""

from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.utils.translation import gettext as _

from loyalty.clock import business_date
from loyalty.errors import DomainError, InvalidInput
from members.models import Member, MemberStatus, Purchase
from members.services import ensure_member_active
from points import hooks
from points.models import EarningRule, Event, RuleChannel

from .earning import Award, apply_daily_cap, daily_cap_left, rule_for, with_modifiers
from .ledger import (
    Earning,
    current_policy,
    earn,
    earn_many,
    expires_at_for,
    lock_account,
    lock_accounts,
    save_account,
    save_accounts,
)
from .opening import finish_locked, open_locked
from .purchases import Outcome, _replay


class AlreadySignedIn(DomainError):
    code = "already_signed_in"
    default_detail = gettext_lazy("The member has already signed in today.")


class OrderNotEligible(DomainError):
    code = "order_not_eligible"
    default_detail = gettext_lazy("The order is not one of this member's purchases.")


class AlreadyReviewed(DomainError):
    code = "already_reviewed"
    default_detail = gettext_lazy("This order has already earned its review points.")


BUILT_IN_TYPES = (RuleChannel.SIGN_IN, RuleChannel.SHARE, RuleChannel.REVIEW)


def event_rule(event_type, at):
    if event_type in BUILT_IN_TYPES:
        return rule_for(event_type, at=at)
    return rule_for(RuleChannel.CUSTOM, at=at, event_type=event_type)


def is_known_event_type(event_type):
    return (
        event_type in BUILT_IN_TYPES
        or EarningRule.objects.filter(channel=RuleChannel.CUSTOM, event_type=event_type, is_active=True).exists()
    )


def check_clock_skew(occurred_at, now):
    """An engagement event happens now: a client's occurred_at more than EVENT_CLOCK_SKEW_SECONDS away from the
    server's clock, back-dated or ahead, is refused (InvalidInput); within it, the caller uses `now` instead, so a
    sign-in is for today's business date and no event is dated around a daily count, cap or pending period."""
    skew = timedelta(seconds=settings.EVENT_CLOCK_SKEW_SECONDS)
    if occurred_at is not None and abs(occurred_at - now) > skew:
        raise InvalidInput(
            {
                "occurred_at": [
                    _("An event happens now: occurred_at may differ from the server's clock by %(seconds)s seconds.")
                    % {"seconds": settings.EVENT_CLOCK_SKEW_SECONDS}
                ]
            }
        )


def record_event(*, actor, scope, key, fingerprint, member_id, event_type, occurred_at=None, order_no="", payload=None):
    """Record an engagement event and award its points, idempotent on (scope, Idempotency-Key).

    sign_in: once per business day (AlreadySignedIn), base points plus the streak bonus on every Nth
    consecutive day. share: up to the rule's times per day, then `capped` with 0 points. review: one per order of
    the member's own (OrderNotEligible, AlreadyReviewed). Every award is subject to the member's daily cap.
    The member's status and every limit are read under her account lock (MemberFrozen, MemberAnonymised).
    Every event is dated now: an occurred_at beyond the clock skew is refused (check_clock_skew), after a replay
    of the same request is answered (a retry of an accepted event replays however late it comes)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        opened = open_locked(scope=scope, key=key, fingerprint=fingerprint, member_id=member_id)
        if opened.member is None:  # the view's check, kept in its place: before the claim is judged
            raise InvalidInput({"member": [gettext("No member with this id.")]})
        claim = opened.claim
        if claim.replay:
            return _replay(claim)
        check_clock_skew(occurred_at, now)
        occurred_at = now
        rule = event_rule(event_type, occurred_at)
        if rule is None:
            raise InvalidInput({"type": [gettext("Unknown event type %(event_type)r.") % {"event_type": event_type}]})
        account = opened.locked_account()
        member = opened.member
        ensure_member_active(member)
        day = business_date(occurred_at)
        extra_lines, capped_by_count, purchase = [], False, None
        base = rule.points
        if event_type == RuleChannel.SIGN_IN:
            if account.last_sign_in and day <= account.last_sign_in:
                raise AlreadySignedIn()
            streak = account.sign_in_streak + 1 if account.last_sign_in == day - timedelta(days=1) else 1
            account.last_sign_in, account.sign_in_streak = day, streak
            if rule.streak_days and streak % rule.streak_days == 0 and rule.streak_bonus:
                extra_lines.append({"source": "streak", "points": rule.streak_bonus})
        elif event_type == RuleChannel.REVIEW:
            purchase = Purchase.objects.filter(member=member, order_no=order_no).order_by("id").first()
            if not order_no or purchase is None:
                raise OrderNotEligible()
            if Event.objects.filter(type=RuleChannel.REVIEW, purchase=purchase).exists():
                raise AlreadyReviewed()
        if rule.daily_limit is not None:
            done_today = Event.objects.filter(member=member, type=event_type, business_date=day).count()
            if done_today >= rule.daily_limit:
                base, capped_by_count = 0, True
        policy = current_policy(now)
        if capped_by_count:  # past the rule's count for the day: nothing at all, campaign bonuses neither
            total, breakdown = 0, [{"source": "base", "points": 0}]
        else:
            context = hooks.EarnContext(
                member=member,
                channel=rule.channel,
                base_points=base,
                occurred_at=occurred_at,
                event_type=event_type,
                reference=f"event:{scope}:{key}",
                streak=account.sign_in_streak if event_type == RuleChannel.SIGN_IN else 0,
                actor=actor,
                cap_left=daily_cap_left(account, policy=policy, at=occurred_at),
            )
            total, breakdown = with_modifiers(context)
            total += sum(line["points"] for line in extra_lines)
            breakdown += extra_lines
        award = apply_daily_cap(account, Award(points=total, breakdown=breakdown), policy=policy, at=occurred_at)
        entry = None
        if award.points > 0:
            entry, _ = earn(
                account,
                points=award.points,
                actor=actor,
                available_at=occurred_at + timedelta(days=rule.pending_days),
                expires_at=expires_at_for(policy, occurred_at),
                reason=event_type,
                reference=order_no or key,
                breakdown=award.breakdown,
                now=now,
                channel=rule.channel,
            )
        event = Event.objects.create(
            member=member,
            type=event_type,
            business_date=day,
            occurred_at=occurred_at,
            purchase=purchase,
            payload=payload or {},
            points=award.points,
            capped=award.capped or capped_by_count,
            entry=entry,
        )
        extra = hooks.activity_fields(
            hooks.Activity(kind="event", member=member, occurred_at=occurred_at, event_type=event_type),
            {"growth_awarded": 0, "tier_change": None},
        )
        result = {
            "id": str(event.pk),
            "type": event_type,
            "points": {"awarded": award.points, "breakdown": award.breakdown},
            "capped": event.capped,
            **extra,
        }
        finish_locked(account, claim, result)
    return Outcome(result)


def award_birthday_points(*, member_id, year, actor="job:birthday"):
    """The yearly birthday bonus, in the birthday month of `year`; at most once per member and year (a database
    constraint holds it). Returns the points awarded (0 when already given, not her birthday month or she is
    not active: her status is read under her account lock)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        account = lock_account(member_id)
        member = Member.objects.get(pk=member_id)
        awarded = _award_birthdays_locked(
            {member_id: account}, [member], year=year, on=business_date(now), actor=actor, now=now
        )
    return awarded.get(member_id, 0)


def award_birthdays(member_ids, *, year, on, actor="job:reminders"):
    """award_birthday_points for many members inside the caller's transaction (the reminders job's chunk): their
    accounts locked in one statement in id order (merged members' closed accounts are left alone), then each
    active member whose birthday month `on` is gets her bonus of `year` unless she has it, written in bulk.
    Returns {member_id: points} of the year's birthday bonus of every one of them who has one (given now or
    before)."""
    now = timezone.now()
    members = {
        member.pk: member
        for member in Member.objects.filter(pk__in=member_ids).exclude(status=MemberStatus.MERGED).order_by("pk")
    }
    accounts = lock_accounts(list(members)) if members else {}
    _award_birthdays_locked(
        accounts, [members[member_id] for member_id in sorted(accounts)], year=year, on=on, actor=actor, now=now
    )
    given = Event.objects.filter(member_id__in=member_ids, type=RuleChannel.BIRTHDAY, business_date__year=year)
    return dict(given.values_list("member_id", "points"))


def _award_birthdays_locked(accounts, members, *, year, on, actor, now):
    """The awards of award_birthday_points and award_birthdays; the caller holds the members' account locks
    (`accounts`: {member_id: PointsAccount}) and read `members` (in id order) under them: their status and
    birthday are current. Each is decided as for her alone (her tier and campaigns through the earn modifiers,
    her daily cap), then all are written in bulk: the entries, lots and points.earned events (ledger.earn_many),
    the birthday events, the accounts. Returns {member_id: points} of those awarded now (0: capped)."""
    due = [
        member
        for member in members
        if member.birthday is not None and member.status == MemberStatus.ACTIVE and on.month == member.birthday.month
    ]
    markers = {member.pk: date(year, member.birthday.month, 1) for member in due}
    if not due:
        return {}
    given = set(
        Event.objects.filter(
            member_id__in=list(markers), type=RuleChannel.BIRTHDAY, business_date__in=set(markers.values())
        ).values_list("member_id", "business_date")
    )
    due = [member for member in due if (member.pk, markers[member.pk]) not in given]
    rule = rule_for(RuleChannel.BIRTHDAY, at=now)
    policy = current_policy(now)
    awards, earnings = {}, []
    with hooks.earns_prefetched([member.pk for member in due]):
        for member in due:
            _decide_birthday(member, accounts[member.pk], year, actor, now, rule, policy, awards, earnings)
    earned = earn_many(earnings, actor=actor, now=now)
    entries = {earning.account.member_id: entry for earning, (entry, _lot) in zip(earnings, earned, strict=True)}
    Event.objects.bulk_create(
        [
            Event(
                member=member,
                type=RuleChannel.BIRTHDAY,
                business_date=markers[member.pk],
                occurred_at=now,
                points=awards[member.pk].points,
                capped=awards[member.pk].capped,
                entry=entries.get(member.pk),
            )
            for member in due
        ]
    )
    save_accounts([accounts[member.pk] for member in due])
    return {member.pk: awards[member.pk].points for member in due}


def _decide_birthday(member, account, year, actor, now, rule, policy, awards, earnings):
    """One member's birthday award as for her alone (her tier and campaigns through the earn modifiers, her daily
    cap, booked on her locked account): into `awards` and, with points, `earnings`."""
    context = hooks.EarnContext(
        member=member,
        channel=RuleChannel.BIRTHDAY,
        base_points=rule.points,
        occurred_at=now,
        reference=f"birthday:{year}",
        actor=actor,
        cap_left=daily_cap_left(account, policy=policy, at=now),
    )
    total, breakdown = with_modifiers(context)
    award = awards[member.pk] = apply_daily_cap(
        account, Award(points=total, breakdown=breakdown), policy=policy, at=now
    )
    if award.points > 0:
        earnings.append(
            Earning(
                account,
                award.points,
                available_at=now,
                expires_at=expires_at_for(policy, now),
                reason="birthday",
                reference=str(year),
                breakdown=award.breakdown,
                channel=RuleChannel.BIRTHDAY,
            )
        )


def award_trigger(*, member_id, trigger, reference, payload=None, actor):
    """Points for something that is neither a purchase nor an event: a member registering, a member moving from
    one RFM segment to another in the nightly run. The points come only from the earn modifiers (campaigns) for
    the `trigger` channel, with base 0, under her account lock; available at once, subject to the daily cap.
    Returns the points awarded (0 when nothing applies or she is not active)."""
    with transaction.atomic(durable=True):
        account = lock_account(member_id)
        member = Member.objects.get(pk=member_id)
        points = award_trigger_locked(
            account, member, trigger=trigger, reference=reference, payload=payload, actor=actor
        )
        save_account(account)
    return points


def award_triggers(items, *, trigger, actor):
    """award_trigger for many members inside the caller's transaction (a nightly job's chunk): their accounts
    locked in one statement in id order, their rows read in one. `items`: {member_id: (reference, payload)}.
    Returns {member_id: points} for those awarded."""
    accounts = lock_accounts(list(items))
    members = Member.objects.in_bulk(list(accounts))
    awarded = {}
    for member_id in sorted(accounts):
        reference, payload = items[member_id]
        points = award_trigger_locked(
            accounts[member_id], members[member_id], trigger=trigger, reference=reference, payload=payload, actor=actor
        )
        if points:
            save_account(accounts[member_id])
            awarded[member_id] = points
    return awarded


def award_points_locked(account, *, points, actor, reason, reference, now=None):
    """Points given with something a member bought from the merchant (a stored-value top-up's bonus points): available
    at once, expiring by the policy, not cut by the daily cap (they were paid for). The caller holds the member's
    account lock, inside its own transaction; the account is saved. Returns the earn entry."""
    now = now or timezone.now()
    entry, _ = earn(
        account,
        points=points,
        actor=actor,
        available_at=now,
        expires_at=expires_at_for(current_policy(now), now),
        reason=reason,
        reference=reference,
        breakdown=[{"source": "base", "points": points}],
        now=now,
    )
    save_account(account)
    return entry


def award_trigger_locked(account, member, *, trigger, reference, payload=None, actor):
    """The award of award_trigger; the caller holds the member's account lock."""
    if member.status != MemberStatus.ACTIVE:
        return 0
    now = timezone.now()
    policy = current_policy(now)
    context = hooks.EarnContext(
        member=member,
        channel=trigger,
        base_points=0,
        occurred_at=now,
        reference=reference,
        payload=payload or {},
        actor=actor,
        cap_left=daily_cap_left(account, policy=policy, at=now),
    )
    total, breakdown = with_modifiers(context)
    if total <= 0:
        return 0
    award = apply_daily_cap(account, Award(points=total, breakdown=breakdown), policy=policy, at=now)
    if award.points > 0:
        earn(
            account,
            points=award.points,
            actor=actor,
            available_at=now,
            expires_at=expires_at_for(policy, now),
            reason=trigger,
            reference=reference,
            breakdown=award.breakdown,
            now=now,
            channel=trigger,
        )
    return award.points
