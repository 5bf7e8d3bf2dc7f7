"""Coupons (SPEC §10): the templates a marketer sets up (what a coupon takes off, where, for how long, how many)
and the coupons issued from them, each with its own code and owner, used once against an order at a counter.

A coupon has no ledger of its own: its row is its state (unused → used → back to unused by an undo or a refund;
unused → expired by the nightly job; void), written only by campaigns.services.coupons and campaigns.jobs."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Member, Store


class CouponKind(models.TextChoices):
    AMOUNT_OFF = "amount_off", _("amount off above a threshold")
    PERCENT_OFF = "percent_off", _("percent off, with a cap")
    GIFT = "gift", _("a gift or a service")
    FREE_ITEM = "free_item", _("a free item")


class CouponStatus(models.TextChoices):
    UNUSED = "unused", _("unused")
    USED = "used", _("used")
    EXPIRED = "expired", _("expired")
    VOID = "void", _("void")


class CouponSource(models.TextChoices):
    API = "api", _("API")
    CLERK = "clerk", _("clerk")
    REWARD = "reward", _("points exchanged")
    CAMPAIGN = "campaign", _("campaign")
    REGISTRATION = "registration", _("registration")
    BIRTHDAY = "birthday", _("birthday")
    BULK = "bulk", _("bulk issue")


class IssueOn(models.TextChoices):
    NEVER = "", _("only when issued")
    REGISTRATION = "registration", _("on registration")
    BIRTHDAY = "birthday", _("on her birthday")


def _money(name, **extra):
    return models.DecimalField(
        name, max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)], **extra
    )


class CouponTemplate(models.Model):
    """What a coupon gives and where it applies. Money terms (kind, amounts, threshold, validity, stores,
    categories) stay as they are once coupons were issued (campaigns.services.coupons refuses the change);
    `issued_count` is written only by the issuing services, under the template row's lock, and never passes
    `total_quantity` (a CHECK as well)."""

    name = models.CharField(_("name"), max_length=120)
    description = models.TextField(_("description"), blank=True)
    kind = models.CharField(_("kind"), max_length=12, choices=CouponKind.choices)
    amount_off = _money(_("amount off"), help_text=_("amount_off: what it takes off; free_item/gift: its value."))
    percent_off = models.DecimalField(
        _("percent off"),
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        # xgettext:no-python-format (a per cent sign, not a placeholder)
        help_text=_("percent_off: e.g. 15 for 15 % off."),
    )
    max_discount = _money(_("maximum discount"), help_text=_("percent_off: the cap; empty: none."))
    threshold = _money(_("threshold"), help_text=_("The order amount it needs (满100减20: 100); empty: none."))
    valid_days = models.PositiveIntegerField(
        _("valid days"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_("Valid N days counting the day of issue (business dates); or fixed dates below."),
    )
    valid_from = models.DateField(_("valid from"), null=True, blank=True)
    valid_until = models.DateField(_("valid until"), null=True, blank=True, help_text=_("The last valid day."))
    stores = models.JSONField(_("stores"), default=list, blank=True, help_text=_("Store codes; empty: every store."))
    categories = models.JSONField(
        _("categories"), default=list, blank=True, help_text=_("Product categories; empty: every category.")
    )
    total_quantity = models.PositiveIntegerField(
        _("total quantity"), null=True, blank=True, help_text=_("Empty: unlimited.")
    )
    issued_count = models.PositiveIntegerField(_("issued"), default=0)
    per_member_limit = models.PositiveIntegerField(
        _("limit per member"), null=True, blank=True, validators=[MinValueValidator(1)]
    )
    stackable_with_points = models.BooleanField(_("stackable with points as cash"), default=True)
    issue_on = models.CharField(_("issued automatically"), max_length=16, choices=IssueOn.choices, blank=True)
    reward_code = models.SlugField(
        _("reward code"),
        max_length=50,
        blank=True,
        help_text=_("A reward of kind coupon with this code issues this coupon when a member exchanges points."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_by = models.CharField(_("created by"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("coupon template")
        verbose_name_plural = _("coupon templates")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(total_quantity__isnull=True) | Q(issued_count__lte=F("total_quantity")),
                name="coupon_template_quantity_never_exceeded",
            ),
            models.CheckConstraint(
                condition=Q(valid_days__isnull=False) | (Q(valid_from__isnull=False) & Q(valid_until__isnull=False)),
                name="coupon_template_has_validity",
            ),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True)
                | Q(valid_until__isnull=True)
                | Q(valid_until__gte=F("valid_from")),
                name="coupon_template_valid_until_after_from",
            ),
        ]

    def __str__(self):
        return self.name


class Coupon(models.Model):
    """One coupon: its code (campaigns.coupon_codes), its owner, its validity (business dates, both days
    included) and, once used, the order it was used on. `redeemed_source` scopes `order_no` like a purchase's
    source (client app or store), so a refund of that purchase finds it."""

    code = models.CharField(_("code"), max_length=16, unique=True)
    template = models.ForeignKey(CouponTemplate, models.PROTECT, related_name="coupons")
    member = models.ForeignKey(Member, models.PROTECT, related_name="coupons")
    status = models.CharField(_("status"), max_length=8, choices=CouponStatus.choices, default=CouponStatus.UNUSED)
    valid_from = models.DateField(_("valid from"))
    valid_until = models.DateField(_("valid until"))
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    source = models.CharField(_("source"), max_length=12, choices=CouponSource.choices)
    source_ref = models.CharField(_("source reference"), max_length=64, blank=True)
    issued_by = models.CharField(_("issued by"), max_length=120, blank=True)
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    order_no = models.CharField(_("order number"), max_length=64, blank=True)
    order_amount = _money(_("order amount"))
    discount = _money(_("discount"))
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="coupons")
    redeemed_source = models.CharField(_("redeemed by source"), max_length=40, blank=True)
    redeemed_by = models.CharField(_("redeemed by"), max_length=120, blank=True)
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-id"]
        indexes = [
            # One index for the wallets (a member's coupons), the per-member limits (member, template) and a bulk
            # issue's chunk (a range of members: campaigns.jobs); each index costs every issued coupon a write.
            models.Index(fields=["member", "template"], name="coupon_member_template_idx"),
            models.Index(
                fields=["redeemed_source", "order_no"],
                condition=Q(status="used"),
                name="coupon_used_order_idx",
            ),
            # The nightly expiry's bounds and chunks (campaigns.jobs).
            models.Index(fields=["valid_until"], condition=Q(status="unused"), name="coupon_unused_until_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(valid_until__gte=F("valid_from")), name="coupon_valid_until_after_from"),
            models.CheckConstraint(
                condition=~Q(status="used") | (Q(used_at__isnull=False) & ~Q(order_no="")),
                name="coupon_used_has_order",
            ),
        ]

    def __str__(self):
        return self.code


class BatchStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    STOPPED = "stopped", _("stopped")


class ListKey(models.TextChoices):
    MEMBER_NO = "member_no", _("card number")
    PHONE = "phone", _("phone")
    EXTERNAL_ID = "external_id", _("external id")


class CouponBatch(models.Model):
    """A bulk issue to a tag's or a segment's members, or to an uploaded list (a job:
    campaigns.jobs.run_coupon_batch walks the member ids, or the list's lines, in chunks; `next_member_id` is how
    far it got (for a list: the next line of the file), so a crashed run resumes). Each coupon it issues carries
    `source_ref` `batch:<id>`, so a chunk done again issues nobody a second one. A list batch keeps the uploaded
    file's key column, a CouponBatchLine a line, until it has issued to them (`list_key` names the column), and
    writes each line it does not issue to as a CouponBatchReject."""

    template = models.ForeignKey(CouponTemplate, models.PROTECT, related_name="batches")
    tag = models.CharField(_("tag"), max_length=50, blank=True)
    segment = models.CharField(_("segment"), max_length=20, blank=True)
    rfm_as_of = models.DateField(_("segments as of"), null=True, blank=True)
    list_name = models.CharField(_("uploaded list"), max_length=200, blank=True)
    list_key = models.CharField(_("list key"), max_length=12, choices=ListKey.choices, blank=True)
    status = models.CharField(_("status"), max_length=8, choices=BatchStatus.choices, default=BatchStatus.PENDING)
    next_member_id = models.BigIntegerField(default=0)
    lines_prepared = models.BooleanField(default=False, editable=False)  # campaigns.jobs.prepare_list_lines
    last_member_id = models.BigIntegerField(default=-1)
    issued = models.PositiveIntegerField(_("issued"), default=0)
    over_limit = models.PositiveIntegerField(_("skipped: limit reached"), default=0)
    over_quantity = models.PositiveIntegerField(_("skipped: quantity used up"), default=0)
    rejected = models.PositiveIntegerField(_("rejected lines"), default=0)
    error = models.TextField(_("error"), blank=True)
    created_by = models.CharField(_("created by"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("coupon batch")
        verbose_name_plural = _("coupon batches")
        ordering = ["-id"]

    def __str__(self):
        return f"batch {self.pk} of {self.template_id}"


class CouponBatchLine(models.Model):
    """A line of an uploaded list not yet issued to (the staging of a list batch): its key as written, filled by
    COPY at upload (campaigns.coupon_lists.stage_lines); the job's first step writes the stored form of the key into
    `key` for the few lines SQL does not read (libphonenumber's forms), or the reason the line is rejected before any
    member is looked up (malformed, duplicate) into `reason` (the other lines' key is computed when read), then
    issues and deletes the lines chunk by chunk (campaigns.jobs). No foreign key constraint in the database: a COPY
    of 1,000,000 lines fired as many checks of the one batch row at commit; the lines are written only by
    stage_lines for the batch it has just created, and Django's delete of a batch deletes its lines (CASCADE, done
    by the ORM as for every relation here)."""

    pk = models.CompositePrimaryKey("batch", "line")
    batch = models.ForeignKey(  # the pk leads: no index of its own
        CouponBatch, models.CASCADE, related_name="lines", db_index=False, db_constraint=False
    )
    line = models.PositiveIntegerField()
    written = models.CharField(max_length=200)
    key = models.CharField(max_length=64, null=True)  # noqa: DJ001 - NULL: not read yet, or malformed
    reason = models.CharField(max_length=200, blank=True)

    def __str__(self):
        return f"{self.batch_id}:{self.line}"


class CouponBatchReject(models.Model):
    """A line of an uploaded list a batch did not issue to, and why (the rejects file)."""

    batch = models.ForeignKey(CouponBatch, models.CASCADE, related_name="rejects")
    line = models.PositiveIntegerField(_("line"))
    key = models.CharField(_("key"), max_length=200)
    reason = models.CharField(_("reason"), max_length=200)

    class Meta:
        verbose_name = _("rejected line")
        verbose_name_plural = _("rejected lines")
        ordering = ["batch", "line"]
        constraints = [models.UniqueConstraint(fields=["batch", "line"], name="coupon_batch_reject_line_unique")]

    def __str__(self):
        return f"{self.batch_id}:{self.line}"
