"""The platform's admin: client apps, the message log, the audit log, job runs, webhooks (subscriptions, events and
deliveries); and the bases every app's admin builds on (saving through services, read-only screens, the acting
staff user and her stores)."""

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from loyalty import webhooks
from loyalty.access import CLIENT_SCOPES, STORE_BOUND_ROLES, staff_role
from loyalty.alerts import STAFF_ALERT_KIND, acknowledge_alert, staff_inbox_address
from loyalty.credentials import create_api_client, rotate_api_key
from loyalty.errors import DomainError, Throttled
from loyalty.events import known_patterns
from loyalty.login_guard import authenticate_staff
from loyalty.message_templates import message_kinds, save_message_template
from loyalty.message_templates import preview as preview_template
from loyalty.messaging import MISSING_ADDRESS
from loyalty.models import (
    Alert,
    ApiClient,
    AuditEntry,
    JobChunk,
    JobRun,
    Message,
    MessageChannel,
    MessageStatus,
    MessageTemplate,
    OutboxEvent,
    WebhookDelivery,
    WebhookSubscription,
)
from loyalty.stored_reasons import register as register_reason
from loyalty.stored_reasons import shown_reason
from loyalty.versions import VersionKeepsItsTerms


def clerk_store_ids(request):
    """The store ids a clerk (or a store manager) may act for, or None for roles that see every store."""
    if staff_role(request.user) in STORE_BOUND_ROLES:
        return set(request.user.stores.values_list("id", flat=True))
    return None


def admin_actor(request):
    return f"staff:{request.user.get_username()}"


class ServiceAdmin(admin.ModelAdmin):
    """Saves through services, each of which opens its own durable transaction, so the change form is not wrapped
    in one transaction as ModelAdmin does; a refused change (DomainError) comes back as an error message."""

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return self._changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            self.message_user(request, f"{error.detail} ({error.code})", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class ServiceRefusal(Exception):
    """Carries a service's refusal (a DomainError) from save_model back to the change form view."""

    def __init__(self, error):
        super().__init__(error.detail)
        self.error = error


class ConfigurationForm(forms.ModelForm):
    """A configuration form checks the input's shape only; the model's rules (clean(), constraints, uniqueness) are
    the service's to check, once for the API and the admin. A refusal of the post comes back here (`refusal_errors`,
    set by ConfigurationAdmin.get_form) to be shown on the form."""

    refusal_errors = {}

    def _post_clean(self):
        for name, texts in self.refusal_errors.items():
            for text in texts:
                self.add_error(name if name in self.fields else None, text)


class ConfigurationAdmin(ServiceAdmin):
    """Configuration saved by one service per write (points' rewards, earning rules and policy; tiers' ladder and
    growth policy). A subclass says which: `create(request, values)`, `change(request, obj, changes)` and, with
    save_as, `add_version(request, source_id, values)` for "Save as new version". Each service has its own durable
    transaction, so the form is not wrapped in one; a refusal (DomainError) is shown on the form as posted, on the
    fields it names, and nothing is saved."""

    form = ConfigurationForm
    # Fields saved only when changed from the value the form showed: a column others move while the form is open
    # (a reward's stock) is not written back when the user left it alone. The form posts the shown value for them
    # (show_hidden_initial). Every other field is compared with the saved row, which a forged post cannot hide.
    compare_with_shown = ()

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefusal as refused:
            request.service_refusal = refused.error  # the form, built again from the post, shows it (get_form)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)  # a class of its own, made per call
        refusal = getattr(request, "service_refusal", None)
        if refusal is not None:
            form_class.refusal_errors = self.refusal_errors(refusal)
        return form_class

    def refusal_errors(self, error):
        """{field or None: [messages]}: the errors a refusal names, else its code and detail above the form."""
        if isinstance(error, VersionKeepsItsTerms) and self.save_as:
            hint = _(
                "Existing versions keep their terms: press “Save as new version” to start a new version with "
                "this change."
            )
            return {name: [hint] for name in error.fields}
        errors = getattr(error, "errors", None) or error.extra.get("errors")
        return errors or {None: [f"{error.code}: {error.detail}"]}

    def save_model(self, request, obj, form, change):
        # "Save as new version" posts to the change page of the version it starts from (without save_as, Django
        # still takes the button for an add: then it is one).
        object_id = request.resolver_match.kwargs.get("object_id")
        source_id = unquote(object_id) if self.save_as and "_saveasnew" in request.POST and object_id else None
        try:
            if source_id is not None:
                saved = self.add_version(request, source_id, self.new_version_values(form))
            elif change:
                saved = self.change(request, obj, self.changed_values(form))
            else:
                saved = self.create(request, dict(form.cleaned_data))
        except DomainError as error:
            raise ServiceRefusal(error) from error
        obj.pk = saved.pk
        obj.refresh_from_db()

    def changed_values(self, form):
        """What the user changed, by field."""
        changed = [
            name
            for name, field in form.fields.items()
            if (
                name in form.changed_data
                if name in self.compare_with_shown
                else field.has_changed(form.get_initial_for_field(field, name), form[name].data)
            )
        ]
        return {name: form.cleaned_data[name] for name in changed}

    def new_version_values(self, form):
        """The values of a new version: all posted, but `compare_with_shown` fields only if the user changed them."""
        return {
            name: value
            for name, value in form.cleaned_data.items()
            if name not in self.compare_with_shown or name in form.changed_data
        }

    def create(self, request, values):
        raise NotImplementedError

    def change(self, request, obj, changes):
        raise NotImplementedError

    def add_version(self, request, source_id, values):
        raise NotImplementedError


class ReadOnlyAdmin(admin.ModelAdmin):
    # Stored fields whose page shows them as the lists do: {"reason": "shown_reason"} puts the display method (a
    # readonly field) where the stored field stood, e.g. a ledger reason as 消费 rather than as stored.
    SHOWN_FIELDS = {}

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self.SHOWN_FIELDS:
            return fields
        fields = [name for name in fields if name not in self.SHOWN_FIELDS.values()]
        return [self.SHOWN_FIELDS.get(name, name) for name in fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# Why a message was skipped (loyalty.messaging.skip_reason), as the admin shows it (loyalty/stored_reasons.py).
for _pattern, _text in (
    (r"member is (?P<status>\w+)", _("member is %(status)s")),
    (r"no consent for (?P<channel>\w+)", _("no consent for %(channel)s")),
    (r"WECHAT_APP_ID is not set", _("WECHAT_APP_ID is not set")),
    (re.escape(MISSING_ADDRESS[MessageChannel.SMS]), _("no phone number")),
    (re.escape(MISSING_ADDRESS[MessageChannel.EMAIL]), _("no email address")),
    (re.escape(MISSING_ADDRESS[MessageChannel.WECHAT]), _("no WeChat openid")),
    (re.escape(MISSING_ADDRESS[MessageChannel.INBOX]), _("no member")),
    (
        r"frequency cap: one (?P<kind>\S+) per (?P<days>\d+) days on (?P<channel>\w+)",
        _("frequency cap: one %(kind)s per %(days)s days on %(channel)s"),
    ),
):
    register_reason(_pattern, _text)


def kind_label(code):
    """A message kind as the admin shows it: its label (translated), or its code when no app registers it."""
    kind = message_kinds.get(code)
    return kind.label if kind else code


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "shown_kind", "channel", "recipient", "status", "shown_reason"]
    list_filter = ["status", "channel", "kind"]
    search_fields = ["recipient"]
    show_full_result_count = False

    @admin.display(description=_("kind"), ordering="kind")
    def shown_kind(self, message):
        return kind_label(message.kind)

    @admin.display(description=_("reason"), ordering="status_reason")
    def shown_reason(self, message):
        return shown_reason(message.status_reason)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        store_ids = clerk_store_ids(request)
        return queryset if store_ids is None else queryset.filter(member__home_store_id__in=store_ids)


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ServiceAdmin):
    """Message texts per kind, channel and language: checked on save (only the kind's variables, shown below the
    form, in plain {{ placeholders }}); the preview renders the saved text with example values."""

    fields = ["kind", "channel", "language", "subject", "body", "provider_template_id", "is_active"]
    list_display = ["shown_kind", "channel", "language", "is_active", "updated_at", "updated_by"]
    list_filter = ["kind", "channel", "language", "is_active"]
    search_fields = ["body", "subject"]

    @admin.display(description=_("kind"), ordering="kind")
    def shown_kind(self, template):
        return kind_label(template.kind)

    def get_readonly_fields(self, request, obj=None):
        fixed = ["kind", "channel", "language"] if obj is not None else []
        return [*fixed, "variables", "preview", "updated_at", "updated_by"]

    def get_fields(self, request, obj=None):
        return [*self.fields, "variables", "preview", "updated_at", "updated_by"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "kind":
            choices = sorted((kind.code, kind.label) for kind in message_kinds)
            return forms.ChoiceField(label=_("kind"), choices=choices)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description=_("variables"))
    def variables(self, obj):
        kind = message_kinds.get(obj.kind) if obj else None
        if kind is None:
            return "-"
        rows = format_html_join("", "<li><code>{{{{ {} }}}}</code>: {}</li>", sorted(kind.all_variables.items()))
        marketing = _("marketing: sent only with the member's consent") if kind.marketing else _("transactional")
        return format_html("<p>{}</p><ul>{}</ul>", marketing, rows)

    @admin.display(description=_("preview"))
    def preview(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        rendered = preview_template(obj)
        return format_html('<pre style="white-space: pre-wrap">{}\n\n{}</pre>', rendered.subject, rendered.body)

    def save_model(self, request, obj, form, change):
        save_message_template(actor=admin_actor(request), template=obj)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor", "target_id"]
    show_full_result_count = False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts any app raised (a campaign's budget ran out ...): read-only, and staff who see them acknowledge them
    (who and when, audited) through loyalty.alerts."""

    list_display = [
        "created_at",
        "rule",
        "subject",
        "metric",
        "value",
        "threshold",
        "acknowledged_at",
        "acknowledged_by",
    ]
    list_filter = ["rule", ("acknowledged_at", admin.EmptyFieldListFilter)]
    search_fields = ["subject"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    actions = ["acknowledge"]
    acknowledge_limit = 500  # rows one action acknowledges, each in its own transaction
    notes_shown = 20

    def has_acknowledge_permission(self, request):
        return staff_role(request.user) is not None and self.has_view_permission(request)

    def changelist_view(self, request, extra_context=None):
        """The staff user's unread in-admin alert notes (reports' subscriptions) shown once, at the top."""
        notes = Message.objects.filter(
            member__isnull=True,
            channel=MessageChannel.INBOX,
            kind=STAFF_ALERT_KIND,
            recipient=staff_inbox_address(request.user),
            status=MessageStatus.SENT,
            read_at__isnull=True,
        ).order_by("id")
        shown = list(notes.values_list("pk", "subject")[: self.notes_shown])
        for _pk, subject in shown:
            self.message_user(request, subject, messages.WARNING)
        if shown:
            Message.objects.filter(pk__in=[pk for pk, _subject in shown]).update(read_at=timezone.now())
        return super().changelist_view(request, extra_context)

    @admin.action(description=_("Acknowledge the selected alerts"), permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        done = 0
        actor = admin_actor(request)
        for alert_id in queryset.order_by("id").values_list("pk", flat=True)[: self.acknowledge_limit]:
            try:
                _alert, changed = acknowledge_alert(actor=actor, alert_id=alert_id)
            except DomainError:  # gone meanwhile
                continue
            done += changed
        self.message_user(request, _("Acknowledged %(count)s alert(s).") % {"count": done}, messages.SUCCESS)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class ApiClientForm(forms.ModelForm):
    """The stores a client acts for and its scopes are chosen, never assumed: some stores or "all stores" (not
    both, not neither), and at least one scope (none ticked in advance)."""

    scopes = forms.MultipleChoiceField(
        label=capfirst(ApiClient._meta.get_field("scopes").verbose_name),
        choices=sorted(CLIENT_SCOPES.items()),
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiClient
        fields = ["name", "stores", "all_stores", "scopes", "is_active"]

    def clean(self):
        cleaned = super().clean()
        stores, all_stores = cleaned.get("stores"), cleaned.get("all_stores")
        if "stores" in self.errors:
            return cleaned
        if all_stores and stores:
            self.add_error(
                "stores", _("A client for all stores is bound to no particular store: choose one or the other.")
            )
        elif not all_stores and not stores:
            self.add_error("stores", _("Choose the stores the client acts for, or tick “all stores”."))
        return cleaned


@admin.register(ApiClient)
class ApiClientAdmin(ServiceAdmin):
    form = ApiClientForm
    list_display = ["name", "prefix", "all_stores", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active", "all_stores"]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["stores"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["rotate_keys"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        client, key = create_api_client(
            name=form.cleaned_data["name"],
            stores=form.cleaned_data["stores"],
            all_stores=form.cleaned_data["all_stores"],
            scopes=form.cleaned_data["scopes"],
            is_active=form.cleaned_data["is_active"],
        )
        obj.pk = client.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            _("API key for %(name)s (shown once, copy it now): %(key)s") % {"name": client.name, "key": key},
            messages.WARNING,
        )

    @admin.action(description=_("Rotate the key of the selected clients"))
    def rotate_keys(self, request, queryset):
        for client in queryset:
            key = rotate_api_key(client)
            self.message_user(
                request,
                _("New key for %(name)s (shown once): %(key)s") % {"name": client.name, "key": key},
                messages.WARNING,
            )


class JobChunkInline(ReadOnlyInline):
    model = JobChunk
    fields = ["start_id", "stop_id", "status", "counts", "attempts", "error", "finished_at"]


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    """Nightly job runs: one per job and business date, with their chunks, counts and errors. The schedule
    itself is under Periodic tasks; `manage.py run_job NAME --as-of DATE` runs one by hand."""

    list_display = [
        "job",
        "business_date",
        "status",
        "chunks_done",
        "chunks_total",
        "counts",
        "started_at",
        "finished_at",
        "triggered_by",
    ]
    list_filter = ["job", "status"]
    date_hierarchy = "business_date"
    inlines = [JobChunkInline]


# --- Webhooks ----------------------------------------------------------------------------------------------------


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        label=capfirst(WebhookSubscription._meta.get_field("events").verbose_name),
        choices=[(pattern, pattern) for pattern in known_patterns()],
        widget=forms.CheckboxSelectMultiple,
        help_text=_("`prefix.*` takes every event of that kind, `*` every event."),
    )

    class Meta:
        model = WebhookSubscription
        fields = ["url", "events", "description", "is_active"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(ServiceAdmin):
    """Subscriptions, saved through loyalty.webhooks (the URL checked as in the API); the secret is shown once, when
    it is made (on creation, or by the “new secret” action)."""

    form = WebhookSubscriptionForm
    list_display = ["url", "events", "is_active", "created_at", "created_by"]
    list_filter = ["is_active"]
    search_fields = ["url", "description"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    actions = ["new_secrets"]

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in ["url", "events", "description", "is_active"]}
        try:
            if change:
                saved = webhooks.change_subscription(actor=admin_actor(request), subscription_id=obj.pk, changes=values)
            else:
                saved, secret = webhooks.create_subscription(actor=admin_actor(request), values=values)
                self.message_user(
                    request,
                    _("Signing secret of %(url)s (shown once, copy it now): %(secret)s")
                    % {"url": saved.url, "secret": secret},
                    messages.WARNING,
                )
        except DomainError as error:
            raise ServiceRefusal(error) from error
        obj.pk = saved.pk
        obj.refresh_from_db()

    @csrf_protect_m
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefusal as refused:
            errors = getattr(refused.error, "errors", None) or {}
            detail = "; ".join(f"{name}: {' '.join(texts)}" for name, texts in errors.items()) or refused.error.detail
            self.message_user(request, detail, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request, obj):
        webhooks.delete_subscription(actor=admin_actor(request), subscription_id=obj.pk)

    def delete_queryset(self, request, queryset):
        for subscription in queryset:
            self.delete_model(request, subscription)

    @admin.action(description=_("Make a new signing secret for the selected subscriptions"))
    def new_secrets(self, request, queryset):
        for subscription in queryset:
            secret = webhooks.generate_secret()
            webhooks.change_subscription(
                actor=admin_actor(request), subscription_id=subscription.pk, changes={"secret": secret}
            )
            self.message_user(
                request,
                _("New signing secret of %(url)s (shown once): %(secret)s")
                % {"url": subscription.url, "secret": secret},
                messages.WARNING,
            )


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """The events the services wrote for the webhooks (only while a subscription wants their type)."""

    list_display = ["id", "type", "member_id", "created_at", "dispatched_at"]
    list_filter = ["type"]
    search_fields = ["=member_id", "=id"]
    show_full_result_count = False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Each event to each subscription: status, attempts, the last answer and its latency, the next attempt."""

    list_display = [
        "id",
        "subscription",
        "event_type",
        "event_id",
        "member_id",
        "status",
        "attempts",
        "last_status_code",
        "last_latency_ms",
        "last_error",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "subscription"]
    list_select_related = ["subscription", "event"]
    search_fields = ["=event__id", "=member_id"]
    show_full_result_count = False
    actions = ["resend"]

    @admin.display(description=_("event type"))
    def event_type(self, delivery):
        return delivery.event.type

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Send the selected deliveries again"), permissions=["resend"])
    def resend(self, request, queryset):
        for delivery in queryset:
            webhooks.resend_delivery(
                actor=admin_actor(request), subscription_id=delivery.subscription_id, delivery_id=delivery.pk
            )
        self.message_user(request, _("%(count)d deliveries will be sent again.") % {"count": queryset.count()})

    def has_resend_permission(self, request):
        return request.user.has_perm("loyalty.change_webhookdelivery")


# --- The admin login: throttled and locked as the API's staff login (loyalty/login_guard.py) -----------------------


class StaffAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, checking the password through the login guard; a refusal (throttled or locked) is
    shown on the form, and the page answers 429 (guarded_admin_login)."""

    refusal = None

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = authenticate_staff(self.request, username=username, password=password)
            except Throttled as refusal:
                self.refusal = refusal
                raise ValidationError(refusal.detail, code=refusal.code) from None
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


_site_login = admin.site.login


def guarded_admin_login(request, extra_context=None):
    """admin.site's login view, answering 429 (with Retry-After) when the guard refused the attempt."""
    response = _site_login(request, extra_context)
    form = (getattr(response, "context_data", None) or {}).get("form")
    refusal = getattr(form, "refusal", None)
    if refusal is not None:
        response.status_code = 429
        if refusal.retry_after:
            response["Retry-After"] = str(int(refusal.retry_after))
    return response


admin.site.login_form = StaffAdminLoginForm
admin.site.login = guarded_admin_login  # the site's urls are built later (loyalty/urls.py), with this view
# There is no public web site to go back to: without this the admin's "View site" link leads to a 404.
admin.site.site_url = None
