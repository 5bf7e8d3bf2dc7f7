"""Admin screens for coupons (SPEC §10): templates for marketers (saved through campaigns.services.coupons, the
same functions the API calls; terms fixed once coupons were issued), the coupons themselves read-only, found by
their code, a member's card number or phone (a clerk sees her stores' members' coupons), the counter page where a
clerk checks, redeems and undoes a coupon typed or scanned, and the member page's coupons part."""

import uuid
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import re_path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _

from campaigns import coupon_lists
from campaigns.coupon_codes import MalformedCode, normalise
from campaigns.models_coupons import Coupon, CouponBatch, CouponStatus, CouponTemplate
from campaigns.services import coupons
from loyalty.access import ROLE_ADMIN, ROLE_MARKETER, staff_role
from loyalty.admin import ConfigurationAdmin, ConfigurationForm, ReadOnlyAdmin, admin_actor, clerk_store_ids
from loyalty.admin_fields import CodeChoiceListField, WordListField
from loyalty.clock import business_date
from loyalty.errors import DomainError, NotFoundError
from members.extensions import member_glance, member_search_shortcuts
from members.models import Member, Store
from points.admin import ORDER_NO_PATTERN, MemberScopedAdmin, domain_error_text, when
from points.serializers import MAX_AMOUNT
from points.services import IdempotencyConflict, request_fingerprint

COUNTER_TEMPLATE = "admin/campaigns/coupon/counter.html"
ISSUE_LIST_TEMPLATE = "admin/campaigns/coupontemplate/issue_list.html"


def store_choices():
    return [(store.code, f"{store.name} ({store.code})") for store in Store.objects.order_by("code")]


class CouponTemplateForm(ConfigurationForm):
    categories = WordListField(
        label=_("Categories"), help_text=_("Product categories, separated by commas; empty: every category.")
    )

    class Meta:
        model = CouponTemplate
        fields = list(coupons.TEMPLATE_FIELDS)
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "stores" in self.fields:
            field = CodeChoiceListField(
                choices=store_choices(), label=_("Stores"), help_text=_("None ticked: every store.")
            )
            field.keep_unknown(self.instance.stores if self.instance.pk else [])
            self.fields["stores"] = field


@admin.register(CouponTemplate)
class CouponTemplateAdmin(ConfigurationAdmin):
    form = CouponTemplateForm
    list_display = [
        "name",
        "kind",
        "amount_off",
        "percent_off",
        "threshold",
        "issued_count",
        "total_quantity",
        "is_active",
    ]
    list_filter = ["kind", "is_active", "issue_on"]
    search_fields = ["name"]
    readonly_fields = ["issued_count", "created_by", "created_at"]

    def create(self, request, values):
        return coupons.create_template(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return coupons.change_template(actor=admin_actor(request), template_id=obj.pk, changes=changes)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or obj.issued_count == 0)

    def delete_model(self, request, obj):
        coupons.delete_template(actor=admin_actor(request), template_id=obj.pk)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one by one, through the service
        return actions

    # Issue to an uploaded list ----------------------------------------------------------------------------------

    change_form_template = "admin/campaigns/coupontemplate/change_form.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.issue_list_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_issue_list"
        return [re_path(r"^(?P<object_id>\d+)/issue-list/$", view, name=name), *super().get_urls()]

    def may_issue_list(self, request):
        return staff_role(request.user) in (ROLE_ADMIN, ROLE_MARKETER) and self.has_change_permission(request)

    def render_change_form(self, request, context, *args, **kwargs):
        context["may_issue_list"] = self.may_issue_list(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def issue_list_view(self, request, object_id):
        """Upload a member list and start a batch to it (campaigns.services.coupons.start_batch, as the API; keyed
        by the form's hidden key, so a double submit starts one batch), then show the batch."""
        if not self.may_issue_list(request):
            raise PermissionDenied
        template = CouponTemplate.objects.filter(pk=object_id).first()
        if template is None:
            raise Http404
        refusal = None
        form = IssueListForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                batch = self._start_list_batch(request, template, form.cleaned_data)
            except (DomainError, IdempotencyConflict) as error:
                refusal = domain_error_text(error)
            else:
                self.message_user(request, _("The coupons are being issued to the list: batch %(id)s.") % batch)
                return redirect(reverse("admin:campaigns_couponbatch_change", args=[batch["id"]]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": template,
            "title": _("Issue “%(name)s” to a list of members") % {"name": template.name},
            "subtitle": None,
            "form": form,
            "refusal": refusal,
            "max_rows": f"{settings.COUPON_LIST_MAX_ROWS:,}",
            "max_bytes": f"{settings.COUPON_LIST_MAX_BYTES:,}",
        }
        return TemplateResponse(request, ISSUE_LIST_TEMPLATE, context)

    def _start_list_batch(self, request, template, data):
        member_list = coupon_lists.read_member_list(data["file"])
        outcome = coupons.start_batch(
            actor=admin_actor(request),
            scope=f"staff:{request.user.pk}:coupons",
            key=str(data["key"]),
            fingerprint=request_fingerprint({"template": template.pk, "file": member_list.digest}),
            template_id=template.pk,
            member_list=member_list,
        )
        return outcome.result


class IssueListForm(forms.Form):
    file = forms.FileField(label=_("member list (CSV)"))
    key = forms.UUIDField(widget=forms.HiddenInput, initial=uuid.uuid4)


@admin.register(CouponBatch)
class CouponBatchAdmin(ReadOnlyAdmin):
    """Bulk issues (to a tag, a segment or an uploaded list): their progress, and a list's rejects file."""

    list_display = ["id", "template", "target", "status", "issued", "rejected", "created_by", "created_at", "rejects"]
    list_filter = ["status"]
    list_select_related = ["template"]
    exclude = ["next_member_id", "last_member_id"]

    def has_view_permission(self, request, obj=None):
        return staff_role(request.user) in (ROLE_ADMIN, ROLE_MARKETER)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    @admin.display(description=_("target"))
    def target(self, batch):
        if batch.list_key:
            return _("list %(name)s (by %(key)s)") % {"name": batch.list_name, "key": batch.get_list_key_display()}
        return _("tag %(tag)s") % {"tag": batch.tag} if batch.tag else _("segment %(s)s") % {"s": batch.segment}

    @admin.display(description=_("rejects file"))
    def rejects(self, batch):
        if not batch.list_key:
            return "—"
        url = reverse("admin:campaigns_couponbatch_rejects", args=[batch.pk])
        return format_html('<a href="{}">{}</a>', url, _("%(count)s rejected lines") % {"count": batch.rejected})

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "rejects"]

    def get_urls(self):
        view = self.admin_site.admin_view(self.rejects_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_rejects"
        return [re_path(r"^(?P<object_id>\d+)/rejects/$", view, name=name), *super().get_urls()]

    def rejects_view(self, request, object_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = CouponBatch.objects.filter(pk=object_id).exclude(list_key="").first()
        if batch is None:
            raise Http404
        return coupon_lists.rejects_response(batch)


# --- The counter page ---------------------------------------------------------------------------------------------


class CounterForm(forms.Form):
    """A coupon typed or scanned at the till and the order it is for. The hidden `key` is made when the form is
    shown, so "Redeem" pressed twice (a double click, a reload) redeems once: the second answers the first."""

    code = forms.CharField(label=_("coupon code"), max_length=40, widget=forms.TextInput(attrs={"autofocus": True}))
    amount = forms.DecimalField(
        label=_("order amount"), max_digits=12, decimal_places=2, min_value=Decimal("0.01"), max_value=MAX_AMOUNT
    )
    order_no = forms.RegexField(
        ORDER_NO_PATTERN,
        label=_("order number"),
        max_length=64,
        required=False,
        error_messages={"invalid": _("Letters, digits and _ . / : - only.")},
        help_text=_("Needed to redeem, not to check."),
    )
    store = forms.ModelChoiceField(queryset=Store.objects.none(), label=_("store"))
    categories = forms.CharField(
        label=_("categories"),
        max_length=500,
        required=False,
        help_text=_("The order's product categories, separated by commas; empty: not checked."),
    )
    points_used = forms.IntegerField(
        label=_("points used as cash"),
        min_value=0,
        required=False,
        help_text=_("Points this order uses as cash; a coupon not stackable with points is refused then."),
    )
    member = forms.IntegerField(widget=forms.HiddenInput, required=False)
    key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, store_ids, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("key", uuid.uuid4())
        stores = Store.objects.filter(is_active=True).order_by("code")
        field = self.fields["store"]
        if store_ids is None:
            field.queryset, field.required = stores, False
        else:
            field.queryset = stores.filter(pk__in=store_ids)
            only = list(field.queryset[:2])
            if len(only) == 1:
                field.initial = only[0].pk

    def clean_code(self):
        """A mistyped code (wrong length, a character no code has, a wrong check character) is refused here,
        before any lookup."""
        try:
            return normalise(self.cleaned_data["code"])
        except MalformedCode as error:
            raise forms.ValidationError(
                _("This is not a valid coupon code (%(why)s) Check it and type it again."), params={"why": error}
            ) from None

    def clean_categories(self):
        text = self.cleaned_data["categories"].strip()
        return [part.strip() for part in text.split(",") if part.strip()] or None

    def new_key(self):
        """The next submit is a new redemption: a fresh key (after a redemption, or a key used for other values)."""
        data = self.data.copy()
        data["key"] = str(uuid.uuid4())
        self.data = data


def refusal_text(coupon, reason):
    """Why a coupon cannot be used, in the clerk's words."""
    template = coupon.template
    texts = {
        coupons.REASON_VOID: _("This coupon was cancelled (void)."),
        coupons.REASON_USED: _("This coupon was already used on %(used_at)s (order %(order_no)s)."),
        coupons.REASON_EXPIRED: _("This coupon expired: its last day was %(valid_until)s."),
        coupons.REASON_NOT_YET_VALID: _("This coupon is not valid yet: from %(valid_from)s."),
        coupons.REASON_NOT_OWNER: _("This coupon belongs to another member."),
        coupons.REASON_WRONG_STORE: _("This coupon cannot be used at this store (only at %(stores)s)."),
        coupons.REASON_WRONG_CATEGORY: _("This coupon is for %(categories)s only: none is in this order."),
        coupons.REASON_BELOW_THRESHOLD: _("The order is below this coupon's minimum of %(threshold)s."),
        coupons.REASON_NOT_STACKABLE: _("This coupon cannot be used with points as cash on the same order."),
    }
    return texts[reason] % {
        "used_at": when(coupon.used_at),
        "order_no": coupon.order_no or "—",
        "valid_until": coupon.valid_until,
        "valid_from": coupon.valid_from,
        "stores": ", ".join(template.stores or ()),
        "categories": ", ".join(template.categories or ()),
        "threshold": coupons.money(template.threshold),
    }


def coupon_label(coupon):
    return _("%(code)s, “%(name)s” of %(member)s") % {
        "code": coupon.code,
        "name": coupon.template.name,
        "member": coupon.member,
    }


@admin.register(Coupon)
class CouponAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    """Coupons are money at the counter: read-only here (issue, redeem and undo go through the services); the
    counter page checks, redeems and undoes one."""

    change_list_template = "admin/campaigns/coupon/change_list.html"

    list_display = ["code", "member", "template", "status", "valid_from", "valid_until", "used_at", "order_no", "store"]
    list_filter = ["status", "source"]
    list_select_related = ["member", "template", "store"]
    search_help_text = _("A coupon code, or a member's card number or phone.")
    search_fields = ["code"]  # shows the box; get_search_results decides

    def get_search_results(self, request, queryset, search_term):
        try:
            return queryset.filter(code=normalise(search_term)), False
        except MalformedCode:
            return super().get_search_results(request, queryset, search_term)

    # The counter page -------------------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view(self.counter_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_counter"
        return [re_path(r"^counter/$", view, name=name), *super().get_urls()]

    def may_use_counter(self, request):
        """Any staff role that may see coupons: clerks, store managers, marketers, admins."""
        return staff_role(request.user) is not None and self.has_view_permission(request)

    def _member_for_counter(self, request, member_id):
        """The member the page serves (?member=<id>, from her page): one the user may open, else 404."""
        if member_id in (None, ""):
            return None
        queryset = self.admin_site.get_model_admin(Member).get_queryset(request)  # a clerk's: as her member list
        member = queryset.filter(pk=member_id).first() if str(member_id).isdigit() else None
        if member is None:
            raise Http404
        return member

    def counter_view(self, request):
        """Check a coupon (writes nothing), redeem it (campaigns.services.coupons.redeem_coupon, as the API, keyed
        by the form's hidden key), or undo the use just made (within COUPON_UNDO_MINUTES)."""
        if not self.may_use_counter(request):
            raise PermissionDenied
        store_ids = clerk_store_ids(request)
        outcome = {}
        if request.method == "POST":
            member = self._member_for_counter(request, request.POST.get("member"))
            if request.POST.get("action") == "undo":
                outcome = self._undo(request, request.POST.get("undo_code", ""), store_ids)
                form = CounterForm(initial={"member": member and member.pk}, store_ids=store_ids)
            elif (form := CounterForm(request.POST, store_ids=store_ids)).is_valid():
                if request.POST.get("action") == "redeem":
                    outcome = self._redeem(request, form, member)
                else:
                    outcome = self._check(form, member)
        else:
            member = self._member_for_counter(request, request.GET.get("member"))
            form = CounterForm(
                initial={"member": member and member.pk, "code": request.GET.get("code", "")}, store_ids=store_ids
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Coupon counter"),
            "subtitle": None,
            "member": member,
            "form": form,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
            "undo_minutes": settings.COUPON_UNDO_MINUTES,
            **outcome,
        }
        return TemplateResponse(request, COUNTER_TEMPLATE, context)

    def _check(self, form, member):
        data = form.cleaned_data
        try:
            answer = coupons.check_coupon(
                code=data["code"],
                store=data["store"],
                amount=data["amount"],
                member_id=member and member.pk,
                categories=data["categories"],
                points_used=data["points_used"] or 0,
            )
        except NotFoundError:
            return {"refusal": _("No coupon with this code.")}
        coupon = Coupon.objects.select_related("template", "member").get(code=data["code"])
        if answer["valid"]:
            text = _("Valid: %(coupon)s. Discount %(discount)s on %(amount)s; valid until %(valid_until)s.") % {
                "coupon": coupon_label(coupon),
                "discount": answer["discount"],
                "amount": coupons.money(data["amount"]),
                "valid_until": answer["valid_until"],
            }
            return {"verdict": text}
        return {"refusal": _("Not valid: %(why)s") % {"why": refusal_text(coupon, answer["reason"])}}

    def _redeem(self, request, form, member):
        data = form.cleaned_data
        if not data["order_no"]:
            form.add_error("order_no", _("The order number is needed to redeem."))
            return {}
        store = data["store"]
        fingerprint = request_fingerprint(
            {
                "path": "admin:coupon-counter",
                "code": data["code"],
                "order_no": data["order_no"],
                "amount": f"{data['amount']:.2f}",
                "store": store and store.pk,
                "member": member and member.pk,
                "categories": data["categories"],
                "points_used": data["points_used"] or 0,
            }
        )
        try:
            outcome = coupons.redeem_coupon(
                actor=admin_actor(request),
                scope=f"staff:{request.user.pk}:coupons",
                key=str(data["key"]),
                fingerprint=fingerprint,
                code=data["code"],
                order_no=data["order_no"],
                store=store,
                amount=data["amount"],
                source=f"store:{store.code}" if store else "staff",
                member_id=member and member.pk,
                categories=data["categories"],
                points_used=data["points_used"] or 0,
            )
        except NotFoundError:
            return {"refusal": _("No coupon with this code.")}
        except (coupons.CouponUsed, coupons.CouponExpired, coupons.CouponNotApplicable) as error:
            coupon = Coupon.objects.select_related("template").get(code=data["code"])
            reason = {"coupon_used": coupons.REASON_USED, "coupon_expired": coupons.REASON_EXPIRED}.get(
                error.code, error.extra.get("reason")
            )
            return {"refusal": _("Not redeemed: %(why)s") % {"why": refusal_text(coupon, reason)}}
        except IdempotencyConflict:
            form.new_key()
            return {"refusal": _("This form was already used for another order: press Redeem again to redeem.")}
        except DomainError as error:
            return {"refusal": domain_error_text(error)}
        result = outcome.result
        coupon = Coupon.objects.select_related("template", "member").get(code=result["code"])
        text = _("Redeemed %(coupon)s on order %(order_no)s: discount %(discount)s on %(amount)s.") % {
            "coupon": coupon_label(coupon),
            "order_no": result["order_no"],
            "discount": result["discount"],
            "amount": result["amount"],
        }
        if outcome.replayed:
            text = _("This form was already submitted, nothing changed. %(result)s") % {"result": text}
        form.new_key()
        return {"verdict": text, "undo_code": self._undoable(coupon)}

    def _undoable(self, coupon):
        """The code the page offers to undo: a use still within the undo window."""
        window = timedelta(minutes=settings.COUPON_UNDO_MINUTES)
        if coupon.status == CouponStatus.USED and timezone.now() - coupon.used_at <= window:
            return coupon.code
        return None

    def _undo(self, request, code, store_ids):
        try:
            coupons.undo_redemption(actor=admin_actor(request), code=normalise(code), store_ids=store_ids)
        except MalformedCode:
            return {"refusal": _("No coupon with this code.")}
        except NotFoundError:
            return {"refusal": _("No coupon with this code used at your stores.")}
        except coupons.CouponNotUsed:
            return {"refusal": _("Coupon %(code)s is not used: there is nothing to undo.") % {"code": code}}
        except coupons.UndoWindowPassed:
            return {
                "refusal": _(
                    "The %(minutes)s minutes to undo coupon %(code)s have passed: refund the order to return it."
                )
                % {"minutes": settings.COUPON_UNDO_MINUTES, "code": code}
            }
        return {"verdict": _("Undone: coupon %(code)s is unused again.") % {"code": code}}


# --- The member page's part ----------------------------------------------------------------------------------------


def coupons_glance(member):
    """The member page's part (members.extensions.member_glance): how many coupons she can use now and the first
    last day among them (one aggregate on her coupons), with her coupons' list and the counter page for her."""
    today = business_date()
    usable = Coupon.objects.filter(member_id=member.pk, status=CouponStatus.UNUSED, valid_until__gte=today)
    figures = usable.aggregate(count=Count("id"), next_until=Min("valid_until"))
    if figures["count"]:
        text = _("%(count)s unused (next expires %(date)s)") % {
            "count": figures["count"],
            "date": figures["next_until"].isoformat(),
        }
    else:
        text = _("none unused")
    listing = f"{reverse('admin:campaigns_coupon_changelist')}?{urlencode({'member__id__exact': member.pk})}"
    counter = f"{reverse('admin:campaigns_coupon_counter')}?{urlencode({'member': member.pk})}"
    return [
        (
            _("coupons"),
            format_html(
                '{} <a href="{}">{}</a> <a href="{}">{}</a>',
                text,
                listing,
                _("Her coupons"),
                counter,
                _("Check or redeem a coupon"),
            ),
        )
    ]


member_glance.register(coupons_glance, key="coupons")


def coupon_search_shortcut(request, term):
    """The admin member search with a coupon code (typed or scanned, members.extensions.member_search_shortcuts):
    the coupon counter with the code, and with its owner when the user may open her (a clerk: as her member
    list). None when the term is no coupon's code or the user may not use the counter."""
    try:
        code = normalise(term)
    except MalformedCode:
        return None
    owner_id = Coupon.objects.filter(code=code).values_list("member_id", flat=True).first()
    coupon_admin = admin.site.get_model_admin(Coupon)
    if owner_id is None or not coupon_admin.may_use_counter(request):
        return None
    query = {"code": code}
    if admin.site.get_model_admin(Member).get_queryset(request).filter(pk=owner_id).exists():
        query["member"] = owner_id
    return f"{reverse('admin:campaigns_coupon_counter')}?{urlencode(query)}"


member_search_shortcuts.register(coupon_search_shortcut)
