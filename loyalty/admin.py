"""The platform's admin: client apps, the message log, the audit log and job runs; and the bases every app's
admin builds on (saving through services, read-only screens, the acting staff user and her stores)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import csrf_protect_m
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from loyalty.access import CLIENT_SCOPES, ROLE_CLERK, staff_role
from loyalty.credentials import create_api_client, rotate_api_key
from loyalty.errors import DomainError
from loyalty.models import ApiClient, AuditEntry, JobChunk, JobRun, Message


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
        client, key = create_api_client(name=form.cleaned_data["name"], stores=[],
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
