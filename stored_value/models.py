"""Stored value (储值): prepaid money on a member's card, in integer cents, kept apart as principal (what she paid)
and bonus (what a top-up rule gave). Only stored_value.services writes these tables.

- StoredValueAccount caches her two balances; every change locks it (step 3 of members.locking's order).
- StoredValueEntry is the append-only ledger: every change to a balance is one entry with both deltas and both
  balances after it. Balances always equal the sums over the entries (check_ledger).
- StoredValueLot is what one credit (a top-up, a positive adjustment) put in and what is left of it; spending
  takes from lots (principal oldest first, bonus soonest-expiring first) and StoredValueMovement records which,
  so a refund goes back to the very lots it came from, and a top-up's unspent principal (what a withdrawal may
  pay back) is its lot's principal_remaining. The lots' remainders always sum to the balances (check_ledger).
"""

from django.contrib.auth.hashers import check_password, make_password
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from members.models import Member, Store


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are append-only: add a correcting entry instead.")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are append-only: add a correcting entry instead.")


class StoredValueAccount(models.Model):
    """One row per member: her principal and bonus in cents (never below zero), and her payment PIN."""

    member = models.OneToOneField(Member, models.PROTECT, primary_key=True, related_name="stored_value_account")
    principal_cents = models.BigIntegerField(_("principal (cents)"), default=0)
    bonus_cents = models.BigIntegerField(_("bonus (cents)"), default=0)
    pin_hash = models.CharField(_("PIN (hashed)"), max_length=200, blank=True)
    pin_failed_attempts = models.PositiveSmallIntegerField(_("wrong PINs in a row"), default=0)
    pin_locked_at = models.DateTimeField(_("PIN locked at"), null=True, blank=True)
    closed = models.BooleanField(
        _("closed"), default=False, help_text=_("Closed by a merge: its balance moved to the survivor.")
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("stored-value account")
        verbose_name_plural = _("stored-value accounts")
        constraints = [
            models.CheckConstraint(condition=Q(principal_cents__gte=0), name="sv_account_principal_not_negative"),
            models.CheckConstraint(condition=Q(bonus_cents__gte=0), name="sv_account_bonus_not_negative"),
        ]

    def __str__(self):
        return gettext("%(member)s: %(principal)s+%(bonus)s cents") % {
            "member": self.member_id,
            "principal": self.principal_cents,
            "bonus": self.bonus_cents,
        }

    @property
    def total_cents(self):
        return self.principal_cents + self.bonus_cents

    @property
    def has_pin(self):
        return bool(self.pin_hash)

    def set_pin(self, pin):
        self.pin_hash = make_password(pin)
        self.pin_failed_attempts, self.pin_locked_at = 0, None

    def pin_matches(self, pin):
        return bool(self.pin_hash) and check_password(pin, self.pin_hash)


class EntryKind(models.TextChoices):
    TOP_UP = "top_up", _("top-up")
    BONUS = "bonus", _("bonus of a top-up")
    PAY = "pay", _("payment")
    REFUND_TO_BALANCE = "refund_to_balance", _("payment refunded to the balance")
    WITHDRAW = "withdraw", _("withdrawal (top-up refunded in money)")
    ADJUST = "adjust", _("adjustment")
    EXPIRE_BONUS = "expire_bonus", _("bonus expired")
    MERGE = "merge", _("merge")


class StoredValueEntry(models.Model):
    """One change to a member's stored value, never updated or deleted (a mistake is corrected by a new entry)."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="stored_value_entries")
    kind = models.CharField(_("kind"), max_length=17, choices=EntryKind.choices)
    principal_delta = models.BigIntegerField(_("principal change (cents)"), default=0)
    bonus_delta = models.BigIntegerField(_("bonus change (cents)"), default=0)
    principal_after = models.BigIntegerField(_("principal after (cents)"))
    bonus_after = models.BigIntegerField(_("bonus after (cents)"))
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    reference = models.CharField(_("reference"), max_length=100, blank=True)
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+")
    actor = models.CharField(_("actor"), max_length=120)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        verbose_name = _("stored-value entry")
        verbose_name_plural = _("stored-value entries")
        indexes = [
            models.Index(fields=["member", "-id"], name="sv_entry_member_idx"),
            models.Index(fields=["created_at", "kind"], name="sv_entry_time_kind_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.principal_delta:+d}/{self.bonus_delta:+d}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Stored-value entries are append-only: add a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Stored-value entries are append-only: add a correcting entry instead.")

    @property
    def amount_cents(self):
        return self.principal_delta + self.bonus_delta

    @property
    def balance_after(self):
        return self.principal_after + self.bonus_after


class PaymentMethod(models.TextChoices):
    CASH = "cash", _("cash")
    CARD = "card", _("bank card")
    WECHAT_PAY = "wechat_pay", _("WeChat Pay")
    ALIPAY = "alipay", _("Alipay")
    OTHER = "other", _("other")


class TopUpRule(models.Model):
    """What a top-up gives on top of the money paid (充100送10): the highest tier whose amount the top-up reaches,
    with optional bonus points and growth value, and a validity for the bonus money. A store's own rule beats the
    general one; among several, the newest valid_from wins. A rule is a version: a change of terms is a new
    version (stored_value.services.configuration); only valid_until and is_active change in place."""

    name = models.CharField(_("name"), max_length=100)
    store = models.ForeignKey(
        Store, models.PROTECT, null=True, blank=True, related_name="top_up_rules", help_text=_("Empty: every store.")
    )
    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    tiers = models.JSONField(
        _("tiers"),
        default=list,
        help_text=_(
            'A list of {"amount": cents, "bonus": cents, "points": int, "growth": int}: a top-up of at least '
            "amount gets that bonus money, bonus points and growth value (the highest tier reached applies)."
        ),
    )
    bonus_valid_days = models.PositiveIntegerField(
        _("bonus valid for days"), null=True, blank=True, help_text=_("Empty: the bonus money never expires.")
    )
    created_by = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("top-up rule")
        verbose_name_plural = _("top-up rules")
        indexes = [models.Index(fields=["valid_from"], name="sv_rule_valid_from_idx")]

    def __str__(self):
        starts = timezone.localtime(self.valid_from).date()  # the business date
        return gettext("%(name)s (from %(date)s)") % {"name": self.name, "date": starts}

    def clean(self):
        if self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError({"valid_until": _("Must be after valid_from.")})
        problems = tier_problems(self.tiers)
        if problems:
            raise ValidationError({"tiers": problems})

    def tier_for(self, amount_cents):
        """The tier a top-up of `amount_cents` reaches (the highest amount not above it), or None."""
        reached = [tier for tier in self.tiers or () if tier["amount"] <= amount_cents]
        return max(reached, key=lambda tier: tier["amount"]) if reached else None


TIER_KEYS = {"amount", "bonus", "points", "growth"}
MAX_TIER_CENTS = 10**11


def tier_problems(tiers):
    """What is wrong with a rule's tiers (an empty list: nothing)."""
    if not isinstance(tiers, list) or not tiers:
        return [_("Give at least one tier.")]
    problems, amounts = [], set()
    for index, tier in enumerate(tiers):
        if not isinstance(tier, dict) or not {"amount", "bonus"} <= set(tier) or set(tier) - TIER_KEYS:
            problems.append(_("Tier %(n)s: give amount and bonus (and optionally points, growth).") % {"n": index})
            continue
        values = [tier.get(key, 0) for key in ("amount", "bonus", "points", "growth")]
        if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_TIER_CENTS for v in values):
            problems.append(_("Tier %(n)s: whole, non-negative numbers (cents, points).") % {"n": index})
        elif tier["amount"] < 1:
            problems.append(_("Tier %(n)s: the amount is at least 1 cent.") % {"n": index})
        elif tier["amount"] in amounts:
            problems.append(_("Tier %(n)s: two tiers have the same amount.") % {"n": index})
        amounts.add(tier.get("amount"))
    return problems


class StoredValuePolicy(models.Model):
    """The admin's stored-value settings, versioned: the newest version whose valid_from has passed applies."""

    valid_from = models.DateTimeField(_("valid from"), default=timezone.now)
    daily_limit_cents = models.BigIntegerField(
        _("spending limit per member and day (cents)"),
        null=True,
        blank=True,
        help_text=_("Empty: no limit. Payments of a business date count, refunds do not give the limit back."),
    )
    pin_required = models.BooleanField(
        _("every payment needs the member's PIN"),
        default=False,
        help_text=_("Off: only members who set a PIN give it (for payments made at a counter or POS)."),
    )
    pin_max_attempts = models.PositiveSmallIntegerField(
        _("wrong PINs before the PIN locks"), default=5, help_text=_("Locked until staff set a new PIN.")
    )
    created_by = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("stored-value policy")
        verbose_name_plural = _("stored-value policies")
        constraints = [
            models.CheckConstraint(
                condition=Q(daily_limit_cents__isnull=True) | Q(daily_limit_cents__gt=0),
                name="sv_policy_daily_limit_positive",
            ),
            models.CheckConstraint(condition=Q(pin_max_attempts__gte=1), name="sv_policy_pin_attempts_positive"),
        ]

    def __str__(self):
        starts = timezone.localtime(self.valid_from).date()  # the business date
        return gettext("stored-value policy from %(date)s") % {"date": starts}


class TopUp(models.Model):
    """Money a member paid in (outside this system: cash, card, WeChat Pay, Alipay), with the bonus its rule gave.
    The payment reference is unique per method: the natural idempotency key of a top-up."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="top_ups")
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="top_ups")
    amount_cents = models.BigIntegerField(_("amount (cents)"))
    bonus_cents = models.BigIntegerField(_("bonus (cents)"), default=0)
    bonus_points = models.BigIntegerField(_("bonus points"), default=0)
    bonus_growth = models.BigIntegerField(_("bonus growth value"), default=0)
    bonus_expires_at = models.DateTimeField(_("bonus expires at"), null=True, blank=True)
    payment_method = models.CharField(_("payment method"), max_length=10, choices=PaymentMethod.choices)
    payment_ref = models.CharField(_("payment reference"), max_length=100)
    rule = models.ForeignKey(TopUpRule, models.PROTECT, null=True, blank=True, related_name="top_ups")
    entry = models.ForeignKey(StoredValueEntry, models.PROTECT, related_name="top_ups")
    withdrawn_cents = models.BigIntegerField(_("withdrawn (cents)"), default=0)
    actor = models.CharField(_("actor"), max_length=120)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("top-up")
        verbose_name_plural = _("top-ups")
        indexes = [models.Index(fields=["member", "-id"], name="sv_top_up_member_idx")]
        constraints = [
            models.UniqueConstraint(fields=["payment_method", "payment_ref"], name="sv_top_up_payment_ref_unique"),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="sv_top_up_amount_positive"),
            models.CheckConstraint(
                condition=Q(bonus_cents__gte=0) & Q(withdrawn_cents__gte=0) & Q(withdrawn_cents__lte=F("amount_cents")),
                name="sv_top_up_parts_within_amount",
            ),
        ]

    def __str__(self):
        return gettext("top-up %(reference)s %(amount)s+%(bonus)s") % {
            "reference": f"{self.payment_method}:{self.payment_ref}",
            "amount": self.amount_cents,
            "bonus": self.bonus_cents,
        }


class StoredValueLot(models.Model):
    """What one credit put in (a top-up's principal and bonus, a positive adjustment) and what is left of it."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="stored_value_lots")
    entry = models.ForeignKey(StoredValueEntry, models.PROTECT, related_name="lots")
    top_up = models.OneToOneField(TopUp, models.PROTECT, null=True, blank=True, related_name="lot")
    principal_cents = models.BigIntegerField()
    bonus_cents = models.BigIntegerField()
    principal_remaining = models.BigIntegerField()
    bonus_remaining = models.BigIntegerField()
    bonus_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("stored-value lot")
        verbose_name_plural = _("stored-value lots")
        indexes = [
            models.Index(
                fields=["member", "id"],
                name="sv_lot_open_idx",
                condition=Q(principal_remaining__gt=0) | Q(bonus_remaining__gt=0),
            ),
            models.Index(
                fields=["bonus_expires_at"], name="sv_lot_bonus_expiry_idx", condition=Q(bonus_remaining__gt=0)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(principal_remaining__gte=0)
                & Q(principal_remaining__lte=F("principal_cents"))
                & Q(bonus_remaining__gte=0)
                & Q(bonus_remaining__lte=F("bonus_cents")),
                name="sv_lot_remaining_within_credit",
            ),
        ]

    def __str__(self):
        principal, bonus = (
            f"{self.principal_remaining}/{self.principal_cents}",
            f"{self.bonus_remaining}/{self.bonus_cents}",
        )
        return f"lot {self.pk}: {principal} + {bonus}"


class StoredValueMovement(models.Model):
    """Which lots an entry took money from (negative) or gave back to (positive)."""

    entry = models.ForeignKey(StoredValueEntry, models.PROTECT, related_name="movements")
    lot = models.ForeignKey(StoredValueLot, models.PROTECT, related_name="movements")
    principal_cents = models.BigIntegerField(default=0)
    bonus_cents = models.BigIntegerField(default=0)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["entry"], name="sv_movement_entry_idx")]

    def __str__(self):
        return f"{self.entry_id}→{self.lot_id}: {self.principal_cents:+d}/{self.bonus_cents:+d}"


class Payment(models.Model):
    """An order paid (in part or whole) from the balance: principal and bonus spent in proportion to what the
    account held, and what refunds have given back of each."""

    member = models.ForeignKey(Member, models.PROTECT, related_name="stored_value_payments")
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+")
    source = models.CharField(max_length=40, help_text=_("Who numbers the orders: a client app or a store."))
    order_no = models.CharField(_("order number"), max_length=64)
    amount_cents = models.BigIntegerField(_("amount (cents)"))
    principal_used = models.BigIntegerField(_("principal used (cents)"))
    bonus_used = models.BigIntegerField(_("bonus used (cents)"))
    principal_refunded = models.BigIntegerField(_("principal refunded (cents)"), default=0)
    bonus_refunded = models.BigIntegerField(_("bonus refunded (cents)"), default=0)
    business_date = models.DateField(_("business date"))
    entry = models.ForeignKey(StoredValueEntry, models.PROTECT, related_name="payments")
    actor = models.CharField(_("actor"), max_length=120)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("stored-value payment")
        verbose_name_plural = _("stored-value payments")
        indexes = [models.Index(fields=["member", "business_date"], name="sv_payment_member_day_idx")]
        constraints = [
            models.UniqueConstraint(fields=["source", "order_no"], name="sv_payment_order_unique"),
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0)
                & Q(principal_used__gte=0)
                & Q(bonus_used__gte=0)
                & Q(amount_cents=F("principal_used") + F("bonus_used")),
                name="sv_payment_parts_add_up",
            ),
            models.CheckConstraint(
                condition=Q(principal_refunded__gte=0)
                & Q(principal_refunded__lte=F("principal_used"))
                & Q(bonus_refunded__gte=0)
                & Q(bonus_refunded__lte=F("bonus_used")),
                name="sv_payment_refunds_within_parts",
            ),
        ]

    def __str__(self):
        return gettext("%(number)s: %(amount)s cents") % {"number": self.order_no, "amount": self.amount_cents}

    @property
    def refunded_cents(self):
        return self.principal_refunded + self.bonus_refunded


class PaymentRefund(models.Model):
    """A refund of a payment to the balance; its refund_no is unique per payment (the idempotency key)."""

    payment = models.ForeignKey(Payment, models.PROTECT, related_name="refunds")
    refund_no = models.CharField(_("refund number"), max_length=64)
    amount_cents = models.BigIntegerField(_("amount (cents)"))
    principal_cents = models.BigIntegerField()
    bonus_cents = models.BigIntegerField()
    entry = models.ForeignKey(StoredValueEntry, models.PROTECT, related_name="payment_refunds")
    actor = models.CharField(_("actor"), max_length=120)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("stored-value payment refund")
        verbose_name_plural = _("stored-value payment refunds")
        constraints = [
            models.UniqueConstraint(fields=["payment", "refund_no"], name="sv_refund_no_unique"),
            models.CheckConstraint(
                condition=Q(amount_cents__gt=0) & Q(amount_cents=F("principal_cents") + F("bonus_cents")),
                name="sv_refund_parts_add_up",
            ),
        ]

    def __str__(self):
        return gettext("%(number)s: %(amount)s cents") % {"number": self.refund_no, "amount": self.amount_cents}


class Withdrawal(models.Model):
    """Unspent principal of a top-up paid back in money by a manager, with the bonus forfeited in proportion."""

    top_up = models.ForeignKey(TopUp, models.PROTECT, related_name="withdrawals")
    member = models.ForeignKey(Member, models.PROTECT, related_name="stored_value_withdrawals")
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+")
    principal_cents = models.BigIntegerField(_("principal paid back (cents)"))
    bonus_forfeited_cents = models.BigIntegerField(_("bonus forfeited (cents)"))
    reason = models.CharField(_("reason"), max_length=200)
    entry = models.ForeignKey(StoredValueEntry, models.PROTECT, related_name="withdrawals")
    actor = models.CharField(_("actor"), max_length=120)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("withdrawal")
        verbose_name_plural = _("withdrawals")
        constraints = [
            models.CheckConstraint(
                condition=Q(principal_cents__gt=0) & Q(bonus_forfeited_cents__gte=0), name="sv_withdrawal_positive"
            ),
        ]

    def __str__(self):
        return gettext("withdrawal of %(amount)s cents from top-up %(top_up)s") % {
            "amount": self.principal_cents,
            "top_up": self.top_up_id,
        }
