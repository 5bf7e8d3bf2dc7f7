"""Reports' own tables. Nothing else writes them; nothing outside `reports` reads them. The alerts' tables are in
reports.models_alerts (imported here so Django finds them).

--- The daily snapshot (reports.snapshots, the `snapshot` job) ------------------------------------------------
One business date's aggregates, written by the job and replaced whole when it runs again for that date. A date
has a snapshot when its SnapshotDay row exists: the job writes that row last, in the transaction that finishes the
run, so a report never reads half a date. Dimensions are kept as they were on that date (the tier's code, the
segment's name), so renaming or removing one later does not rewrite history.
"""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from members.models import Store
from reports.models_alerts import AlertNotice, AlertRule, AlertSubscription  # noqa: F401 - the alerts' tables


class SnapshotDay(models.Model):
    """A business date whose snapshot is complete, with the liability at the end of that day: the sums of every
    ledger entry written before the end of the day (check_ledger proves they equal the accounts)."""

    business_date = models.DateField(_("business date"), primary_key=True)
    points_available = models.BigIntegerField(_("points available"))
    points_pending = models.BigIntegerField(_("points pending"))
    members = models.BigIntegerField(_("members"))
    cash_points_per_unit = models.PositiveIntegerField(_("points per currency unit (cash rate)"))
    rfm_as_of = models.DateField(
        _("RFM as of"), null=True, blank=True, help_text=_("The RFM run the segments and lifecycle stages come from.")
    )
    created_at = models.DateTimeField(_("made at"), default=timezone.now)

    class Meta:
        verbose_name = _("daily snapshot")
        verbose_name_plural = _("daily snapshots")

    def __str__(self):
        return str(self.business_date)


class PointsFlowSnapshot(models.Model):
    """The ledger entries written on a business date, summed per store, channel and kind (store and channel as
    the entries carry them: NULL is unattributed)."""

    business_date = models.DateField(_("business date"))
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    channel = models.CharField(_("channel"), max_length=16, null=True, blank=True)  # noqa: DJ001 - as the entries
    kind = models.CharField(_("kind"), max_length=8)
    entries = models.BigIntegerField(_("entries"))
    points = models.BigIntegerField(_("points"))
    available_delta = models.BigIntegerField()
    pending_delta = models.BigIntegerField()

    class Meta:
        verbose_name = _("points flow snapshot")
        verbose_name_plural = _("points flow snapshots")
        indexes = [models.Index(fields=["business_date", "kind"], name="snapshot_flow_date_idx")]

    def __str__(self):
        return f"{self.business_date} {self.kind} {self.points:+d}"


class StoredValueFlowSnapshot(models.Model):
    """The stored-value ledger entries written on a business date, summed per store and kind (store as the entries
    carry it: NULL for the bonus expiry, adjustments and merges): what reports.stored_value_flows reads for the
    flows."""

    business_date = models.DateField(_("business date"))
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    kind = models.CharField(_("kind"), max_length=17)
    entries = models.BigIntegerField(_("entries"))
    principal_delta = models.BigIntegerField(_("principal change (cents)"))
    bonus_delta = models.BigIntegerField(_("bonus change (cents)"))

    class Meta:
        verbose_name = _("stored-value flow snapshot")
        verbose_name_plural = _("stored-value flow snapshots")
        indexes = [models.Index(fields=["business_date", "store"], name="snapshot_sv_flow_date_idx")]

    def __str__(self):
        return f"{self.business_date} {self.kind} {self.principal_delta:+d}/{self.bonus_delta:+d}"


class MemberSnapshot(models.Model):
    """Members at the end of a business date per home store, tier, RFM segment and lifecycle stage: how many,
    how many joined that day, how many purchased that day. `partial` rows are one chunk's, merged into whole
    rows when the run finishes (a finished date has none)."""

    business_date = models.DateField(_("business date"))
    home_store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    tier = models.CharField(_("tier"), max_length=30, blank=True)
    segment = models.CharField(_("segment"), max_length=20, blank=True)
    lifecycle = models.CharField(_("lifecycle stage"), max_length=16, blank=True)
    members = models.BigIntegerField(_("members"))
    new_members = models.BigIntegerField(_("new members"))
    active_members = models.BigIntegerField(_("active members"))
    partial = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("member snapshot")
        verbose_name_plural = _("member snapshots")
        indexes = [models.Index(fields=["business_date", "home_store"], name="snapshot_member_date_idx")]

    def __str__(self):
        return f"{self.business_date} {self.tier}/{self.segment}/{self.lifecycle}: {self.members}"


class MemberDaySnapshot(models.Model):
    """MemberSnapshot summed per business date and home store: what the reports add up over a range of days."""

    business_date = models.DateField(_("business date"))
    home_store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    members = models.BigIntegerField(_("members"))
    new_members = models.BigIntegerField(_("new members"))
    active_members = models.BigIntegerField(_("active members"))

    class Meta:
        verbose_name = _("member day snapshot")
        verbose_name_plural = _("member day snapshots")
        indexes = [models.Index(fields=["business_date", "home_store"], name="snapshot_member_day_idx")]

    def __str__(self):
        return f"{self.business_date}: {self.members}"


class MemberRecencySnapshot(models.Model):
    """Members at the end of a business date per home store and the date of their last purchase, for purchases in
    the RECENCY_DAYS days up to it: the members active in any period of up to RECENCY_DAYS days ending on that
    date are those whose last purchase is on or after its first day (a distinct count, exact)."""

    business_date = models.DateField(_("business date"))
    home_store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="+", db_index=False)
    last_purchase_date = models.DateField(_("last purchase"))
    members = models.BigIntegerField(_("members"))
    partial = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("member recency snapshot")
        verbose_name_plural = _("member recency snapshots")
        indexes = [
            models.Index(fields=["business_date", "last_purchase_date"], name="snapshot_recency_date_idx"),
        ]

    def __str__(self):
        return f"{self.business_date}: {self.members} last bought {self.last_purchase_date}"


class ExpiryForecastSnapshot(models.Model):
    """Points due to expire after a business date, by the month of their last valid day (the 12 months from the
    day after it), as the lots stood at the end of that date."""

    business_date = models.DateField(_("business date"))
    month = models.DateField(_("month"), help_text=_("Its first day."))
    points = models.BigIntegerField(_("points"))

    class Meta:
        verbose_name = _("expiry forecast snapshot")
        verbose_name_plural = _("expiry forecast snapshots")
        constraints = [
            models.UniqueConstraint(fields=["business_date", "month"], name="snapshot_expiry_one_row_per_month")
        ]

    def __str__(self):
        return f"{self.business_date} → {self.month:%Y-%m}: {self.points}"


class SegmentMoveSnapshot(models.Model):
    """How many members moved from one RFM segment to another between two RFM runs (from_segment empty: not in the
    first run). Kept for the pairs the snapshot job prepares and the pairs reports asked for; stale, and made
    again, when either RFM run finished after `computed_at`."""

    from_date = models.DateField(_("from (RFM as of)"))
    to_date = models.DateField(_("to (RFM as of)"))
    from_segment = models.CharField(_("from segment"), max_length=20, blank=True)
    to_segment = models.CharField(_("to segment"), max_length=20)
    members = models.BigIntegerField(_("members"))
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        verbose_name = _("segment move snapshot")
        verbose_name_plural = _("segment move snapshots")
        constraints = [
            models.UniqueConstraint(
                fields=["to_date", "from_date", "from_segment", "to_segment"], name="snapshot_moves_one_row_per_move"
            )
        ]

    def __str__(self):
        return f"{self.from_date}→{self.to_date}: {self.from_segment}→{self.to_segment} {self.members}"


# --- Stored results of the raw-row reports (reports.report_results, the `report_results` job) ---------------------


class ReportResult(models.Model):
    """A report's answer for one parameter set, computed by the nightly `report_results` job (reports.report_results)
    for the standard ranges of the raw-row reports, so that their endpoints answer from it instead of scanning
    millions of rows per request. Keyed by the report and its canonical parameters; a re-run replaces it."""

    report = models.CharField(_("report"), max_length=32)
    params_key = models.CharField(_("parameters"), max_length=255, help_text=_("canonical JSON of the parameters"))
    params = models.JSONField(_("parameter values"), default=dict)
    result = models.JSONField(_("result"))
    as_of = models.DateField(_("as of"), help_text=_("the business date of the job run that computed it"))
    computed_at = models.DateTimeField(_("computed at"))
    seconds = models.FloatField(_("seconds to compute"), default=0)

    class Meta:
        verbose_name = _("stored report result")
        verbose_name_plural = _("stored report results")
        constraints = [models.UniqueConstraint(fields=["report", "params_key"], name="report_result_unique")]
        indexes = [models.Index(fields=["as_of"], name="report_result_as_of_idx")]

    def __str__(self):
        return f"{self.report} {self.params_key}"
