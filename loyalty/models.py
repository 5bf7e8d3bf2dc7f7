"""The platform's tables: client apps and staff tokens, the audit log, the message log and the job runs.

They serve every app above and import none of them; where a row belongs to a member or a store (the message
log's recipient, a client app's stores) it names that table by foreign key, as auth's tables name the user model.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _


class ApiClient(models.Model):
    """A client app (POS, mini-program backend, e-shop) calling the API with `Authorization: Api-Key <key>`.

    Only a SHA-256 hash of the key is stored. The keys are 256-bit random strings, so a fast hash is as safe as a
    slow one and keeps authentication off the hot path; `prefix` finds the row without scanning.

    A client acts for the stores it is bound to, or for every store when `all_stores` is set, never by default: a
    client bound to no store and without `all_stores` acts for no store and no member (every request 403).
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    prefix = models.CharField(_("key prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash"), max_length=64, editable=False)
    stores = models.ManyToManyField(
        "members.Store",
        blank=True,
        related_name="api_clients",
        verbose_name=_("stores"),
        help_text=_("The stores the client acts for (leave empty with “all stores”)."),
    )
    all_stores = models.BooleanField(
        _("all stores"),
        default=False,
        help_text=_(
            "The client acts for every store, present and future (a mini-program or e-shop). Off: only for the "
            "stores chosen; with none chosen, for no store at all."
        ),
    )
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("API client")
        verbose_name_plural = _("API clients")

    def __str__(self):
        return self.name


class StaffToken(models.Model):
    """A staff bearer token (`Authorization: Bearer <token>`); only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name = _("staff token")
        verbose_name_plural = _("staff tokens")

    def __str__(self):
        return f"token of {self.user_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class LoginLock(models.Model):
    """The failed staff logins of one username (as typed, case-folded; whether or not such a user exists) and its
    lock: STAFF_LOGIN_MAX_FAILURES failures within STAFF_LOGIN_FAILURE_WINDOW lock it until `locked_until`
    (loyalty/login_guard.py). The row is locked (SELECT ... FOR UPDATE) while a login is checked."""

    username = models.CharField(_("username"), max_length=150, unique=True)
    failures = models.PositiveIntegerField(_("failures"), default=0)
    window_started_at = models.DateTimeField(_("first failure at"), null=True, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)

    class Meta:
        verbose_name = _("staff login lock")
        verbose_name_plural = _("staff login locks")

    def __str__(self):
        return self.username


class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    SENT = "sent", _("sent")
    FAILED = "failed", _("failed")
    SKIPPED = "skipped", _("skipped")


class MessageChannel(models.TextChoices):
    SMS = "sms", _("SMS")
    WECHAT = "wechat", _("WeChat")
    EMAIL = "email", _("email")
    INBOX = "inbox", _("in-app inbox")


# A template's language named in the admin's language ("英语"): the settings' LANGUAGES name each language in its
# own, for the language switch.
TEMPLATE_LANGUAGES = {
    "en": pgettext_lazy("a message template's language", "English"),
    "zh-hans": pgettext_lazy("a message template's language", "Simplified Chinese"),
}


class MessageTemplate(models.Model):
    """The text of one kind of message on one channel in one language, as a marketer edits it (checked on save by
    loyalty.message_templates: only the kind's variables, only plain {{ variable }} placeholders). The active
    template of a kind and channel in the merchant's language (MESSAGE_LANGUAGE) is what members get on that
    channel; a kind with no active template on a channel sends nothing there."""

    kind = models.CharField(_("kind"), max_length=40)
    channel = models.CharField(_("channel"), max_length=8, choices=MessageChannel.choices)
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES)
    subject = models.CharField(
        _("subject"), max_length=200, blank=True, help_text=_("Email: the subject line. Other channels: unused.")
    )
    body = models.TextField(
        _("text"),
        help_text=_(
            'Placeholders such as {{ name }} or {{ date|date:"Y-m-d" }}; only the variables of the kind. Email: '
            "HTML (values are escaped). WeChat: one `field: text` line per field of the WeChat template."
        ),
    )
    provider_template_id = models.CharField(
        _("provider template id"),
        max_length=100,
        blank=True,
        help_text=_("WeChat: the template id registered in the official account."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    updated_by = models.CharField(_("updated by"), max_length=120, blank=True, editable=False)

    class Meta:
        ordering = ["kind", "channel", "language"]
        verbose_name = _("message template")
        verbose_name_plural = _("message templates")
        constraints = [
            models.UniqueConstraint(fields=["kind", "channel", "language"], name="message_template_unique"),
        ]

    def __str__(self):
        from loyalty.message_templates import message_kinds

        kind = message_kinds.get(self.kind)
        language = TEMPLATE_LANGUAGES.get(self.language, self.language)
        labels = (kind.label if kind else self.kind, self.get_channel_display(), language)
        return " / ".join(str(label) for label in labels)

    def clean(self):
        from loyalty.message_templates import check_template

        check_template(self)


class Message(models.Model):
    """Every message sent to a member or a phone, with what became of it (the message log).

    A member's message of a kind on a channel carries a `dedupe_key` naming what it is about (the lot date, the
    year, the redemption): one row per (member, kind, channel, key), so a job run again or a trigger retried sends
    nothing twice. `send_after` is when it may go (quiet hours, the next retry, or the end of the lease of the
    worker that took it); `attempts` counts the provider calls, and a task delivers only the attempt it was sent
    for (loyalty.messaging.deliver_message). Inbox messages are stored: `read_at` is when the member read them."""

    # No index of its own: message_member_idx (member, -id) serves every lookup by member, and the job writes
    # tens of thousands of rows a night.
    member = models.ForeignKey(
        "members.Member", models.SET_NULL, null=True, blank=True, related_name="messages", db_index=False
    )
    recipient = models.CharField(_("recipient"), max_length=254, help_text=_("phone, email or openid"))
    channel = models.CharField(_("channel"), max_length=8, choices=MessageChannel.choices)
    kind = models.CharField(_("kind"), max_length=40)
    template = models.ForeignKey(
        MessageTemplate, models.SET_NULL, null=True, blank=True, related_name="messages", verbose_name=_("template")
    )
    dedupe_key = models.CharField(_("about"), max_length=100, blank=True)
    subject = models.CharField(_("subject"), max_length=200, blank=True)
    body = models.TextField(_("body"))
    status = models.CharField(_("status"), max_length=8, choices=MessageStatus.choices, default=MessageStatus.QUEUED)
    status_reason = models.CharField(_("reason"), max_length=500, blank=True)
    backend = models.CharField(_("backend"), max_length=100, blank=True)
    provider_message_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    send_after = models.DateTimeField(_("send after"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        indexes = [
            models.Index(fields=["recipient", "-id"], name="message_recipient_idx"),
            models.Index(fields=["member", "-id"], name="message_member_idx"),
            models.Index(fields=["send_after"], name="message_queued_idx", condition=models.Q(status="queued")),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["member", "kind", "channel", "dedupe_key"],
                condition=~models.Q(dedupe_key=""),
                name="message_once_per_member_kind_channel_key",
            ),
        ]

    def __str__(self):
        from loyalty.message_templates import message_kinds

        kind = message_kinds.get(self.kind)
        return gettext("%(kind)s → %(recipient)s (%(status)s)") % {
            "kind": kind.label if kind else self.kind,
            "recipient": self.recipient,
            "status": self.get_status_display(),
        }


class AuditEntry(models.Model):
    """Who changed what, when, from which value to which: one row per change a person or client app makes."""

    actor = models.CharField(_("actor"), max_length=120)
    action = models.CharField(_("action"), max_length=60)
    target_type = models.CharField(_("target type"), max_length=60)
    target_id = models.CharField(_("target id"), max_length=40)
    old_values = models.JSONField(_("old values"), null=True, blank=True)
    new_values = models.JSONField(_("new values"), null=True, blank=True)
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit log")
        indexes = [models.Index(fields=["target_type", "target_id", "-id"], name="audit_target_idx")]

    def __str__(self):
        # The action and the target's type are codes (their identity): only the sentence around them is translated.
        return gettext("%(actor)s %(action)s %(target_type)s:%(target_id)s") % {
            "actor": self.actor,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
        }


class JobStatus(models.TextChoices):
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")


class JobRun(models.Model):
    """One run of a nightly job for one business date: a job already done for a date is not done again, and a
    run that crashed resumes from its unfinished chunks."""

    job = models.CharField(_("job"), max_length=40)
    business_date = models.DateField(_("business date"))
    status = models.CharField(_("status"), max_length=8, choices=JobStatus.choices, default=JobStatus.RUNNING)
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    triggered_by = models.CharField(_("triggered by"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        constraints = [models.UniqueConstraint(fields=["job", "business_date"], name="job_run_once_per_date")]
        indexes = [models.Index(fields=["-started_at"], name="job_run_recent_idx")]

    def __str__(self):
        # A job has no label: its name is its code (as `run_job NAME` takes it).
        return gettext("%(job)s %(date)s (%(status)s)") % {
            "job": self.job,
            "date": self.business_date,
            "status": self.get_status_display(),
        }


class JobChunk(models.Model):
    """A member id range [start_id, stop_id) of a run; its work and its `done` commit in one transaction."""

    run = models.ForeignKey(JobRun, models.CASCADE, related_name="chunks")
    start_id = models.BigIntegerField()
    stop_id = models.BigIntegerField()
    status = models.CharField(max_length=8, choices=JobStatus.choices, default=JobStatus.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "start_id"], name="job_chunk_unique")]

    def __str__(self):
        return f"{self.run_id}[{self.start_id}, {self.stop_id})"


class Alert(models.Model):
    """Something staff should look at: a rule on a metric crossed its threshold (SPEC §6). Any app raises one
    through loyalty.alerts.raise_alert; `key` keeps one alert per occurrence (e.g. one per campaign whose budget
    ran out) however many processes notice it at once."""

    rule = models.CharField(_("rule"), max_length=60)
    metric = models.CharField(_("metric"), max_length=60)
    value = models.DecimalField(_("value"), max_digits=20, decimal_places=4)
    threshold = models.DecimalField(_("threshold"), max_digits=20, decimal_places=4)
    subject = models.CharField(_("subject"), max_length=120, blank=True)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    key = models.CharField(_("key"), max_length=160, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.CharField(_("acknowledged by"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        indexes = [models.Index(fields=["-created_at"], name="alert_created_idx")]

    def __str__(self):
        return f"{self.rule}: {self.metric}={self.value}"


class OutboxEvent(models.Model):
    """A domain event (points earned, a tier changed, ...) written by the service that made the change, in the
    same transaction (loyalty.events.emit), so there is no event without its change and no change without its
    event. The webhook dispatcher fans each one out to the subscriptions that want it (`dispatched_at`).

    `member_id` is the member the event is about (None for events about no member, e.g. a campaign's); it is a
    plain column, not a foreign key: set-based jobs write events for many members in one statement, and an event
    must not hold her row."""

    type = models.CharField(_("type"), max_length=60)
    member_id = models.BigIntegerField(_("member"), null=True, blank=True)
    data = models.JSONField(_("data"), default=dict)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    dispatched_at = models.DateTimeField(_("dispatched at"), null=True, blank=True)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        indexes = [
            models.Index(fields=["id"], name="outbox_undispatched_idx", condition=models.Q(dispatched_at__isnull=True)),
            models.Index(fields=["dispatched_at"], name="outbox_dispatched_idx"),
        ]

    def __str__(self):
        return f"{self.type} #{self.pk}"


class WebhookSubscription(models.Model):
    """Another system (CRM, e-shop, data warehouse) receiving the events it wants at its URL, signed with its
    secret (HMAC-SHA256; the secret is kept readable because signing needs it, and never shown again after it is
    made). `events`: event types, or `prefix.*` / `*` patterns."""

    url = models.URLField(_("URL"), max_length=500)
    events = models.JSONField(_("events"), default=list)
    secret = models.CharField(_("secret"), max_length=100)
    is_active = models.BooleanField(_("active"), default=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    created_by = models.CharField(_("created by"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")

    def __str__(self):
        return self.url


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    DELIVERED = "delivered", _("delivered")
    FAILED = "failed", _("failed")


class WebhookDelivery(models.Model):
    """One event to one subscription: attempted until the receiver answers 2xx, with exponential backoff, for at
    least WEBHOOKS_RETRY_HOURS; then failed (and an alert raised). Events of one member reach a subscription in
    order: a delivery waits while an earlier one of the same member to the same subscription is pending.

    A worker takes a delivery with a lease (`leased_until`): a worker that dies mid-delivery leaves it to be taken
    again when the lease ends, so every event is delivered at least once (receivers de-duplicate by event id)."""

    subscription = models.ForeignKey(WebhookSubscription, models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(OutboxEvent, models.CASCADE, related_name="deliveries")
    member_id = models.BigIntegerField(null=True, blank=True)  # the event's, for the per-member order
    status = models.CharField(
        _("status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True, editable=False)
    retry_from = models.DateTimeField(_("retried since"), default=timezone.now)
    last_attempt_at = models.DateTimeField(_("last attempt at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("last response status"), null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(_("last latency (ms)"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    resends = models.PositiveIntegerField(_("resends"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="webhook_delivery_once_per_event")
        ]
        indexes = [
            models.Index(
                fields=["subscription", "next_attempt_at"],
                name="webhook_delivery_due_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["subscription", "member_id", "event"],
                name="webhook_delivery_order_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self):
        return f"event {self.event_id} → {self.subscription_id} ({self.status})"
