"""Tiers and growth value: the ladder, the versioned growth policy, the append-only growth ledger, each member's
current tier with its hold period, and the history of tier changes. Only tiers.services writes these tables."""

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from members.models import Member, MemberMerge, Tag


class Tier(models.Model):
    code = models.SlugField(_("code"), max_length=30, unique=True)
    name = models.CharField(_("name"), max_length=50)
    rank = models.PositiveSmallIntegerField(_("rank"), unique=True, help_text=_("0 is the entry tier."))
    entry_threshold = models.PositiveIntegerField(_("entry threshold (growth)"))
    retention_threshold = models.PositiveIntegerField(_("retention threshold (growth)"))
    hold_days = models.PositiveSmallIntegerField(_("hold period (days)"), default=365)
    points_multiplier = models.DecimalField(
        _("points multiplier"), max_digits=4, decimal_places=2, default=Decimal("1.00")
    )
    birthday_bonus = models.PositiveIntegerField(_("birthday bonus points"), default=0)
    discount_rate = models.DecimalField(
        _("discount rate"),
        max_digits=4,
        decimal_places=2,
        default=Decimal("1.00"),
        # xgettext:no-python-format (a per cent sign, not a placeholder)
        help_text=_("What the POS charges: 0.95 = 5% off."),
    )
    free_shipping = models.BooleanField(_("free shipping"), default=False)
    benefits = models.TextField(_("other benefits"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rank"]
        verbose_name = _("tier")
        verbose_name_plural = _("tiers")
        constraints = [
            models.CheckConstraint(
                condition=Q(retention_threshold__lte=models.F("entry_threshold")), name="tier_retention_not_above_entry"
            ),
            models.CheckConstraint(condition=Q(points_multiplier__gte=1), name="tier_multiplier_at_least_one"),
            models.CheckConstraint(
                condition=Q(discount_rate__gt=0) & Q(discount_rate__lte=1), name="tier_discount_rate_fraction"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.code})"


class GrowthPolicy(models.Model):
    """Weights of the indicators that make growth value. Versioned: the newest valid_from that has passed
    applies (the dynamic method); a version for a tag applies to members with that tag (the persona method)."""

    name = models.CharField(_("name"), max_length=100)
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    tag = models.ForeignKey(
        Tag,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="growth_policies",
        help_text=_("Empty: every member. Set: members with this tag (the persona method)."),
    )
    priority = models.SmallIntegerField(_("priority"), default=0, help_text=_("Among tag policies: highest wins."))
    per_currency_unit = models.DecimalField(
        _("per 1 currency unit paid"), max_digits=8, decimal_places=2, default=Decimal("1.0")
    )
    per_order = models.DecimalField(_("per order"), max_digits=8, decimal_places=2, default=Decimal("10"))
    per_active_day = models.DecimalField(
        _("per active day (sign-in)"), max_digits=8, decimal_places=2, default=Decimal("2")
    )
    per_share = models.DecimalField(_("per share"), max_digits=8, decimal_places=2, default=Decimal("1"))
    per_review = models.DecimalField(_("per review"), max_digits=8, decimal_places=2, default=Decimal("1"))
    per_campaign = models.DecimalField(
        _("per campaign participated"), max_digits=8, decimal_places=2, default=Decimal("5")
    )
    window_days = models.PositiveSmallIntegerField(_("qualification window (days)"), default=365)
    created_by = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("growth policy")
        verbose_name_plural = _("growth policies")

    def __str__(self):
        starts = timezone.localtime(self.valid_from).date()  # the business date
        return gettext("%(name)s (from %(date)s)") % {"name": self.name, "date": starts}


class GrowthEntry(models.Model):
    """Growth value earned (or reversed) by one activity. Append-only, like the points ledger."""

    # No index of its own: growth_member_time_cover_idx starts with member_id.
    member = models.ForeignKey(Member, models.PROTECT, related_name="growth_entries", db_index=False)
    kind = models.CharField(_("kind"), max_length=12)  # purchase, refund, sign_in, share, review, campaign
    value = models.IntegerField(_("growth value"))
    occurred_at = models.DateTimeField(_("occurred at"))
    reference = models.CharField(_("reference"), max_length=100, blank=True)
    # No index by policy (policies are versions, never deleted, and nothing reads entries by policy); the merge's
    # index is partial (growth_merge_idx): merge is NULL on every entry but a merge's mirrors.
    policy = models.ForeignKey(GrowthPolicy, models.PROTECT, null=True, related_name="entries", db_index=False)
    merge = models.ForeignKey(
        MemberMerge,
        models.PROTECT,
        null=True,
        blank=True,
        db_index=False,
        related_name="growth_entries",
        help_text=_(
            "Set on the mirror entries of a merge: the duplicate's entry negated on her, "
            "and copied (same kind, reference and date) on the survivor."
        ),
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("growth entry")
        verbose_name_plural = _("growth entries")
        indexes = [
            # Covering (value): a member's growth in a window (the nightly downgrade for 100,000 member ids a chunk,
            # a purchase's tier check) is summed from the index alone; the entries are in time order, so reading
            # the table took a heap page per entry.
            models.Index(fields=["member", "occurred_at"], include=["value"], name="growth_member_time_cover_idx"),
            models.Index(fields=["merge"], name="growth_merge_idx", condition=Q(merge__isnull=False)),
        ]

    def __str__(self):
        return f"{self.kind} {self.value:+d}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Growth entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Growth entries are append-only.")


class MemberTier(models.Model):
    """A member's current tier. No row: the entry tier (rank 0) since she joined."""

    member = models.OneToOneField(Member, models.PROTECT, primary_key=True, related_name="member_tier")
    tier = models.ForeignKey(Tier, models.PROTECT, related_name="member_tiers")
    since = models.DateTimeField(_("since"))
    hold_until = models.DateField(
        _("held until"), null=True, blank=True, help_text=_("No downgrade before this business date.")
    )
    window_growth = models.IntegerField(_("growth in the window (cached)"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("member tier")
        verbose_name_plural = _("member tiers")
        indexes = [models.Index(fields=["hold_until", "member"], name="member_tier_hold_idx")]

    def __str__(self):
        return gettext("member %(member)s: tier %(tier)s") % {"member": self.member_id, "tier": self.tier_id}


# Why a tier changed (TierChange.reason), as the admin shows it.
TIER_CHANGE_REASONS = {
    "upgrade": _("upgrade"),
    "downgrade": _("downgrade"),
    "manual": _("manual"),
    "merge": _("merge"),
}


class TierChange(models.Model):
    member = models.ForeignKey(Member, models.PROTECT, related_name="tier_changes")
    from_tier = models.ForeignKey(Tier, models.PROTECT, null=True, related_name="+")
    to_tier = models.ForeignKey(Tier, models.PROTECT, related_name="+")
    reason = models.CharField(_("reason"), max_length=20)  # upgrade, downgrade, manual, merge
    growth_value = models.IntegerField(_("growth in the window"))
    business_date = models.DateField(_("business date"))
    at = models.DateTimeField(_("at"), default=timezone.now)
    actor = models.CharField(max_length=120, blank=True)

    class Meta:
        verbose_name = _("tier change")
        verbose_name_plural = _("tier changes")
        indexes = [models.Index(fields=["member", "-at"], name="tier_change_member_idx")]

    def __str__(self):
        reason = TIER_CHANGE_REASONS.get(self.reason, self.reason)
        return f"{self.member_id}: {self.from_tier_id} → {self.to_tier_id} ({reason})"
