"""Alert rules' settings, the staff who subscribe to alerts, and which alerts have been told to them.

The rules themselves (what each measures and when it fires) are code: reports.alert_rules. The alerts are
loyalty.Alert rows, raised by the rules' evaluation here or by the app that owns the event (a campaign's budget, a
webhook delivery)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class AlertRule(models.Model):
    """What staff may change about one alert rule of reports.alert_rules: whether it is on, and its threshold and
    floor (what they mean is the rule's own: see its description). A row per rule, made by the migrations; every
    change is audited (reports.alert_notices.change_alert_rule)."""

    code = models.CharField(_("rule"), max_length=60, unique=True, editable=False)
    is_active = models.BooleanField(
        pgettext_lazy("switched on", "active"),
        default=True,
        help_text=_(
            "Off: the rule is not evaluated and its alerts are not sent to subscribers (alerts other apps raise are "
            "still recorded)."
        ),
    )
    threshold = models.DecimalField(_("threshold"), max_digits=20, decimal_places=4, null=True, blank=True)
    floor = models.DecimalField(_("floor"), max_digits=20, decimal_places=4, default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.CharField(_("updated by"), max_length=120, blank=True, editable=False)

    class Meta:
        ordering = ["code"]
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")
        constraints = [
            models.CheckConstraint(condition=Q(floor__gte=0), name="alert_rule_floor_not_negative"),
            models.CheckConstraint(
                condition=Q(threshold__isnull=True) | Q(threshold__gt=0), name="alert_rule_threshold_positive"
            ),
        ]

    def __str__(self):
        return self.code


class AlertSubscription(models.Model):
    """A staff user who wants to hear of alerts: of every rule (`rules` empty) or of the rules listed, by email
    (to her account's address) and/or in the admin (a note shown on the alerts page). One per user."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="alert_subscription", verbose_name=_("staff user")
    )
    rules = models.JSONField(_("rules"), default=list, blank=True, help_text=_("None ticked: every rule."))
    by_email = models.BooleanField(_("by email"), default=True)
    in_admin = models.BooleanField(_("in the admin"), default=True)
    is_active = models.BooleanField(pgettext_lazy("switched on", "active"), default=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.CharField(_("updated by"), max_length=120, blank=True, editable=False)

    class Meta:
        verbose_name = _("alert subscription")
        verbose_name_plural = _("alert subscriptions")
        constraints = [
            models.CheckConstraint(condition=Q(by_email=True) | Q(in_admin=True), name="alert_subscription_a_channel")
        ]

    def __str__(self):
        return str(self.user)

    def wants(self, rule):
        return not self.rules or rule in self.rules


class AlertNotice(models.Model):
    """An alert the subscribers have been told of (one row per alert, written with the messages in one
    transaction): the notification sweep picks the alerts without one, so each alert is told once."""

    alert = models.OneToOneField("loyalty.Alert", models.CASCADE, primary_key=True, related_name="notice")
    notified_at = models.DateTimeField(_("notified at"), default=timezone.now)
    recipients = models.PositiveIntegerField(_("recipients"), default=0)

    class Meta:
        verbose_name = _("alert notice")
        verbose_name_plural = _("alert notices")

    def __str__(self):
        return f"alert {self.alert_id} → {self.recipients}"
