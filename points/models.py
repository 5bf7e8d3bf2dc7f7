"""The points ledger: accounts (cached balances), lots (what was earned, when it frees and expires), append-only
entries, and the marketer's rules, policies and rewards. Only points.services writes these tables."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from members.models import Member, Purchase, Store


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are append-only: add a correcting entry instead.")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are append-only: add a correcting entry instead.")


class PointsAccount(models.Model):
    """One row per member caching her balances; the row every points mutation locks first.

    available may be negative only after a refund claws back points already spent (SPEC §2)."""

    member = models.OneToOneField(Member, models.PROTECT, primary_key=True, related_name="points_account")
    available = models.BigIntegerField(_("available"), default=0)
    pending = models.BigIntegerField(_("pending"), default=0)
    lifetime_earned = models.BigIntegerField(_("lifetime earned"), default=0)
    lifetime_spent = models.BigIntegerField(_("lifetime spent"), default=0)
    lifetime_expired = models.BigIntegerField(_("lifetime expired"), default=0)
    # Daily cap bookkeeping and the sign-in streak, kept here because this row is locked anyway.
    cap_date = models.DateField(null=True, blank=True)
    earned_on_cap_date = models.BigIntegerField(default=0)
    last_sign_in = models.DateField(null=True, blank=True)
    sign_in_streak = models.IntegerField(default=0)
    closed = models.BooleanField(
        _("closed"),
        default=False,
        help_text=_("Closed by a merge: its points moved to the survivor; no further change."),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("points account")
        verbose_name_plural = _("points accounts")
        constraints = [
            models.CheckConstraint(condition=Q(pending__gte=0), name="account_pending_not_negative"),
        ]

    def __str__(self):
        return gettext("%(member)s: %(available)s (+%(pending)s pending)") % {
            "member": self.member_id,
            "available": self.available,
            "pending": self.pending,
        }


class EntryKind(models.TextChoices):
    EARN = "earn", _("earn")
    REDEEM = "redeem", _("redeem")
    EXPIRE = "expire", _("expire")
    ADJUST = "adjust", _("adjust")
    REVERSE = "reverse", _("reverse (refund)")
    RELEASE = "release", _("release")
    DEDUCT = "deduct", _("deduct (points as cash)")
    CANCEL = "cancel", _("cancel (points returned)")
    MERGE = "merge", _("merge")
    TRANSFER = "transfer", _("transfer (household)")


class LedgerEntry(models.Model):
    """One change to a member's points, never updated or deleted (a mistake is corrected by a new entry).

    `points` is the signed amount shown to people; `available_delta` and `pending_delta` say which balance it
    moved (an earn into the pending period moves pending only; its release later moves it to available).
    """

    # No index of its own: ledger_member_idx starts with member_id (one index entry less per entry written).
    member = models.ForeignKey(Member, models.PROTECT, related_name="ledger_entries", db_index=False)
    kind = models.CharField(_("kind"), max_length=8, choices=EntryKind.choices)
    points = models.BigIntegerField(_("points"))
    available_delta = models.BigIntegerField(default=0)
    pending_delta = models.BigIntegerField(default=0)
    balance_after = models.BigIntegerField(_("balance after"))
    pending_after = models.BigIntegerField(default=0)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    reference = models.CharField(_("reference"), max_length=100, blank=True)
    actor = models.CharField(_("actor"), max_length=120)
    breakdown = models.JSONField(_("breakdown"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # Where the change happened, for the reports by store and channel: a purchase's earn (and points used as cash)
    # and its refund's reverse carry the order's store and channel, a redemption and its cancellation the
    # redemption's store, an engagement event or a campaign trigger its channel (sign_in, referral, segment_move,
    # ...). Adjustments, expiry, releases, merges and transfers carry neither: NULL, "unattributed" in reports.
    # No index of its own: reports read them through the daily snapshot (by created_at).
    store = models.ForeignKey(
        Store, models.PROTECT, null=True, blank=True, related_name="+", db_index=False, verbose_name=_("store")
    )
    channel = models.CharField(_("channel"), max_length=16, null=True, blank=True)  # noqa: DJ001 - NULL: unattributed

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        indexes = [
            models.Index(fields=["member", "-id"], name="ledger_member_idx"),
            models.Index(fields=["created_at", "kind"], name="ledger_time_kind_idx"),
            # The daily adjustment totals: one actor's, one member's adjustments of a business day.
            models.Index(fields=["actor", "created_at"], name="ledger_adjust_actor_idx", condition=Q(kind="adjust")),
            models.Index(fields=["member", "created_at"], name="ledger_adjust_member_idx", condition=Q(kind="adjust")),
        ]
        constraints = [
            # Expiry runs once per member and business date: its entry's reference is "expiry:<date>".
            models.UniqueConstraint(
                fields=["member", "reference"], condition=Q(kind="expire"), name="ledger_one_expiry_per_member_and_date"
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.points:+d} → {self.balance_after}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Ledger entries are append-only: add a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Ledger entries are append-only: add a correcting entry instead.")


class LotStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    AVAILABLE = "available", _("available")
    EXPIRED = "expired", _("expired")
    DEBT = "debt", _("debt")
    MERGED = "merged", _("moved by a merge")


class PointsLot(models.Model):
    """Points earned together: free from `available_at`, gone at `expires_at`. Spending takes the soonest
    expiring available lots first. A debt lot (negative remaining) holds what a refund clawed back beyond the
    balance; later earnings pay it off before they can be spent. A merge closes a duplicate's open lots (remaining
    to 0 by a movement; status `merged`, a debt lot stays `debt`) and opens lots with the same remaining points and
    dates on the survivor."""

    # No index of its own: lot_member_expiry_idx starts with member_id.
    member = models.ForeignKey(Member, models.PROTECT, related_name="points_lots", db_index=False)
    # No index by entry or by purchase (two index entries less per lot written): ledger entries and purchases are
    # never deleted, and the two lookups (a transfer's received lots, a refund's lots) name the member too, so
    # lot_member_expiry_idx finds them.
    entry = models.ForeignKey(LedgerEntry, models.PROTECT, related_name="lots", db_index=False)
    status = models.CharField(_("status"), max_length=9, choices=LotStatus.choices)
    points = models.BigIntegerField(_("points"))
    remaining = models.BigIntegerField(_("remaining"))
    earned_at = models.DateTimeField(_("earned at"))
    available_at = models.DateTimeField(_("available at"))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    purchase = models.ForeignKey(
        Purchase, models.PROTECT, null=True, blank=True, related_name="points_lots", db_index=False
    )
    # available_at while the lot is pending, NULL otherwise (a check constraint ties it to the status): what the
    # hourly release finds pending lots by, in an index the nightly expiry never changes.
    pending_until = models.DateTimeField(_("pending until"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("points lot")
        verbose_name_plural = _("points lots")
        # No index names `status` or `remaining` (key, INCLUDE or predicate): PostgreSQL updates a row in place
        # (HOT, no new index entries) only when no indexed column changes, and the nightly expiry and every spend
        # change just those two. A spend, the expiry, the reminders and the summary's expiring dates read a member's
        # lots by expiry from lot_member_expiry_idx; the release finds pending lots by lot_pending_until_idx.
        indexes = [
            models.Index(fields=["member", "expires_at", "id"], name="lot_member_expiry_idx"),
            models.Index(
                fields=["pending_until"], name="lot_pending_until_idx", condition=Q(pending_until__isnull=False)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(status="debt") & Q(remaining__lte=0) & Q(points__lt=0))
                | (~Q(status="debt") & Q(remaining__gte=0) & Q(remaining__lte=models.F("points"))),
                name="lot_remaining_within_points",
            ),
            models.CheckConstraint(
                condition=(
                    Q(status="pending") & Q(pending_until__isnull=False) & Q(pending_until=models.F("available_at"))
                )
                | (~Q(status="pending") & Q(pending_until__isnull=True)),
                name="lot_pending_until_while_pending",
            ),
        ]

    def __str__(self):
        return f"lot {self.pk}: {self.remaining}/{self.points} {self.status}"


class LotMovement(models.Model):
    """Which lots an entry took points from (negative) or gave back to (positive): lets a cancellation return
    points to the very lots they came from, with their original expiry."""

    entry = models.ForeignKey(LedgerEntry, models.PROTECT, related_name="movements")
    lot = models.ForeignKey(PointsLot, models.PROTECT, related_name="movements")
    points = models.BigIntegerField()

    objects = AppendOnlyQuerySet.as_manager()

    # The entry foreign key's own index serves an entry's movements (movement_entry_idx, the same column again, was
    # dropped: one index fewer written per movement, e.g. per lot of the nightly expiry).

    def __str__(self):
        return f"{self.entry_id}→{self.lot_id}: {self.points:+d}"


class ExpiryWatermark(models.Model):
    """Where the nightly expiry starts reading lots by expiry (one row): no lot index tells an open lot from a
    closed one (points.services.maintenance: they would stop the expiry's updates being HOT), so without this the
    expiry would read, every night, every lot already closed on earlier nights.

    Every available lot still open has expires_at >= the least of the three dates (NULL: no bound). closed_before:
    the last completed run closed every lot expiring before it. reopened_from: lowered (LEAST) by whatever opens a
    lot that may be behind a run (an import of old purchases, a merge, a transfer, a return, a release after the
    lot's expiry date: ledger.note_late_lots). run_from: what the run in progress (run_started_at, for run_as_of)
    reads from."""

    closed_before = models.DateTimeField(_("closed before"), null=True, blank=True)
    reopened_from = models.DateTimeField(_("reopened from"), null=True, blank=True)
    run_from = models.DateTimeField(_("run reads from"), null=True, blank=True)
    run_started_at = models.DateTimeField(_("run started at"), null=True, blank=True)
    run_as_of = models.DateField(_("run business date"), null=True, blank=True)  # of the run in progress

    class Meta:
        verbose_name = _("expiry watermark")
        verbose_name_plural = _("expiry watermarks")

    def __str__(self):
        return f"expiry from {self.closed_before} (reopened from {self.reopened_from})"


class ExpiryMode(models.TextChoices):
    ROLLING = "rolling", _("rolling: N months after earning")
    FIXED_ANNUAL = "fixed_annual", _("fixed annual: end of the year after earning")


class PointsPolicy(models.Model):
    """The marketer's points settings, versioned: the newest version whose valid_from has passed applies."""

    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    expiry_mode = models.CharField(_("expiry"), max_length=12, choices=ExpiryMode.choices, default=ExpiryMode.ROLLING)
    expiry_months = models.PositiveSmallIntegerField(_("expiry months (rolling)"), default=12)
    daily_cap = models.PositiveIntegerField(_("daily cap per member"), default=5000)
    cash_points_per_unit = models.PositiveIntegerField(_("points per 1 currency unit at checkout"), default=100)
    cash_max_share = models.DecimalField(
        _("maximum share of an order paid in points"), max_digits=4, decimal_places=2, default=Decimal("0.50")
    )
    clerk_adjustment_limit = models.PositiveIntegerField(_("clerk adjustment limit per entry"), default=500)
    marketer_adjustment_limit = models.PositiveIntegerField(_("marketer adjustment limit per entry"), default=5000)
    # Daily totals of manual adjustments (the sum of |points| in one business day): what one clerk or marketer may
    # adjust herself across all members, and what all staff together may adjust one member. Beyond either, an
    # adjustment waits for a manager's approval (points.services.spending.check_daily_totals).
    clerk_daily_adjustment_total = models.PositiveIntegerField(
        _("clerk adjustments per day (total points)"), default=2000
    )
    marketer_daily_adjustment_total = models.PositiveIntegerField(
        _("marketer adjustments per day (total points)"), default=20000
    )
    member_daily_adjustment_total = models.PositiveIntegerField(
        _("adjustments to one member per day (total points)"), default=10000
    )
    transfers_enabled = models.BooleanField(_("points transfers within a household"), default=False)
    transfer_daily_limit = models.PositiveIntegerField(_("points a member may transfer per day"), default=1000)
    created_by = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("points policy")
        verbose_name_plural = _("points policies")
        constraints = [
            models.CheckConstraint(
                condition=Q(cash_max_share__gte=0) & Q(cash_max_share__lte=1), name="policy_cash_share_fraction"
            ),
        ]

    def __str__(self):
        return gettext("policy from %(date)s") % {"date": f"{timezone.localtime(self.valid_from):%Y-%m-%d}"}


class RuleChannel(models.TextChoices):
    PURCHASE = "purchase", _("purchase")
    SIGN_IN = "sign_in", _("sign-in")
    SHARE = "share", _("share")
    REVIEW = "review", _("review")
    REFERRAL = "referral", _("referral")
    BIRTHDAY = "birthday", _("birthday")
    CUSTOM = "custom", _("custom event")


class EarningRule(models.Model):
    """How one channel earns points, from valid_from until valid_until. A store's own rule beats the general
    one; among several, the newest valid_from wins. Editing a rule = adding a version (history stays)."""

    channel = models.CharField(_("channel"), max_length=10, choices=RuleChannel.choices)
    event_type = models.SlugField(
        _("custom event type"), max_length=40, blank=True, help_text=_("For custom events: the `type` clients post.")
    )
    name = models.CharField(_("name"), max_length=100)
    store = models.ForeignKey(
        Store, models.PROTECT, null=True, blank=True, related_name="earning_rules", help_text=_("Empty: every store.")
    )
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    points = models.PositiveIntegerField(_("points per event"), default=0)
    points_per_unit = models.DecimalField(
        _("points per currency unit (purchase)"), max_digits=8, decimal_places=2, default=Decimal("1")
    )
    min_amount = models.DecimalField(
        _("minimum paid amount (purchase)"), max_digits=14, decimal_places=2, default=Decimal("0")
    )
    excluded_categories = models.JSONField(_("excluded categories (purchase)"), default=list, blank=True)
    pending_days = models.PositiveSmallIntegerField(_("pending days"), default=0)
    daily_limit = models.PositiveSmallIntegerField(_("times per day"), null=True, blank=True)
    streak_days = models.PositiveSmallIntegerField(_("streak length (sign-in)"), null=True, blank=True)
    streak_bonus = models.PositiveIntegerField(_("streak bonus (sign-in)"), default=0)
    created_by = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("earning rule")
        verbose_name_plural = _("earning rules")
        indexes = [models.Index(fields=["channel", "event_type", "valid_from"], name="rule_lookup_idx")]

    def __str__(self):
        return gettext("%(name)s (%(channel)s, from %(date)s)") % {
            "name": self.name,
            "channel": self.get_channel_display(),
            "date": f"{timezone.localtime(self.valid_from):%Y-%m-%d}",
        }

    def clean(self):
        if self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError({"valid_until": _("Must be after valid_from.")})
        if self.channel == RuleChannel.CUSTOM and not self.event_type:
            raise ValidationError({"event_type": _("A custom rule needs its event type.")})


class Event(models.Model):
    """An engagement event that earned (or tried to earn) points: sign-in, share, review, birthday, custom."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="points_events")
    type = models.CharField(_("type"), max_length=40)
    business_date = models.DateField(_("business date"))
    occurred_at = models.DateTimeField(_("occurred at"))
    purchase = models.ForeignKey(Purchase, models.PROTECT, null=True, blank=True, related_name="events")
    referee = models.OneToOneField(
        Member,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="referral_bonus",
        help_text=_("For referral bonuses: the referred member (one bonus each)."),
    )
    payload = models.JSONField(default=dict, blank=True)
    points = models.BigIntegerField(default=0)
    capped = models.BooleanField(default=False)
    entry = models.ForeignKey(LedgerEntry, models.PROTECT, null=True, blank=True, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("engagement event")
        verbose_name_plural = _("engagement events")
        indexes = [models.Index(fields=["member", "type", "business_date"], name="event_member_day_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "business_date"], condition=Q(type="sign_in"), name="event_one_sign_in_per_day"
            ),
            models.UniqueConstraint(fields=["purchase"], condition=Q(type="review"), name="event_one_review_per_order"),
            models.UniqueConstraint(
                fields=["member", "business_date"],
                condition=Q(type="birthday"),
                name="event_one_birthday_bonus_per_year",
            ),
        ]

    def __str__(self):
        return f"{self.type} by {self.member_id} on {self.business_date}"


class IdempotencyRecord(models.Model):
    """A client write already done: the same (scope, key) again returns `response`; a different request body
    under the same key is refused. Kept at least 30 days."""

    scope = models.CharField(max_length=60)
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(default=201)
    # JSON text, not jsonb: a replay returns the very bytes of the first answer, keys in the same order.
    response = models.TextField(null=True)  # noqa: DJ001 - NULL while the claiming transaction works
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self):
        return f"{self.scope}:{self.key}"


class RewardKind(models.TextChoices):
    GIFT = "gift", _("physical gift")
    COUPON = "coupon", _("coupon")
    VOUCHER = "voucher", _("cash voucher")


class Reward(models.Model):
    """A catalogue entry. Versioned: once redeemed, its terms (code, kind, cost, voucher amount) stay as they were
    for the redemptions made under them; a change of terms is a new version with the same code, which retires
    this one (points.services.configuration). The code is unique among current versions."""

    code = models.SlugField(_("code"), max_length=50)
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=8, choices=RewardKind.choices)
    description = models.TextField(_("description"), blank=True)
    cost_points = models.PositiveIntegerField(_("cost in points"))
    stock = models.PositiveIntegerField(_("stock"), null=True, blank=True, help_text=_("Empty: unlimited."))
    per_member_limit = models.PositiveIntegerField(_("limit per member"), null=True, blank=True)
    eligible_tiers = models.JSONField(
        _("eligible tiers"), default=list, blank=True, help_text=_("Tier codes that may redeem; empty: every tier.")
    )
    voucher_amount = models.DecimalField(_("voucher amount"), max_digits=10, decimal_places=2, null=True, blank=True)
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    replaces = models.OneToOneField(
        "self",
        models.PROTECT,
        null=True,
        blank=True,
        related_name="replaced_by",
        verbose_name=_("replaces"),
        help_text=_("The version this one replaced."),
    )
    replaced_at = models.DateTimeField(
        _("replaced at"), null=True, blank=True, help_text=_("When a newer version replaced this one.")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cost_points", "id"]
        verbose_name = _("reward")
        verbose_name_plural = _("rewards")
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_points__gt=0),
                name="reward_cost_positive",
                violation_error_message=_("The cost in points must be above zero."),
            ),
            models.UniqueConstraint(
                fields=["code"],
                condition=Q(replaced_at__isnull=True),
                name="reward_code_unique_among_current",
                violation_error_code="unique",
                violation_error_message=_("A current reward has this code."),
            ),
        ]

    def __str__(self):
        return gettext("%(name)s (%(points)s points)") % {"name": self.name, "points": self.cost_points}

    def is_available_at(self, at):
        return (
            self.is_active
            and (self.valid_from is None or self.valid_from <= at)
            and (self.valid_until is None or at < self.valid_until)
        )


class RedemptionStatus(models.TextChoices):
    COMPLETED = "completed", _("completed")
    CANCELLED = "cancelled", _("cancelled")


class Redemption(models.Model):
    member = models.ForeignKey(Member, models.PROTECT, related_name="redemptions")
    reward = models.ForeignKey(Reward, models.PROTECT, related_name="redemptions")
    quantity = models.PositiveIntegerField(default=1)
    points_spent = models.BigIntegerField()
    status = models.CharField(max_length=9, choices=RedemptionStatus.choices, default=RedemptionStatus.COMPLETED)
    code = models.CharField(max_length=32, blank=True)
    entry = models.ForeignKey(LedgerEntry, models.PROTECT, related_name="redemptions")
    actor = models.CharField(max_length=120)
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="redemptions")
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("redemption")
        verbose_name_plural = _("redemptions")
        indexes = [models.Index(fields=["member", "reward", "status"], name="redemption_member_reward_idx")]
        constraints = [models.CheckConstraint(condition=Q(quantity__gt=0), name="redemption_quantity_positive")]

    def __str__(self):
        return gettext("%(reward)s × %(quantity)s for %(member)s") % {
            "reward": self.reward_id,
            "quantity": self.quantity,
            "member": self.member_id,
        }


class Deduction(models.Model):
    """Points used as cash for an order (积分抵现)."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="deductions")
    source = models.CharField(max_length=40)
    order_no = models.CharField(max_length=64)
    points = models.BigIntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    order_amount = models.DecimalField(max_digits=14, decimal_places=2)
    points_returned = models.BigIntegerField(default=0)
    entry = models.ForeignKey(LedgerEntry, models.PROTECT, related_name="deductions")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("deduction")
        verbose_name_plural = _("deductions")
        constraints = [
            models.UniqueConstraint(fields=["source", "order_no"], name="deduction_order_unique"),
            models.CheckConstraint(condition=Q(points__gt=0), name="deduction_points_positive"),
        ]

    def __str__(self):
        return gettext("%(order_no)s: %(points)s points = %(amount)s") % {
            "order_no": self.order_no,
            "points": self.points,
            "amount": self.amount,
        }


class AdjustmentRequestStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    APPROVED = "approved", _("approved")
    REJECTED = "rejected", _("rejected")


class AdjustmentRequest(models.Model):
    """An adjustment over the requester's limit (or sent for a second look), waiting for a manager: nothing moves
    until it is approved, and then once, through the same ledger path as a direct adjustment (`entry`)."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="adjustment_requests")
    points = models.BigIntegerField(_("points"))
    reason = models.CharField(_("reason"), max_length=200)
    status = models.CharField(
        _("status"), max_length=8, choices=AdjustmentRequestStatus.choices, default=AdjustmentRequestStatus.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, related_name="+", verbose_name=_("requested by")
    )
    requested_at = models.DateTimeField(_("requested at"), default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("decided by")
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.CharField(_("decision note"), max_length=200, blank=True)
    entry = models.OneToOneField(
        LedgerEntry,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="adjustment_request",
        verbose_name=_("ledger entry"),
    )

    class Meta:
        verbose_name = _("adjustment request")
        verbose_name_plural = _("adjustment requests")
        indexes = [
            models.Index(fields=["member", "-id"], name="adjustment_request_member_idx"),
            models.Index(fields=["-id"], name="adjustment_request_pending_idx", condition=Q(status="pending")),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="adjustment_request_not_zero"),
            # An approved request has its ledger entry; a pending one no decision; a rejected one no entry.
            models.CheckConstraint(
                condition=(Q(status="pending") & Q(decided_by__isnull=True) & Q(entry__isnull=True))
                | (Q(status="approved") & Q(decided_by__isnull=False) & Q(entry__isnull=False))
                | (Q(status="rejected") & Q(decided_by__isnull=False) & Q(entry__isnull=True)),
                name="adjustment_request_decision_consistent",
            ),
        ]

    def __str__(self):
        return gettext("%(points)s for %(member)s (%(status)s)") % {
            "points": f"{self.points:+d}",
            "member": self.member_id,
            "status": self.get_status_display(),
        }


class PointsTransfer(models.Model):
    """Points one member of a household gave another: two ledger entries of kind transfer (out and in), written
    in one transaction; the points arrive as lots that keep the expiry of what was taken."""

    from_member = models.ForeignKey(Member, models.PROTECT, related_name="transfers_out", verbose_name=_("from member"))
    to_member = models.ForeignKey(Member, models.PROTECT, related_name="transfers_in", verbose_name=_("to member"))
    points = models.BigIntegerField(_("points"))
    business_date = models.DateField(_("business date"))
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    out_entry = models.OneToOneField(LedgerEntry, models.PROTECT, related_name="transfer_out")
    in_entry = models.OneToOneField(LedgerEntry, models.PROTECT, related_name="transfer_in")
    actor = models.CharField(_("actor"), max_length=120)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name = _("points transfer")
        verbose_name_plural = _("points transfers")
        indexes = [
            # The daily limit sums what a member sent on a business date.
            models.Index(fields=["from_member", "business_date"], name="transfer_sender_day_idx"),
            models.Index(fields=["to_member", "-id"], name="transfer_receiver_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(points__gt=0), name="transfer_points_positive"),
            models.CheckConstraint(condition=~Q(from_member=models.F("to_member")), name="transfer_between_two"),
        ]

    def __str__(self):
        return gettext("%(points)s from %(from)s to %(to)s") % {
            "points": self.points,
            "from": self.from_member_id,
            "to": self.to_member_id,
        }
