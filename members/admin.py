"""Admin screens for the counter (clerks), marketers and admins. Writes go through members.services, the same
functions the API calls; clerks see and act for the members of their own stores only."""

import contextlib

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loyalty.admin import ReadOnlyAdmin, ReadOnlyInline, ServiceAdmin, admin_actor, clerk_store_ids
from members import services
from members.models import (
    Member,
    MemberTag,
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
from members.services.membership import UPDATABLE_FIELDS
from members.tag_rules import InvalidRule, validate_rule


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


@admin.register(StaffUser)
class StaffUserAdmin(UserAdmin):
    fieldsets = [*UserAdmin.fieldsets, (_("Stores"), {"fields": ["stores"]})]
    filter_horizontal = [*UserAdmin.filter_horizontal, "stores"]
    list_display = ["username", "first_name", "last_name", "is_staff", "is_active"]
    list_filter = [*UserAdmin.list_filter, "stores"]


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


@admin.register(RfmSnapshot)
class RfmSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["as_of", "member", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
                    "segment", "lifecycle"]
    list_filter = ["as_of", "segment", "lifecycle"]
    list_select_related = ["member"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False
