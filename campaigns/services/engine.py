"""The campaign engine: which running campaigns apply to an earn, how they combine, and what they award.

It is an earn modifier of the points engine (points.hooks): it runs inside the purchase's or event's transaction,
after the member's account is locked, so a member's caps, assignments and awards are serialised by that lock.

- Running campaigns are compiled once per process into plain tuples (loyalty.config_cache: saving a campaign or a
  variant clears them in this process at once, other processes within CONFIG_CACHE_SECONDS). Evaluating an earn
  against campaigns that do not apply costs no query; the member's tier, tags and RFM segment are read only when a
  campaign targets them, once per earn.
- Combination, in priority order (higher first, then older): an `exclusive` campaign applies alone after the
  higher ones already taken and stops every lower one; of the `best` campaigns only the one giving the most points
  applies; `stack` campaigns all apply: multipliers multiply (each line is what its factor adds on top of the
  factors before it), bonuses add.
- A member in a campaign's holdout gets nothing from it, and it neither blocks nor stacks for her: as if it did not
  exist. Her assignment is recorded all the same (the results compare the groups).
- Limits: the per-member caps (for the campaign and per period, net of what refunds took back), then what the
  member's daily points cap leaves after the base and tier lines (in priority order), then the total budget, taken
  in campaign-id order (campaigns.services.budgets: a locked update that never lets the total pass the budget). A
  line is cut to what is left; a line cut to 0 is dropped. So a budget is charged only with points given.
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from campaigns.models import (
    DEFAULT_VARIANT,
    HOLDOUT,
    BonusAction,
    Campaign,
    CampaignAward,
    CampaignKind,
    CampaignStatus,
    CampaignVariant,
    CapPeriod,
    CouponSkipped,
    Stacking,
)
from campaigns.models_coupons import CouponSource
from loyalty.clock import business_date, business_tz
from loyalty.config_cache import cached
from members.models import MemberTag, Purchase, RfmSnapshot

from . import budgets
from .assignment import group_for, holdout_buckets

PURCHASE, REFERRAL, REGISTRATION, SEGMENT_MOVE = "purchase", "referral", "registration", "segment_move"
EVENT_CHANNELS = {"sign_in", "share", "review", "custom"}

# Which kinds an earn of each channel can trigger.
KINDS_BY_CHANNEL = {
    PURCHASE: {
        CampaignKind.MULTIPLIER,
        CampaignKind.BONUS,
        CampaignKind.BIRTHDAY,
        CampaignKind.WIN_BACK,
        CampaignKind.REFERRAL,
    },
    REFERRAL: {CampaignKind.REFERRAL},
    REGISTRATION: {CampaignKind.BONUS},
    SEGMENT_MOVE: {CampaignKind.SEGMENT_MOVE},
    **{channel: {CampaignKind.BONUS} for channel in EVENT_CHANNELS},
}
WIN_BACK_STAGES = ("dormant", "lost")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    code: str
    weight: int
    multiplier: Decimal | None
    bonus_points: int | None


@dataclass(frozen=True)
class Compiled:
    """A running campaign as the engine reads it: no query to evaluate it."""

    id: int
    name: str
    kind: str
    priority: int
    stacking: str
    starts_at: object
    ends_at: object
    trigger: dict
    weekdays: frozenset
    hours: frozenset
    categories: frozenset
    min_amount: Decimal | None
    tiers: frozenset
    tags: frozenset
    segments: frozenset
    lifecycle: frozenset
    stores: frozenset
    channels: frozenset
    budgeted: bool
    per_member_cap: int | None
    per_member_period_cap: int | None
    cap_period: str
    holdout: int  # buckets of 10,000
    variants: tuple  # of Variant, in id order
    coupon_template_id: int | None = None

    @property
    def split(self):
        return self.holdout > 0 or len(self.variants) > 1

    def runs_at(self, at):
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)


def _codes(values):
    return frozenset(str(value) for value in values or ())


def compile_campaign(campaign, variants):
    conditions, target = campaign.conditions or {}, campaign.target or {}
    own = Variant(DEFAULT_VARIANT, 100, campaign.multiplier, campaign.bonus_points)
    compiled_variants = tuple(
        Variant(
            v.code,
            v.weight,
            v.multiplier if v.multiplier is not None else campaign.multiplier,
            v.bonus_points if v.bonus_points is not None else campaign.bonus_points,
        )
        for v in variants
    ) or (own,)
    min_amount = conditions.get("min_amount")
    return Compiled(
        id=campaign.pk,
        name=campaign.name,
        kind=campaign.kind,
        priority=campaign.priority,
        stacking=campaign.stacking,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        trigger=dict(campaign.trigger or {}),
        weekdays=frozenset(int(day) for day in conditions.get("weekdays") or ()),
        hours=frozenset(int(hour) for hour in conditions.get("hours") or ()),
        categories=_codes(conditions.get("categories")),
        min_amount=Decimal(str(min_amount)) if min_amount not in (None, "") else None,
        tiers=_codes(target.get("tiers")),
        tags=_codes(target.get("tags")),
        segments=_codes(target.get("segments")),
        lifecycle=_codes(target.get("lifecycle")),
        stores=_codes(target.get("stores")),
        channels=_codes(target.get("channels")),
        budgeted=campaign.budget_points is not None,
        per_member_cap=campaign.per_member_cap,
        per_member_period_cap=campaign.per_member_period_cap if campaign.cap_period else None,
        cap_period=campaign.cap_period,
        holdout=holdout_buckets(campaign.holdout_percent),
        variants=compiled_variants,
        coupon_template_id=campaign.coupon_template_id,
    )


def _load_running():
    now = timezone.now()
    campaigns = list(
        Campaign.objects.filter(status__in=[CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE]).filter(
            Q(ends_at__isnull=True) | Q(ends_at__gt=now)
        )
    )
    variants = {}
    for variant in CampaignVariant.objects.filter(campaign__in=campaigns).order_by("id"):
        variants.setdefault(variant.campaign_id, []).append(variant)
    compiled = [compile_campaign(campaign, variants.get(campaign.pk, [])) for campaign in campaigns]
    compiled.sort(key=lambda c: (-c.priority, c.id))
    by_channel = {channel: tuple(c for c in compiled if c.kind in kinds) for channel, kinds in KINDS_BY_CHANNEL.items()}
    return by_channel


def running_campaigns(channel):
    """The scheduled and active campaigns an earn of `channel` could trigger, highest priority first."""
    by_channel = cached("campaigns.running", _load_running, models=[Campaign, CampaignVariant])
    return by_channel.get(channel, ())


class Facts:
    """What the targeting reads about the member, each read at most once per earn and only when asked."""

    def __init__(self, context):
        self.context = context
        self.member = context.member
        self._tags = self._rfm = self._tier = None

    @property
    def tier(self):
        if self._tier is None:
            from tiers.services import current_tier

            tier, _ = current_tier(self.member.pk)
            self._tier = tier.code if tier else ""
        return self._tier

    @property
    def tags(self):
        if self._tags is None:
            self._tags = frozenset(
                MemberTag.objects.filter(member_id=self.member.pk, tag__is_active=True).values_list(
                    "tag__code", flat=True
                )
            )
        return self._tags

    @property
    def rfm(self):
        if self._rfm is None:
            row = (
                RfmSnapshot.objects.filter(member_id=self.member.pk)
                .order_by("-as_of")
                .values_list("segment", "lifecycle")
                .first()
            )
            self._rfm = row or ("", "")
        return self._rfm

    @property
    def store_code(self):
        store = self.context.store if self.context.channel == PURCHASE else None
        if store is None and self.context.channel != PURCHASE:
            store = self.member.home_store
        return store.code if store else ""


def targets(campaign, facts):
    """Whether the campaign's target includes the member (empty lists: everyone)."""
    context = facts.context
    if campaign.stores and facts.store_code not in campaign.stores:
        return False
    if campaign.channels and (context.channel != PURCHASE or context.purchase_channel not in campaign.channels):
        return False
    if campaign.tiers and facts.tier not in campaign.tiers:
        return False
    if campaign.segments and facts.rfm[0] not in campaign.segments:
        return False
    if campaign.lifecycle and facts.rfm[1] not in campaign.lifecycle:
        return False
    return not campaign.tags or bool(campaign.tags & facts.tags)


def _local(at):
    return at.astimezone(business_tz())


def _in_scope_share(campaign, context):
    """The share of the purchase the campaign's categories cover (1 without categories; None: no lines to tell)."""
    if not campaign.categories:
        return Decimal(1)
    lines = context.lines or ()
    total = sum((Decimal(line["quantity"]) * Decimal(line["unit_price"]) for line in lines), Decimal(0))
    if total <= 0:
        return None
    covered = sum(
        (
            Decimal(line["quantity"]) * Decimal(line["unit_price"])
            for line in lines
            if line.get("category") in campaign.categories
        ),
        Decimal(0),
    )
    return covered / total


def _purchased_before(context, since=None):
    purchases = Purchase.objects.filter(member_id=context.member.pk)
    if since is not None:
        purchases = purchases.filter(occurred_at__gte=since)
    if context.purchase is not None:
        purchases = purchases.exclude(pk=context.purchase.pk)
    return purchases.filter(occurred_at__lte=context.occurred_at).exists()


def _awarded_before(campaign, context, since=None):
    awards = CampaignAward.objects.filter(campaign_id=campaign.id, member_id=context.member.pk)
    if since is not None:
        awards = awards.filter(business_date__gte=since)
    return awards.exists()


def triggered(campaign, context, facts):
    """Whether the earn is what the campaign rewards (its kind, trigger and conditions)."""
    at = _local(context.occurred_at)
    trigger = campaign.trigger
    if campaign.weekdays and at.isoweekday() not in campaign.weekdays:
        return False
    if campaign.hours and at.hour not in campaign.hours:
        return False
    if context.channel == PURCHASE and campaign.min_amount is not None and (context.amount or 0) < campaign.min_amount:
        return False
    kind = campaign.kind
    if kind == CampaignKind.MULTIPLIER:
        return context.channel == PURCHASE
    if kind == CampaignKind.BONUS:
        action = trigger.get("action")
        if action == BonusAction.FIRST_PURCHASE_IN_DAYS:
            days = int(trigger.get("days") or 30)
            return context.channel == PURCHASE and not _purchased_before(
                context, since=context.occurred_at - timedelta(days=days)
            )
        if action == BonusAction.SIGN_IN_STREAK:
            days = int(trigger.get("days") or 7)
            return context.channel == "sign_in" and context.streak > 0 and context.streak % days == 0
        if action in (BonusAction.REVIEW, BonusAction.SHARE):
            return context.channel == action
        if action == BonusAction.REGISTRATION:
            return context.channel == REGISTRATION and not _awarded_before(campaign, context)
        if action == BonusAction.EVENT:
            return context.channel == "custom" and context.event_type == trigger.get("event_type")
        return False
    if kind == CampaignKind.BIRTHDAY:
        birthday = facts.member.birthday
        if context.channel != PURCHASE or birthday is None or birthday.month != at.month:
            return False
        if _has_bonus(campaign):  # a birthday bonus: once a year
            return not _awarded_before(campaign, context, since=at.date().replace(month=1, day=1))
        return True
    if kind == CampaignKind.WIN_BACK:
        stages = set(trigger.get("lifecycle") or WIN_BACK_STAGES)
        return (
            context.channel == PURCHASE
            and facts.rfm[1] in stages
            and not _awarded_before(campaign, context)  # once per member
        )
    if kind == CampaignKind.REFERRAL:
        if context.channel == REFERRAL:
            return True
        return context.channel == PURCHASE and facts.member.referrer_id is not None and not _purchased_before(context)
    if kind == CampaignKind.SEGMENT_MOVE:
        return _segment_move_matches(trigger, context.payload)
    return False


def _segment_move_matches(trigger, move):
    for field in ("segment", "lifecycle"):
        want_from, want_to = trigger.get(f"from_{field}"), trigger.get(f"to_{field}")
        if want_from is None and want_to is None:
            continue
        if want_to is not None and move.get(f"to_{field}") != want_to:
            return False
        if want_from is not None and move.get(f"from_{field}") != want_from:
            return False
        return move.get(f"from_{field}") != move.get(f"to_{field}")
    return False


def _has_bonus(campaign):
    """A bonus (or a coupon-only) campaign: no variant multiplies."""
    gives = campaign.coupon_template_id is not None or any(variant.bonus_points for variant in campaign.variants)
    return gives and not any(variant.multiplier for variant in campaign.variants)


@dataclass
class Offer:
    campaign: Compiled
    group: str
    multiplier: Decimal | None
    bonus: int
    share: Decimal  # the part of the base a multiplier covers
    points: int = 0

    @property
    def coupon_only(self):
        """An award without points that still counts: the campaign's coupon is all it gives this group."""
        return self.campaign.coupon_template_id is not None and self.multiplier is None and not self.bonus

    @property
    def awards(self):
        return self.points > 0 or self.coupon_only


def _offer(campaign, group, context):
    variant = next(v for v in campaign.variants if v.code == group)
    if campaign.kind == CampaignKind.REFERRAL and context.channel == REFERRAL:
        points = campaign.trigger.get("referrer_points")
        bonus = int(points) if points not in (None, "") else (variant.bonus_points or 0)
        return Offer(campaign, group, None, bonus, Decimal(1))
    if variant.multiplier is not None and campaign.kind in (CampaignKind.MULTIPLIER, CampaignKind.BIRTHDAY):
        share = _in_scope_share(campaign, context)
        if share is None or share <= 0:
            return None
        return Offer(campaign, group, variant.multiplier, 0, share)
    return Offer(campaign, group, None, variant.bonus_points or 0, Decimal(1))


def _floor(value):
    return int(value.to_integral_value(ROUND_FLOOR))


def _standalone_points(offer, base):
    if offer.multiplier is not None:
        return max(_floor(Decimal(base) * offer.share * (offer.multiplier - 1)), 0)
    return offer.bonus


def combine(offers, base):
    """The offers that apply and their points, by the stacking rules (offers in priority order)."""
    taken = []
    for offer in offers:
        taken.append(offer)
        if offer.campaign.stacking == Stacking.EXCLUSIVE:
            break
    best = [offer for offer in taken if offer.campaign.stacking == Stacking.BEST]
    if len(best) > 1:
        winner = max(best, key=lambda offer: _standalone_points(offer, base))  # ties: the higher priority
        taken = [offer for offer in taken if offer.campaign.stacking != Stacking.BEST or offer is winner]
    factor = Decimal(1)
    for offer in taken:
        if offer.multiplier is not None:
            offer.points = max(_floor(Decimal(base) * offer.share * factor * (offer.multiplier - 1)), 0)
            factor *= offer.multiplier
        else:
            offer.points = offer.bonus
    return [offer for offer in taken if offer.awards]


def _period_start(period, day):
    if period == CapPeriod.DAY:
        return day
    if period == CapPeriod.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _apply_member_caps(offers, member_id, day):
    """Cut each offer to what is left of the member's caps (net of refunds). One query for all capped offers."""
    capped = [offer for offer in offers if offer.campaign.per_member_cap or offer.campaign.per_member_period_cap]
    if not capped:
        return
    net = Sum("points") - Sum("points_returned")
    sums = {"total": net}
    for period in CapPeriod.values:
        start = _period_start(period, day)
        sums[period] = Sum("points", filter=Q(business_date__gte=start)) - Sum(
            "points_returned", filter=Q(business_date__gte=start)
        )
    used = {
        row["campaign_id"]: row
        for row in CampaignAward.objects.filter(member_id=member_id, campaign_id__in=[o.campaign.id for o in capped])
        .values("campaign_id")
        .annotate(**sums)
    }
    for offer in capped:
        row = used.get(offer.campaign.id, {})
        campaign = offer.campaign
        if campaign.per_member_cap is not None:
            offer.points = min(offer.points, max(campaign.per_member_cap - (row.get("total") or 0), 0))
        if campaign.per_member_period_cap is not None:
            left = campaign.per_member_period_cap - (row.get(campaign.cap_period) or 0)
            offer.points = min(offer.points, max(left, 0))


def _apply_daily_cap(offers, context):
    """Cut the lines, in priority order, to what the member's daily cap leaves after the lines before them (base,
    tier), so that a budget is charged only with points the member really gets."""
    if context.cap_left is None:
        return
    left = context.cap_left - sum(line["points"] for line in context.earlier)
    for offer in offers:
        offer.points = max(min(offer.points, left), 0)
        left -= offer.points


def campaign_lines(context):
    """Earn modifier: the campaign lines of an earn (`campaign:<id>` with `campaign_name`), recorded as awards."""
    campaigns = running_campaigns(context.channel)
    if not campaigns:
        return []
    at = context.occurred_at
    facts = Facts(context)
    offers, assigned = [], []
    for campaign in campaigns:
        if not campaign.runs_at(at) or not targets(campaign, facts) or not triggered(campaign, context, facts):
            continue
        group = (
            group_for(
                campaign.id,
                context.member.pk,
                holdout=campaign.holdout,
                variants=[(v.code, v.weight) for v in campaign.variants],
            )
            if campaign.split
            else campaign.variants[0].code
        )
        assigned.append((campaign, group))
        if group == HOLDOUT:
            continue
        offer = _offer(campaign, group, context)
        if offer is not None:
            offers.append(offer)
    chosen = combine(offers, context.base_points)
    day = business_date(at)
    _apply_member_caps(chosen, context.member.pk, day)
    _apply_daily_cap(chosen, context)
    chosen = [offer for offer in chosen if offer.awards]
    if context.preview:
        for offer in chosen:
            if offer.campaign.budgeted:
                offer.points = min(offer.points, budgets.left(offer.campaign.id))
    else:
        for offer in sorted(chosen, key=lambda o: o.campaign.id):  # budget rows are locked in id order
            if offer.campaign.budgeted and offer.points > 0:
                offer.points = budgets.take(offer.campaign.id, offer.points, name=offer.campaign.name)
        chosen = [offer for offer in chosen if offer.awards]
        _record(assigned, chosen, context, day)
    return [
        {"source": f"campaign:{offer.campaign.id}", "points": offer.points, "campaign_name": offer.campaign.name}
        for offer in chosen
        if offer.points > 0
    ]


def _reference(reference):
    """The award's reference as stored (at most 120 characters: a long idempotency key is kept as its digest)."""
    if len(reference) <= 120:
        return reference
    return f"{reference.split(':', 1)[0]}:sha256:{hashlib.sha256(reference.encode()).hexdigest()}"


ASSIGN_SQL = """
INSERT INTO campaigns_campaignassignment (campaign_id, member_id, "group", assigned_at, first_awarded_at)
VALUES {rows}
ON CONFLICT (campaign_id, member_id) DO UPDATE SET first_awarded_at = excluded.first_awarded_at
WHERE campaigns_campaignassignment.first_awarded_at IS NULL AND excluded.first_awarded_at IS NOT NULL
RETURNING campaign_id
"""
AWARD_SQL = """
INSERT INTO campaigns_campaignaward (campaign_id, member_id, "group", points, points_returned, purchase_id,
                                     reference, business_date, created_at, coupon_id, coupon_skipped)
VALUES {rows}
"""


def _issue_coupon(campaign, member_id, now):
    """The campaign's coupon for an award, in the earn's transaction (after her account lock and the budget rows;
    campaigns.services.coupons takes the template row's lock): (coupon id, ""), or (None, why) when the template is
    used up, she holds its per-member limit, or it is inactive or ended. A skip is not an error: the points award
    all the same, the award row says why, and it is logged. Once per award: a replayed earn never reaches here, and
    an award that fails to record rolls its coupon back with it."""
    if campaign.coupon_template_id is None:
        return None, ""
    from campaigns.services import coupons

    reasons = {
        coupons.OutOfStock: CouponSkipped.OUT_OF_STOCK,
        coupons.LimitReached: CouponSkipped.LIMIT_REACHED,
        coupons.TemplateInactive: CouponSkipped.TEMPLATE_INACTIVE,
    }
    try:
        with transaction.atomic():  # a skip leaves nothing behind, and the earn goes on
            (coupon,) = coupons.issue_within(
                actor=f"campaign:{campaign.id}",
                template_id=campaign.coupon_template_id,
                member_ids=[member_id],
                source=CouponSource.CAMPAIGN,
                source_ref=f"campaign:{campaign.id}",
                now=now,
            )
    except tuple(reasons) as error:
        reason = reasons[type(error)]
        logger.info(
            "campaign %s: no coupon of template %s for member %s (%s)",
            campaign.id,
            campaign.coupon_template_id,
            member_id,
            reason,
        )
        return None, reason
    return coupon.pk, ""


def _record(assigned, chosen, context, day):
    """Record the member's groups (new ones; `first_awarded_at` on her first award in a campaign) and the awards,
    and book the growth of a first award. One statement on PostgreSQL (the award INSERT rides in a WITH clause),
    two elsewhere: the same rows either way."""
    if not assigned:
        return
    now = timezone.now()
    member_id = context.member.pk
    awarded = {offer.campaign.id for offer in chosen}
    assign_rows, assign_params = [], []
    for campaign, group in assigned:
        assign_rows.append("(%s, %s, %s, %s, %s)")
        assign_params += [campaign.id, member_id, group, now, now if campaign.id in awarded else None]
    purchase_id = context.purchase.pk if context.channel == PURCHASE and context.purchase is not None else None
    reference = "" if purchase_id else _reference(context.reference)
    award_rows, award_params = [], []
    for offer in chosen:
        coupon_id, skipped = _issue_coupon(offer.campaign, member_id, now)
        award_rows.append("(%s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s)")
        award_params += [
            offer.campaign.id,
            member_id,
            offer.group,
            offer.points,
            purchase_id,
            reference,
            day,
            now,
            coupon_id,
            skipped,
        ]
    assign_sql = ASSIGN_SQL.format(rows=", ".join(assign_rows))
    with connection.cursor() as cursor:
        if award_rows and connection.vendor == "postgresql":
            award_sql = AWARD_SQL.format(rows=", ".join(award_rows))
            cursor.execute(
                # Only rows of "%s" placeholders are formatted into the statements; the values are parameters.
                f"WITH assigned AS ({assign_sql}), awarded AS ({award_sql}) SELECT campaign_id FROM assigned",  # noqa: S608
                assign_params + award_params,
            )
            touched = {row[0] for row in cursor.fetchall()}
        else:
            cursor.execute(assign_sql, assign_params)
            touched = {row[0] for row in cursor.fetchall()}
            if award_rows:
                cursor.execute(AWARD_SQL.format(rows=", ".join(award_rows)), award_params)
    first_awards = touched & awarded  # inserted with an award, or given its first award now
    if first_awards:
        from tiers.services import book_campaign_growth

        book_campaign_growth(member_id, at=context.occurred_at, campaigns=len(first_awards))


def return_refunded_points(activity):
    """Activity listener: a refund gives each campaign's points of the purchase back to its budget, in proportion
    to the refunded amount (cumulative, so a full refund in parts returns exactly all)."""
    if activity.kind != "refund" or activity.preview or activity.purchase is None:
        return {}
    purchase = activity.purchase
    awards = list(CampaignAward.objects.filter(purchase=purchase).order_by("campaign_id", "id"))
    for award in awards:
        # Multiplied before divided: the product is exact, so an exact share stays whole (188 × 50 / 188 is 50,
        # where 188 × (50 / 188) is 49.99… and would floor to 49).
        if purchase.amount:
            target = _floor(Decimal(award.points) * purchase.refunded_amount / purchase.amount)
        else:
            target = award.points
        returned = min(target, award.points) - award.points_returned
        if returned <= 0:
            continue
        CampaignAward.objects.filter(pk=award.pk).update(points_returned=award.points_returned + returned)
        budgets.give_back(award.campaign_id, returned)
    return {}
