"""Reports' tables. Nothing here is a source of truth: every row can be recomputed from the other apps' tables."""

from django.db import models
from django.utils.translation import gettext_lazy as _


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
