"""Campaigns (SPEC §5): what a marketer runs on top of the earning rules, whom each member was assigned to in it
(A/B variants and the holdout), and every award it made (its budget, caps, refunds and results read these).
Coupon templates and coupons live in campaigns.models_coupons (imported here so Django finds them)."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from campaigns.models_coupons import Coupon, CouponBatch, CouponTemplate  # noqa: F401 - the coupons' tables (SPEC §10)
from members.models import Member, Purchase

HOLDOUT = "holdout"
DEFAULT_VARIANT = "default"


class CampaignKind(models.TextChoices):
    MULTIPLIER = "multiplier", _("points multiplier")
    BONUS = "bonus", _("bonus for an action")
    BIRTHDAY = "birthday", _("birthday month")
    WIN_BACK = "win_back", _("win-back")
    REFERRAL = "referral", _("referral")
    SEGMENT_MOVE = "segment_move", _("segment move")


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    SCHEDULED = "scheduled", _("scheduled")
    ACTIVE = "active", _("active")
    PAUSED = "paused", _("paused")
    ENDED = "ended", _("ended")


class Stacking(models.TextChoices):
    STACK = "stack", _("stacks with others")
    BEST = "best", _("the best one applies")
    EXCLUSIVE = "exclusive", _("exclusive")


class BonusAction(models.TextChoices):
    FIRST_PURCHASE_IN_DAYS = "first_purchase_in_days", _("first purchase in N days")
    SIGN_IN_STREAK = "sign_in_streak", _("N-day sign-in streak")
    REVIEW = "review", _("review")
    SHARE = "share", _("share")
    REGISTRATION = "registration", _("registration")
    EVENT = "event", _("a custom event")


class CapPeriod(models.TextChoices):
    DAY = "day", _("day")
    WEEK = "week", _("week")
    MONTH = "month", _("month")


class Campaign(models.Model):
    """A campaign's terms. Terms stay fixed while it runs (pause it to change them, or copy it as a new
    version): campaigns.services holds the rule. `budget_used` is the one column written while it runs, by a
    locked update per award (campaigns.services.budgets)."""

    name = models.CharField(_("name"), max_length=120)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(_("kind"), max_length=16, choices=CampaignKind.choices)
    status = models.CharField(_("status"), max_length=12, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    priority = models.IntegerField(_("priority"), default=0, help_text=_("Higher first."))
    stacking = models.CharField(_("stacking"), max_length=10, choices=Stacking.choices, default=Stacking.STACK)
    multiplier = models.DecimalField(
        _("multiplier"),
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    bonus_points = models.PositiveIntegerField(_("bonus points"), null=True, blank=True)
    trigger = models.JSONField(_("trigger"), default=dict, blank=True)
    conditions = models.JSONField(_("conditions"), default=dict, blank=True)
    target = models.JSONField(_("target"), default=dict, blank=True)
    budget_points = models.PositiveIntegerField(_("points budget"), null=True, blank=True)
    budget_used = models.PositiveIntegerField(_("budget used"), default=0)
    # What the last take from the budget granted, set by the same UPDATE that moves budget_used (PostgreSQL 15 cannot
    # return a row's old values): campaigns.services.budgets.take reads it back from RETURNING.
    budget_last_taken = models.PositiveIntegerField(default=0, editable=False)
    per_member_cap = models.PositiveIntegerField(_("cap per member"), null=True, blank=True)
    per_member_period_cap = models.PositiveIntegerField(_("cap per member and period"), null=True, blank=True)
    cap_period = models.CharField(_("cap period"), max_length=8, choices=CapPeriod.choices, blank=True)
    holdout_percent = models.DecimalField(
        _("holdout %"),
        max_digits=5,
        decimal_places=2,
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    copied_from = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="copies", verbose_name=_("copied from")
    )
    created_by = models.CharField(_("created by"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)
    budget_exhausted_at = models.DateTimeField(_("budget exhausted at"), null=True, blank=True)
    coupon_template = models.ForeignKey(
        CouponTemplate,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="campaigns",
        verbose_name=_("coupon template"),
        help_text=_(
            "Each award also issues the member one coupon of this template (while its quantity and limit allow)."
        ),
    )

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ["-priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(budget_points__isnull=True) | models.Q(budget_used__lte=models.F("budget_points")),
                name="campaign_budget_never_exceeded",
            ),
            models.CheckConstraint(
                condition=models.Q(ends_at__isnull=True) | models.Q(ends_at__gt=models.F("starts_at")),
                name="campaign_ends_after_start",
            ),
        ]
        indexes = [models.Index(fields=["status", "starts_at"], name="campaign_status_idx")]

    def __str__(self):
        return self.name

    def status_at(self, now):
        """The status as it stands at `now`: an activated campaign is scheduled before its start and ended after
        its end (the stored status says what a marketer last did)."""
        if self.status in (CampaignStatus.SCHEDULED, CampaignStatus.ACTIVE):
            if self.ends_at is not None and now >= self.ends_at:
                return CampaignStatus.ENDED
            return CampaignStatus.SCHEDULED if now < self.starts_at else CampaignStatus.ACTIVE
        return self.status


class CampaignVariant(models.Model):
    """An A/B variant: its share of the members who are not held out, and its own multiplier or bonus (empty:
    the campaign's)."""

    campaign = models.ForeignKey(Campaign, models.CASCADE, related_name="variants")
    code = models.SlugField(_("code"), max_length=30)
    weight = models.PositiveIntegerField(_("weight"), validators=[MinValueValidator(1), MaxValueValidator(100)])
    multiplier = models.DecimalField(
        _("multiplier"),
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    bonus_points = models.PositiveIntegerField(_("bonus points"), null=True, blank=True)

    class Meta:
        verbose_name = _("variant")
        verbose_name_plural = _("variants")
        ordering = ["campaign", "id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "code"], name="variant_code_unique_in_campaign")]

    def __str__(self):
        return f"{self.campaign_id}:{self.code}"


class CampaignAssignment(models.Model):
    """The group a member is in for a campaign (a variant's code or `holdout`), recorded when she is first
    evaluated for it. The group itself is a stable hash of (campaign, member): campaigns.services.assignment."""

    campaign = models.ForeignKey(Campaign, models.CASCADE, related_name="assignments")
    member = models.ForeignKey(Member, models.CASCADE, related_name="campaign_assignments")
    group = models.CharField(_("group"), max_length=30)
    assigned_at = models.DateTimeField(_("assigned at"), default=timezone.now)
    first_awarded_at = models.DateTimeField(_("first awarded at"), null=True, blank=True)

    class Meta:
        verbose_name = _("assignment")
        verbose_name_plural = _("assignments")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member"], name="one_assignment_per_member_and_campaign")
        ]
        indexes = [models.Index(fields=["member"], name="assignment_member_idx")]

    def __str__(self):
        return gettext("campaign %(campaign)s: member %(member)s → %(group)s") % {
            "campaign": self.campaign_id,
            "member": self.member_id,
            "group": self.group,
        }


class CouponSkipped(models.TextChoices):
    OUT_OF_STOCK = "out_of_stock", _("the template's quantity is used up")
    LIMIT_REACHED = "limit_reached", _("she holds the template's per-member limit")
    TEMPLATE_INACTIVE = "template_inactive", _("the template is inactive or ended")


class CampaignAward(models.Model):
    """Points a campaign gave a member: one row per award (a purchase's campaign line, an event's bonus, a segment
    move). `points_returned` grows when a refund takes part of a purchase's points back (and gives it back to the
    budget). A campaign with a coupon template records the coupon the award issued, or why none was
    (`coupon_skipped`); a coupon-only campaign's awards have 0 points."""

    campaign = models.ForeignKey(Campaign, models.PROTECT, related_name="awards")
    member = models.ForeignKey(Member, models.CASCADE, related_name="campaign_awards")
    group = models.CharField(_("group"), max_length=30)
    points = models.PositiveIntegerField(_("points"))
    points_returned = models.PositiveIntegerField(_("points returned"), default=0)
    purchase = models.ForeignKey(Purchase, models.CASCADE, null=True, blank=True, related_name="campaign_awards")
    reference = models.CharField(_("reference"), max_length=120, blank=True)
    business_date = models.DateField(_("business date"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    coupon = models.ForeignKey(
        Coupon, models.SET_NULL, null=True, blank=True, related_name="campaign_awards", verbose_name=_("coupon")
    )
    coupon_skipped = models.CharField(_("coupon skipped"), max_length=20, choices=CouponSkipped.choices, blank=True)

    class Meta:
        verbose_name = _("campaign award")
        verbose_name_plural = _("campaign awards")
        indexes = [
            models.Index(fields=["member", "campaign", "business_date"], name="award_member_idx"),
            models.Index(fields=["campaign", "business_date"], name="award_campaign_idx"),
            models.Index(fields=["purchase"], name="award_purchase_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(points_returned__lte=models.F("points")), name="award_returns_at_most_its_points"
            ),
            models.UniqueConstraint(
                fields=["campaign", "member", "reference"],
                condition=models.Q(purchase__isnull=True) & ~models.Q(reference=""),
                name="one_award_per_trigger",
            ),
        ]

    def __str__(self):
        return gettext("campaign %(campaign)s → member %(member)s: %(points)s points") % {
            "campaign": self.campaign_id,
            "member": self.member_id,
            "points": self.points,
        }
