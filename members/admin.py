"""Admin screens for the counter (clerks), marketers and admins. Writes go through members.services, the same
functions the API calls; clerks see and act for the members of their own stores only."""

import contextlib

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from loyalty.access import CLIENT_SCOPES, ROLE_CLERK, staff_role
from loyalty.errors import DomainError
from members import services
from members.models import (
    ApiClient,
    AuditEntry,
    JobChunk,
    JobRun,
    Member,
    MemberTag,
    Message,
    Purchase,
    PurchaseLine,
    Refund,
    RfmSnapshot,
    StaffUser,
    Store,
    Tag,
    TagKind,
)
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from members.services.access import rotate_api_key
from members.services.membership import UPDATABLE_FIELDS
from members.services.versions import VersionKeepsItsTerms
from members.tag_rules import InvalidRule, validate_rule


def clerk_store_ids(request):
    """The store ids a clerk may act for, or None for roles that see every store."""
    if staff_role(request.user) == ROLE_CLERK:
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
            hint = _("Existing versions keep their terms: press “Save as new version” to start a new version with "
                     "this change.")
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
        changed = [name for name, field in form.fields.items()
                   if (name in form.changed_data if name in self.compare_with_shown
                       else field.has_changed(form.get_initial_for_field(field, name), form[name].data))]
        return {name: form.cleaned_data[name] for name in changed}

    def new_version_values(self, form):
        """The values of a new version: all posted, but `compare_with_shown` fields only if the user changed them."""
        return {name: value for name, value in form.cleaned_data.items()
                if name not in self.compare_with_shown or name in form.changed_data}

    def create(self, request, values):
        raise NotImplementedError

    def change(self, request, obj, changes):
        raise NotImplementedError

    def add_version(self, request, source_id, values):
        raise NotImplementedError


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "city", "is_active"]
    list_filter = ["is_active", "city"]
    search_fields = ["code", "name", "city"]


class TagAdminForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["code", "name", "kind", "rule", "description", "is_active"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") == TagKind.RULE:
            try:
                validate_rule(cleaned.get("rule"))
            except InvalidRule as error:
                self.add_error("rule", str(error))
        elif cleaned.get("rule"):
            self.add_error("rule", _("Manual tags have no rule."))
        return cleaned


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    form = TagAdminForm
    list_display = ["code", "name", "kind", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]


class MemberTagInline(admin.TabularInline):
    model = MemberTag
    extra = 1
    fields = ["tag", "added_at", "added_by"]
    readonly_fields = ["added_at", "added_by"]
    autocomplete_fields = ["tag"]
    verbose_name = _("tag")
    verbose_name_plural = _("tags")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tag":
            kwargs["queryset"] = Tag.objects.filter(kind=TagKind.MANUAL, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class MemberAdminForm(forms.ModelForm):
    consents = forms.MultipleChoiceField(
        label=_("marketing consents"), required=False, widget=forms.CheckboxSelectMultiple,
        choices=[("sms", _("SMS")), ("wechat", _("WeChat")), ("email", _("email"))],
    )

    class Meta:
        model = Member
        fields = ["phone", "external_id", "name", "gender", "birthday", "email", "home_store", "channel"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["consents"].initial = [c for c, on in self.instance.consents.items() if on]

    def clean_phone(self):
        phone = self.cleaned_data.get("phone")
        if not phone:
            return None
        try:
            return normalise_phone(phone)
        except InvalidPhoneNumber as error:
            raise forms.ValidationError(str(error)) from None

    def clean_external_id(self):
        return self.cleaned_data.get("external_id") or None

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("phone") and not cleaned.get("external_id") and "phone" not in self.errors:
            raise forms.ValidationError(_("Give a phone or an external id."))
        for field in ("phone", "external_id"):
            value = cleaned.get(field)
            other = Member.objects.filter(**{field: value}).exclude(pk=self.instance.pk).first() if value else None
            if other:
                self.add_error(field, _("Member %(no)s already has this value.") % {"no": other.member_no})
        return cleaned

    def _post_clean(self):
        # Uniqueness and the rest are checked by the service, which answers with the existing member.
        pass


@admin.register(Member)
class MemberAdmin(ServiceAdmin):
    form = MemberAdminForm
    list_display = ["member_no", "name", "phone", "home_store", "status", "joined_at"]
    list_filter = ["status", "home_store", "tags", "channel"]
    list_select_related = ["home_store"]
    search_fields = ["member_no", "phone", "name", "external_id"]
    search_help_text = _("Card number, phone (any format), external id, or part of a name.")
    readonly_fields = ["member_no", "referral_code", "referrer", "status", "joined_at", "updated_at"]
    inlines = [MemberTagInline]
    actions = ["freeze_members", "unfreeze_members"]
    show_full_result_count = False  # no COUNT(*) over millions of members on every search

    def get_fieldsets(self, request, obj=None):
        main = ["phone", "external_id", "name", "gender", "birthday", "email", "home_store", "channel", "consents"]
        if obj is None:
            return [(None, {"fields": main})]
        return [(None, {"fields": ["member_no", "status", *main]}),
                (_("Membership"), {"fields": ["referral_code", "referrer", "joined_at", "updated_at"]})]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        store_ids = clerk_store_ids(request)
        return queryset if store_ids is None else queryset.filter(home_store_id__in=store_ids)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        condition = Q(member_no=term) | Q(external_id=term) | Q(name__icontains=term)
        with contextlib.suppress(InvalidPhoneNumber):
            condition |= Q(phone=normalise_phone(term))
        return queryset.filter(condition), False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "home_store":
            store_ids = clerk_store_ids(request)
            queryset = Store.objects.filter(is_active=True)
            kwargs["queryset"] = queryset if store_ids is None else queryset.filter(pk__in=store_ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        consents = {channel: channel in data.get("consents", []) for channel in ("sms", "wechat", "email")}
        if change:
            changes = {field: data.get(field) for field in form.changed_data if field in UPDATABLE_FIELDS}
            services.update_member(actor=admin_actor(request), member=obj, changes=changes, consents=consents)
            return
        member = services.register_member(
            actor=admin_actor(request), phone=data.get("phone"), external_id=data.get("external_id"),
            name=data.get("name") or "", gender=data.get("gender") or "unknown",
            birthday=data.get("birthday"), email=data.get("email") or "", store=data.get("home_store"),
            channel=data.get("channel") or "store", consents=consents,
        )
        obj.pk = member.pk
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        # Tags go through the services too: added and removed one by one, with their audit rows.
        member = form.instance
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            data = inline_form.cleaned_data or {}
            tag = data.get("tag")
            if tag is None or not (inline_form.has_changed() or data.get("DELETE")):
                continue
            if data.get("DELETE"):
                services.remove_member_tag(actor=admin_actor(request), member=member, tag_code=tag.code)
                formset.deleted_objects.append(inline_form.instance)
            elif inline_form.instance.pk is None:
                services.add_member_tag(actor=admin_actor(request), member=member, tag=tag)
                formset.new_objects.append(inline_form.instance)

    @admin.action(description=_("Freeze the selected members"), permissions=["change"])
    def freeze_members(self, request, queryset):
        for member in queryset[:500]:
            services.freeze_member(actor=admin_actor(request), member=member, reason="admin action")
        self.message_user(request, _("Frozen."), messages.SUCCESS)

    @admin.action(description=_("Unfreeze the selected members"), permissions=["change"])
    def unfreeze_members(self, request, queryset):
        for member in queryset[:500]:
            services.unfreeze_member(actor=admin_actor(request), member=member, reason="admin action")
        self.message_user(request, _("Unfrozen."), messages.SUCCESS)

    def has_delete_permission(self, request, obj=None):
        return False  # members are anonymised, never deleted: their ledger stays


class ApiClientForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=sorted(CLIENT_SCOPES.items()), widget=forms.CheckboxSelectMultiple,
                                       required=False, initial=sorted(CLIENT_SCOPES))

    class Meta:
        model = ApiClient
        fields = ["name", "stores", "scopes", "is_active"]


@admin.register(ApiClient)
class ApiClientAdmin(ServiceAdmin):
    form = ApiClientForm
    list_display = ["name", "prefix", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["stores"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["rotate_keys"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        client, key = services.create_api_client(name=form.cleaned_data["name"], stores=[],
                                                 scopes=form.cleaned_data["scopes"],
                                                 is_active=form.cleaned_data["is_active"])
        obj.pk = client.pk
        obj.refresh_from_db()
        self.message_user(request, _("API key for %(name)s (shown once, copy it now): %(key)s")
                          % {"name": client.name, "key": key}, messages.WARNING)

    @admin.action(description=_("Rotate the key of the selected clients"))
    def rotate_keys(self, request, queryset):
        for client in queryset:
            key = rotate_api_key(client)
            self.message_user(request, _("New key for %(name)s (shown once): %(key)s")
                              % {"name": client.name, "key": key}, messages.WARNING)


@admin.register(StaffUser)
class StaffUserAdmin(UserAdmin):
    fieldsets = [*UserAdmin.fieldsets, (_("Stores"), {"fields": ["stores"]})]
    filter_horizontal = [*UserAdmin.filter_horizontal, "stores"]
    list_display = ["username", "first_name", "last_name", "is_staff", "is_active"]
    list_filter = [*UserAdmin.list_filter, "stores"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "kind", "channel", "recipient", "status", "status_reason"]
    list_filter = ["status", "channel", "kind"]
    search_fields = ["recipient"]
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        store_ids = clerk_store_ids(request)
        return queryset if store_ids is None else queryset.filter(member__home_store_id__in=store_ids)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor", "target_id"]
    show_full_result_count = False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class PurchaseLineInline(ReadOnlyInline):
    model = PurchaseLine
    fields = ["sku", "category", "quantity", "unit_price", "refunded_quantity"]


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = ["refund_no", "amount", "points_reversed", "points_returned", "occurred_at"]


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    """Orders as recorded (through the API, the member page's "record purchase" action, or the import)."""

    list_display = ["order_no", "member", "store", "amount", "refunded_amount", "points_awarded", "occurred_at"]
    list_filter = ["store", "channel"]
    list_select_related = ["member", "store"]
    search_fields = ["order_no", "member__member_no", "member__phone"]
    inlines = [PurchaseLineInline, RefundInline]
    show_full_result_count = False
    date_hierarchy = "occurred_at"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        store_ids = clerk_store_ids(request)
        return queryset if store_ids is None else queryset.filter(store_id__in=store_ids)


class JobChunkInline(ReadOnlyInline):
    model = JobChunk
    fields = ["start_id", "stop_id", "status", "counts", "attempts", "error", "finished_at"]


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    """Nightly job runs: one per job and business date, with their chunks, counts and errors. The schedule
    itself is under Periodic tasks; `manage.py run_job NAME --as-of DATE` runs one by hand."""

    list_display = ["job", "business_date", "status", "chunks_done", "chunks_total", "counts", "started_at",
                    "finished_at", "triggered_by"]
    list_filter = ["job", "status"]
    date_hierarchy = "business_date"
    inlines = [JobChunkInline]


@admin.register(RfmSnapshot)
class RfmSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["as_of", "member", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
                    "segment", "lifecycle"]
    list_filter = ["as_of", "segment", "lifecycle"]
    list_select_related = ["member"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False
