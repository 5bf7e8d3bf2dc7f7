"""Admin screens for the counter (clerks), marketers and admins. Writes go through members.services, the same
functions the API calls; clerks see and act for the members of their own stores only."""

import contextlib
import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.admin.views.main import SEARCH_VAR
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.db.models.functions import Reverse
from django.db.models.lookups import StartsWith
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import re_path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from loyalty.access import ROLE_ADMIN, staff_role
from loyalty.admin import ReadOnlyAdmin, ReadOnlyInline, ServiceAdmin, admin_actor, clerk_store_ids
from loyalty.audit import record_audit
from loyalty.errors import DomainError
from loyalty.login_guard import unlock_staff_login
from loyalty.roles import STAFF_POWER_FIELDS, grantable_groups, may_manage_staff, staff_access
from members import services
from members.admin_tag_rules import TagRuleFormMixin
from members.extensions import GLANCE_ORDER, member_glance, member_search_shortcuts, represent_member_field
from members.filters import found_as
from members.models import (
    Lifecycle,
    Member,
    MemberMerge,
    MemberStatus,
    MemberTag,
    Purchase,
    PurchaseLine,
    Refund,
    RfmSnapshot,
    Segment,
    StaffUser,
    Store,
    Tag,
    TagKind,
    WechatIdentity,
)
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from members.services.membership import CARD_NUMBER_LENGTH, UPDATABLE_FIELDS, is_valid_member_no, may_change_status

FOUND_SESSION_KEY = "members.found_by_exact_key"
FOUND_REMEMBERED = 50  # the members a clerk found chain-wide that stay open to her (newest first)
EXACT_MATCHES = 10
LAST_DIGITS = 4
SURVIVORS_FOUND = 500  # members found through merged duplicates matching a search
PURCHASES_SHOWN = 5


# A scanned member code: her card number, bare or at the end of what the code holds (a link or a prefixed text,
# "https://…/m/899677121571", "member:899677121571"); a scanner types what it reads into the search box.
SCANNED_CARD_NUMBER = re.compile(rf"(?:^|[^0-9])([0-9]{{{CARD_NUMBER_LENGTH}}})$")
# WeChat openids (28 characters today) and unionids: letters, digits, - and _; never a phone or a card number.
WECHAT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def scanned_card_number(term):
    """The card number a scanned member code carries, when its check digit holds; else None."""
    match = SCANNED_CARD_NUMBER.search(term)
    if match and is_valid_member_no(match.group(1)):
        return match.group(1)
    return None


def wechat_member_ids(term):
    """The members whose WeChat openid (in any of the merchant's apps) or unionid is `term`: a member shows it at
    the counter from her WeChat (her membership card), and it cannot be guessed, so it finds her chain-wide like
    her card number. Read first (a few index lookups), not ORed into the search as a subquery."""
    if not WECHAT_ID.match(term) or term.isdigit():
        return []
    found = WechatIdentity.objects.filter(Q(openid=term) | Q(unionid=term)).values_list("member_id", flat=True)
    return list(found[:EXACT_MATCHES])


def exact_key_condition(term):
    """The keys a clerk finds any member of the chain by (SPEC §1): her card number (on her card, or read from her
    scanned member code), her phone in any spelling, or her WeChat openid."""
    condition = Q(member_no=scanned_card_number(term) or term)
    with contextlib.suppress(InvalidPhoneNumber):
        condition |= Q(phone=normalise_phone(term))
    wechat = wechat_member_ids(term)
    if wechat:
        condition |= Q(pk__in=wechat)
    return condition


def chain_wide_matches(term):
    """Ids of the members of any store whose card number or phone is exactly `term` (a merged duplicate's lead to
    her survivor): unique columns, so at most a few index lookups."""
    found = found_as(Member.objects.all(), exact_key_condition(term)).exclude(status=MemberStatus.MERGED)
    return list(found.order_by("pk").values_list("pk", flat=True)[:EXACT_MATCHES])


def found_member_ids(request):
    """The members of other stores this clerk found by an exact key in this login session: she may open and serve
    them (and only them: guessing an id in the URL finds nothing)."""
    return [int(pk) for pk in request.session.get(FOUND_SESSION_KEY, [])]


def remember_found(request, member_ids):
    kept = [pk for pk in found_member_ids(request) if pk not in member_ids]
    request.session[FOUND_SESSION_KEY] = [*member_ids, *kept][:FOUND_REMEMBERED]


def phone_ends_with(digits):
    """Phones ending with `digits`, as a prefix of the reversed phone: on PostgreSQL the expression index
    member_phone_reversed_idx (migration 0014) answers it without reading every member."""
    return StartsWith(Reverse("phone"), digits[::-1])


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "city", "is_active"]
    list_filter = ["is_active", "city"]
    search_fields = ["code", "name", "city"]


class TagAdminForm(TagRuleFormMixin, forms.ModelForm):
    """A tag; a rule-based tag's rule in fields (members.admin_tag_rules), or as JSON when the fields cannot say it."""

    class Meta:
        model = Tag
        fields = ["code", "name", "kind", "rule", "description", "is_active"]

    def clean(self):
        cleaned = super().clean()
        rule = self.clean_rule_fields(cleaned)
        if cleaned.get("kind") == TagKind.RULE:
            if rule is None and "rule" not in self.errors:
                self.add_error("rule", _("A rule-based tag needs a rule: fill in at least one condition."))
        elif rule:
            self.add_error("rule", _("Manual tags have no rule."))
        return cleaned


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    form = TagAdminForm
    fieldsets = [
        (None, {"fields": ["code", "name", "kind", "description", "is_active"]}),
        (
            _("Rule (rule-based tags)"),
            {
                "fields": [
                    "rule_match",
                    ("rule_age_min", "rule_age_max"),
                    "rule_gender",
                    "rule_birthday_month",
                    ("rule_bought_category", "rule_bought_days"),
                    ("rule_spent_min", "rule_spent_days"),
                    "rule_segments",
                    "rule_lifecycles",
                    "rule_stores",
                    "rule_joined_within_days",
                    "rule",
                ]
            },
        ),
    ]
    list_display = ["code", "name", "kind", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]

    def get_fieldsets(self, request, obj=None):
        """Read-only (a clerk views tags): the rule as saved, not the editing fields (which have no values to
        show outside the form)."""
        if obj is None or self.has_change_permission(request, obj):
            return super().get_fieldsets(request, obj)
        main = (None, {"fields": ["code", "name", "kind", "description", "is_active"]})
        if obj.kind != TagKind.RULE:
            return [main]
        return [main, (_("Rule (rule-based tags)"), {"fields": ["rule"]})]


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
        label=_("marketing consents"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[("sms", _("SMS")), ("wechat", _("WeChat")), ("email", _("email"))],
    )

    class Meta:
        model = Member
        fields = ["phone", "external_id", "name", "gender", "birthday", "email", "home_store", "channel"]

    # The stores of a store-bound user (clerk, store manager), set by MemberAdmin.get_form; None for the others.
    clerk_store_ids = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["consents"].initial = [c for c, on in self.instance.consents.items() if on]
        if self.clerk_store_ids is not None and len(self.clerk_store_ids) != 1 and "home_store" in self.fields:
            self.fields["home_store"].required = True

    def clean_home_store(self):
        """A clerk's member has one of her stores as home store: her only store when she left it empty (SPEC §1),
        else the one she chose (the choices are hers only)."""
        store = self.cleaned_data.get("home_store")
        store_ids = self.clerk_store_ids
        if store is not None or store_ids is None:
            return store
        if len(store_ids) == 1:
            return Store.objects.get(pk=next(iter(store_ids)))
        if not store_ids:
            raise forms.ValidationError(_("You belong to no store: an admin adds you to yours first."))
        raise forms.ValidationError(_("Choose one of your stores as her home store."))

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


class MergeForm(forms.Form):
    """Merge a duplicate into the member whose page this is: first the duplicate and a reason, then a confirmation
    showing both members (the merge cannot be undone)."""

    duplicate = forms.CharField(
        label=_("duplicate member"),
        max_length=64,
        help_text=_(
            "Card number, phone or external id of the member to merge into this "
            "one. She is closed; her points, purchases and tags move here."
        ),
    )
    reason = forms.CharField(label=_("reason"), max_length=200, widget=forms.TextInput(attrs={"size": 60}))
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, survivor, **kwargs):
        self.survivor = survivor
        super().__init__(*args, **kwargs)

    def clean_duplicate(self):
        term = self.cleaned_data["duplicate"].strip()
        condition = Q(member_no=term) | Q(external_id=term)
        with contextlib.suppress(InvalidPhoneNumber):
            condition |= Q(phone=normalise_phone(term))
        if term.isdigit() and len(term) <= 18:
            condition |= Q(pk=int(term))
        found = list(Member.objects.filter(condition).exclude(pk=self.survivor.pk).order_by("pk")[:2])
        if not found:
            raise forms.ValidationError(_("No other member has this card number, phone or external id."))
        if len(found) > 1:
            raise forms.ValidationError(_("Several members match; give the card number."))
        return found[0]


def member_summary(member):
    """What a clerk compares before merging: identity, status, and the other apps' figures (points, tier)."""
    points = represent_member_field("points", member)
    tier = represent_member_field("tier", member)
    return [
        (_("card number"), member.member_no),
        (_("name"), member.name),
        (_("phone"), member.phone or "—"),
        (_("external id"), member.external_id or "—"),
        (_("home store"), member.home_store or "—"),
        (_("status"), member.get_status_display()),
        (_("joined at"), member.joined_at.date()),
        (_("points"), _("%(available)s available, %(pending)s pending") % points),
        (_("tier"), tier["name"] if tier else "—"),
        (_("growth value"), represent_member_field("growth_value", member)),
        (_("tags"), ", ".join(sorted(tag.code for tag in member.tags.all())) or "—"),
    ]


def glance_rows(member):
    """The member page's summary: every app's part (members.extensions.member_glance), in GLANCE_ORDER."""
    rank = {key: index for index, key in enumerate(GLANCE_ORDER)}
    keys = sorted(member_glance.keys(), key=lambda key: (rank.get(key, len(rank)), key))
    return [row for key in keys for row in member_glance[key](member)]


def rfm_glance(member):
    """Her segment and lifecycle stage from the newest RFM run, as the API's member representation has them."""
    rfm = represent_member_field("rfm", member)
    if rfm is None:
        not_yet = _("not computed yet (the nightly RFM job has not run)")
        return [(_("segment"), not_yet), (_("lifecycle stage"), not_yet)]
    figures = {
        "segment": dict(Segment.choices).get(rfm["segment"], rfm["segment"]),
        "r": rfm["r_score"],
        "f": rfm["f_score"],
        "m": rfm["m_score"],
        "as_of": rfm["as_of"],
    }
    if rfm["r_score"] is None:  # inactive: no purchase in the window, so no scores
        segment = _("%(segment)s (as of %(as_of)s)") % figures
    else:
        segment = _("%(segment)s (R%(r)s F%(f)s M%(m)s, as of %(as_of)s)") % figures
    lifecycle = dict(Lifecycle.choices).get(rfm["lifecycle"], rfm["lifecycle"])
    return [(_("segment"), segment), (_("lifecycle stage"), lifecycle)]


def purchases_glance(member):
    """Her newest purchases (any store), on the (member, occurred_at) index."""
    purchases = list(
        Purchase.objects.filter(member_id=member.pk)
        .select_related("store")
        .order_by("-occurred_at", "-id")[:PURCHASES_SHOWN]
    )
    label = _("last purchases")
    if not purchases:
        return [(label, _("No purchases yet."))]
    rows = [
        (
            timezone.localtime(p.occurred_at).strftime("%Y-%m-%d %H:%M"),
            p.order_no,
            p.store.name if p.store else "—",
            p.amount,
            p.refunded_amount if p.refunded_amount else "",
            p.points_awarded,
        )
        for p in purchases
    ]
    table = format_html(
        '<table class="member-purchases"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
        "<th>{}</th></tr></thead><tbody>{}</tbody></table>",
        _("occurred at"),
        _("order number"),
        _("store"),
        _("amount"),
        _("refunded"),
        _("points"),
        format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
    )
    return [(label, table)]


member_glance.register(rfm_glance, key="rfm")
member_glance.register(purchases_glance, key="purchases")


@admin.register(Member)
class MemberAdmin(ServiceAdmin):
    form = MemberAdminForm
    change_form_template = "admin/members/member/change_form.html"
    list_display = ["member_no", "name", "phone", "home_store", "status", "joined_at"]
    list_filter = ["status", "home_store", "tags", "channel"]
    list_select_related = ["home_store"]
    search_fields = ["member_no", "phone", "name", "external_id"]
    search_help_text = _(
        "Card number or scanned member code, phone (any format), WeChat openid, external id, part of a name, or a "
        "coupon code."
    )
    readonly_fields = [
        "member_no",
        "referral_code",
        "referrer",
        "status",
        "merged_into",
        "joined_at",
        "updated_at",
        "wechat_identities",
        "consents_shown",
    ]
    inlines = [MemberTagInline]
    actions = ["freeze_members", "unfreeze_members"]
    show_full_result_count = False  # no COUNT(*) over millions of members on every search

    def get_fieldsets(self, request, obj=None):
        main = ["phone", "external_id", "name", "gender", "birthday", "email", "home_store", "channel", "consents"]
        if obj is None:
            return [(None, {"fields": main})]
        if not self.has_change_permission(request, obj):  # read-only: the form's consents field is not shown
            main[-1] = "consents_shown"
        status = ["status", "merged_into"] if obj.merged_into_id else ["status"]
        return [
            (None, {"fields": ["member_no", *status, *main]}),
            (_("Membership"), {"fields": ["referral_code", "referrer", "joined_at", "updated_at"]}),
            (_("WeChat"), {"fields": ["wechat_identities"]}),
        ]

    @admin.display(description=_("marketing consents"))
    def consents_shown(self, obj):
        """Her consents as the channels she agreed to, for those who see her profile read-only."""
        labels = dict(MemberAdminForm.base_fields["consents"].choices)
        return ", ".join(str(labels[channel]) for channel, on in obj.consents.items() if on) or "—"

    @admin.display(description=_("WeChat identities"))
    def wechat_identities(self, obj):
        """Her openids per app (and unionid), as the mini-program or official account bound them through the API."""
        rows = WechatIdentity.objects.filter(member=obj).order_by("id").values_list("app_id", "openid", "unionid")
        return format_html_join(", ", "{}: {} {}", rows) if rows else "-"

    def get_queryset(self, request):
        """Everyone's for roles bound to no store; for a clerk, her stores' members and the members of other stores
        she found by an exact card number or phone (remember_found): lists still show only her stores' members
        (get_search_results), but she may open those she found and serve them at her store."""
        queryset = super().get_queryset(request)
        store_ids = clerk_store_ids(request)
        if store_ids is None:
            return queryset
        found = found_member_ids(request) if store_ids else []
        return queryset.filter(Q(home_store_id__in=store_ids) | Q(pk__in=found))

    def get_search_results(self, request, queryset, search_term):
        """An exact card number or phone (any spelling) finds a member of any store; an external id, part of a
        name or the last 4 digits of a phone find a clerk's own stores' members only, and browsing shows only
        those."""
        term = search_term.strip()
        store_ids = clerk_store_ids(request)
        own = Q() if store_ids is None else Q(home_store_id__in=store_ids)
        if not term:
            return queryset.filter(own), False
        scoped = Q(external_id=term)
        if not term.isdigit():
            # Names have no digits; leaving this out of a digits search keeps every condition on an index.
            scoped |= Q(name__icontains=term)
        elif len(term) == LAST_DIGITS:
            scoped |= Q(phone_ends_with(term))
        condition = exact_key_condition(term) | (own & scoped)
        if request.GET.get("status__exact") == MemberStatus.MERGED:
            return queryset.filter(condition), False
        # A merged duplicate's card number, phone or external id finds her survivor, not her closed row. Her
        # survivors' ids are read first (not a subquery ORed into the search, which no index can answer).
        survivors = Member.objects.filter(condition, merged_into__isnull=False).values_list("merged_into_id", flat=True)
        condition |= Q(pk__in=list(survivors[:SURVIVORS_FOUND]))
        return queryset.filter(condition).exclude(status=MemberStatus.MERGED), False

    def changelist_view(self, request, extra_context=None):
        """A search by an exact key opens the member when it finds exactly one; a clerk's exact find of another
        store's member is remembered first, so the list (and then her page) may show her."""
        term = request.GET.get(SEARCH_VAR, "").strip() if request.method == "GET" else ""
        exact_ids = chain_wide_matches(term) if term else []
        store_ids = clerk_store_ids(request)
        if exact_ids and store_ids:
            others = Member.objects.filter(pk__in=exact_ids).exclude(home_store_id__in=store_ids)
            remember_found(request, list(others.values_list("pk", flat=True)))
        popup = IS_POPUP_VAR in request.GET or TO_FIELD_VAR in request.GET
        if term and not exact_ids and not popup:
            # Not a member's key: maybe another thing a clerk scans at the counter (a coupon code).
            for shortcut in member_search_shortcuts:
                url = shortcut(request, term)
                if url:
                    return HttpResponseRedirect(url)
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if not term or changelist is None or popup or changelist.result_count != 1:
            return response
        (member,) = changelist.result_list
        if member.pk in exact_ids or member.external_id == term:
            return HttpResponseRedirect(reverse("admin:members_member_change", args=[member.pk]))
        return response

    def has_change_permission(self, request, obj=None):
        """A clerk changes the profile of her stores' members; another store's member she found is read-only to
        her (she serves her: the counter's actions, not her profile)."""
        allowed = super().has_change_permission(request, obj)
        if not allowed or obj is None:
            return allowed
        store_ids = clerk_store_ids(request)
        return store_ids is None or obj.home_store_id in store_ids

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)  # a class of its own, made per call
        form_class.clerk_store_ids = clerk_store_ids(request)
        return form_class

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        store_ids = clerk_store_ids(request)
        if store_ids is not None and len(store_ids) == 1 and "home_store" not in initial:
            initial["home_store"] = next(iter(store_ids))
        return initial

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
            actor=admin_actor(request),
            phone=data.get("phone"),
            external_id=data.get("external_id"),
            name=data.get("name") or "",
            gender=data.get("gender") or "unknown",
            birthday=data.get("birthday"),
            email=data.get("email") or "",
            store=data.get("home_store"),
            channel=data.get("channel") or "store",
            consents=consents,
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

    def _status_action(self, request, queryset, service, done):
        refused = []
        for member in queryset[:500]:
            try:
                service(actor=admin_actor(request), member=member, reason="admin action", role=staff_role(request.user))
            except DomainError as error:  # anonymised or merged away: left as they are
                refused.append(f"{member.member_no} ({error.code})")
        self.message_user(request, done, messages.SUCCESS)
        if refused:
            self.message_user(
                request, _("Left unchanged: %(members)s") % {"members": ", ".join(refused)}, messages.WARNING
            )

    def has_status_change_permission(self, request):
        """Freezing and unfreezing are an admin's (as in the API): the actions are not offered to other roles, and
        the service refuses them anyway."""
        return may_change_status(staff_role(request.user)) and self.has_change_permission(request)

    @admin.action(description=_("Freeze the selected members"), permissions=["status_change"])
    def freeze_members(self, request, queryset):
        self._status_action(request, queryset, services.freeze_member, _("Frozen."))

    @admin.action(description=_("Unfreeze the selected members"), permissions=["status_change"])
    def unfreeze_members(self, request, queryset):
        self._status_action(request, queryset, services.unfreeze_member, _("Unfrozen."))

    # Merge a duplicate into this member (admins) ---------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view(self.merge_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_merge"
        return [re_path(r"^(?P<member_id>[0-9]{1,18})/merge/$", view, name=name), *super().get_urls()]

    def may_merge(self, request):
        """Admins only: a merge moves one person's points and identity onto another and cannot be undone, so a
        clerk asks an admin (who sees every store) rather than merging her own stores' members herself."""
        return staff_role(request.user) == ROLE_ADMIN and self.has_change_permission(request)

    def counter_actions(self, request, member):
        """(label, url) of the counter's work on this member: buttons at the top of her page."""
        if member.merged_into_id or not self.may_merge(request):
            return []
        return [(_("Merge a duplicate into this member"), reverse("admin:members_member_merge", args=[member.pk]))]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk:
            context = {**context, "glance": glance_rows(obj), "counter_actions": self.counter_actions(request, obj)}
        return super().render_change_form(request, context, add, change, form_url, obj)

    def merge_view(self, request, member_id):
        if not self.may_merge(request):
            raise PermissionDenied
        survivor = get_object_or_404(self.get_queryset(request), pk=member_id)
        form = MergeForm(request.POST or None, survivor=survivor)
        duplicate = None
        if request.method == "POST" and form.is_valid():
            duplicate = form.cleaned_data["duplicate"]
            if form.cleaned_data["confirmed"]:
                try:
                    outcome = services.merge_members(
                        actor=admin_actor(request),
                        survivor_id=survivor.pk,
                        duplicate_id=duplicate.pk,
                        reason=form.cleaned_data["reason"],
                    )
                except DomainError as error:
                    form.add_error(None, f"{error.code}: {error.detail}")
                    duplicate = None
                else:
                    self.message_user(
                        request,
                        self._merge_text(outcome, duplicate, survivor),
                        messages.WARNING if outcome.replayed else messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:members_member_change", args=[survivor.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Merge a duplicate into %(member)s") % {"member": survivor},
            "subtitle": None,
            "member": survivor,
            "form": form,
            "duplicate": duplicate,
            "comparison": list(zip(member_summary(survivor), member_summary(duplicate), strict=True))
            if duplicate
            else None,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/members/member/merge.html", context)

    def _merge_text(self, outcome, duplicate, survivor):
        moved = outcome.result["moved"]
        points = moved.get("points", {"available": 0, "pending": 0})
        tier = moved.get("tier")
        text = _(
            "Merged %(duplicate)s into %(survivor)s: %(available)s available and %(pending)s pending points, "
            "%(purchases)s purchases, tags %(tags)s%(tier)s."
        ) % {
            "duplicate": duplicate.member_no,
            "survivor": survivor.member_no,
            "available": points["available"],
            "pending": points["pending"],
            "purchases": moved["purchases"],
            "tags": ", ".join(moved["tags"]) or "—",
            "tier": _("; tier %(from)s → %(to)s") % {"from": tier["from"], "to": tier["to"]} if tier else "",
        }
        if outcome.replayed:
            return _("Already merged, nothing changed. %(result)s") % {"result": text}
        return text

    def has_delete_permission(self, request, obj=None):
        return False  # members are anonymised, never deleted: their ledger stays


@admin.register(StaffUser)
class StaffUserAdmin(UserAdmin):
    """Staff accounts. An admin who is no superuser sees the superuser flag and single permissions read-only, may give
    only the roles (groups) whose permissions she holds herself (loyalty.roles.grantable_groups: a forged post of
    another group is a form error), and changes only accounts whose powers are within her own
    (loyalty.roles.may_manage_staff): a forged post of `is_superuser=on` is ignored, and a superuser's account (its
    password too) is refused with 403. A change of an account's access (flags, roles, permissions) is audited as
    staff_access.changed."""

    fieldsets = [*UserAdmin.fieldsets, (_("Stores"), {"fields": ["stores"]})]
    filter_horizontal = [*UserAdmin.filter_horizontal, "stores"]
    list_display = ["username", "first_name", "last_name", "is_staff", "is_active"]
    list_filter = [*UserAdmin.list_filter, "stores"]
    actions = ["unlock_logins"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            readonly += [name for name in STAFF_POWER_FIELDS if name not in readonly]
        return readonly

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "groups":
            kwargs["queryset"] = grantable_groups(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or may_manage_staff(request.user, obj))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or may_manage_staff(request.user, obj))

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("delete_selected", None)  # a bulk delete checks no account; one by one, each is checked
        return actions

    def save_model(self, request, obj, form, change):
        if change:
            request.staff_access_before = staff_access(type(obj).objects.get(pk=obj.pk))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        before = getattr(request, "staff_access_before", None)
        if before is None:
            return
        after = staff_access(form.instance)
        if after != before:  # inside the change form's transaction: saved together or not at all
            changed = [name for name in after if after[name] != before[name]]
            record_audit(
                actor=admin_actor(request),
                action="staff_access.changed",
                target=form.instance,
                old={name: before[name] for name in changed},
                new={name: after[name] for name in changed},
            )

    @admin.action(description=_("Unlock the login of the selected staff users"), permissions=["change"])
    def unlock_logins(self, request, queryset):
        """Lift the lock that repeated wrong passwords put on a username (loyalty/login_guard.py); audited."""
        unlocked = [
            user.get_username()
            for user in queryset
            if unlock_staff_login(username=user.get_username(), actor=admin_actor(request))
        ]
        if unlocked:
            self.message_user(request, _("Unlocked: %(names)s") % {"names": ", ".join(unlocked)}, messages.SUCCESS)
        else:
            self.message_user(request, _("None of the selected staff users was locked."), messages.WARNING)


@admin.register(MemberMerge)
class MemberMergeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "duplicate", "survivor", "actor", "reason"]
    list_select_related = ["duplicate", "survivor"]
    search_fields = ["duplicate__member_no", "survivor__member_no", "actor"]
    fields = ["created_at", "survivor", "duplicate", "actor", "reason", "result"]
    show_full_result_count = False


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
    list_display = [
        "as_of",
        "member",
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "segment",
        "lifecycle",
    ]
    list_filter = ["as_of", "segment", "lifecycle"]
    list_select_related = ["member"]
    search_fields = ["member__member_no", "member__phone"]
    show_full_result_count = False
