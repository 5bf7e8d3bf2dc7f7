"""Admin screens for points: the member page at the counter (balances, ledger, redemptions, her household and the
adjustments waiting for a manager, and actions to record a purchase, redeem a reward, adjust points or ask for an
adjustment's approval, decide on one, link her household and transfer points within it), read-only ledger,
redemption and account lists, the list of adjustment requests with approve / reject actions, and the marketer's
rewards, earning rules and policies.

Every points write goes through points.services, the same functions the API calls; clerks see and act for the
members of their own stores only. The services open durable transactions, so no view here opens its own.
"""

import contextlib
import re
import uuid
from decimal import Decimal
from functools import partial

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import re_path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext, pgettext_lazy

from loyalty.access import ROLE_ADMIN, staff_role
from loyalty.admin import ConfigurationAdmin, ConfigurationForm, ReadOnlyAdmin, admin_actor, clerk_store_ids
from loyalty.admin_fields import CodeChoiceListField, WordListField
from loyalty.errors import DomainError
from loyalty.registry import ExtensionPoint
from loyalty.stored_reasons import register as register_reason
from loyalty.stored_reasons import shown_reason
from members import services as member_services
from members.admin import MemberAdmin
from members.extensions import member_glance
from members.models import Member, Purchase, PurchaseChannel, Store
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from points import selectors, services
from points.models import (
    AdjustmentRequest,
    AdjustmentRequestStatus,
    EarningRule,
    LedgerEntry,
    LotStatus,
    PointsAccount,
    PointsPolicy,
    Redemption,
    RedemptionStatus,
    Reward,
    RuleChannel,
)
from points.serializers import MAX_AMOUNT, MAX_POINTS
from points.services import configuration
from points.services.approvals import staff_actor

LEDGER_ROWS_SHOWN = 50
REDEMPTIONS_SHOWN = 50
ACTION_ROWS_LIMIT = 500  # rows one admin action may touch, each in its own transaction
ORDER_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$"  # as the API accepts it
MEMBER_ID_PATTERN = r"(?P<member_id>[0-9]{1,18})"  # ids are bigints: longer digit strings never reach the DB
REQUEST_ID_PATTERN = r"(?P<request_id>[0-9]{1,18})"
PENDING_REQUESTS_SHOWN = 20
ACTION_TEMPLATE = "admin/points/member_points_action.html"


# The names of the figures a refusal carries (DomainError.extra: the API's error fields), as a clerk reads them
# next to the detail; a name not listed here is shown as it is.
ERROR_FIGURES = {
    "available": pgettext_lazy("error figure", "available"),
    "required": pgettext_lazy("error figure", "required"),
    "redeemed": pgettext_lazy("error figure", "redeemed"),
    "limit": pgettext_lazy("error figure", "limit"),
    "per": pgettext_lazy("error figure", "per"),
    "daily_total": pgettext_lazy("error figure", "daily_total"),
    "adjusted_today": pgettext_lazy("error figure", "adjusted_today"),
    "left": pgettext_lazy("error figure", "left"),
    "daily_limit": pgettext_lazy("error figure", "daily_limit"),
    "spent_today": pgettext_lazy("error figure", "spent_today"),
    "max_points": pgettext_lazy("error figure", "max_points"),
    "refundable": pgettext_lazy("error figure", "refundable"),
    "unspent": pgettext_lazy("error figure", "unspent"),
    "member": pgettext_lazy("error figure", "member"),
    "member_no": pgettext_lazy("error figure", "member_no"),
    "merged_into": pgettext_lazy("error figure", "merged_into"),
    "tier": pgettext_lazy("error figure", "tier"),
    "eligible": pgettext_lazy("error figure", "eligible"),
    "reason": pgettext_lazy("error figure", "reason"),
    "used_at": pgettext_lazy("error figure", "used_at"),
    "valid_until": pgettext_lazy("error figure", "valid_until"),
    "attempts_left": pgettext_lazy("error figure", "attempts_left"),
}


def domain_error_text(error):
    """A refused service call as a clerk reads it: the machine code (what support asks for), the detail, and
    the numbers that explain it (available / required, the role's limit ...), named in the admin's language."""
    extra = {**error.extra, **getattr(error, "errors", {})}
    details = pgettext("error figures", ", ").join(
        pgettext("error figure", "%(name)s: %(value)s") % {"name": ERROR_FIGURES.get(name, name), "value": value}
        for name, value in extra.items()
    )
    text = f"{error.code}: {error.detail}"
    return pgettext("error figures", "%(text)s (%(details)s)") % {"text": text, "details": details} if details else text


def when(value):
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else "—"


def members_matching(term):
    """Ids of the members a search term names exactly: card number or phone (any format). Exact lookups only, so
    a search on a ledger of millions of rows goes through the member index, never a scan."""
    condition = Q(member_no=term)
    with contextlib.suppress(InvalidPhoneNumber):
        condition |= Q(phone=normalise_phone(term))
    return list(Member.objects.filter(condition).values_list("pk", flat=True)[:10])


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows: an exact COUNT(*) over a ledger of hundreds of millions of rows takes seconds on
    every page. Beyond the cap the list says "cap + 1" and pages stop there; a search narrows it."""

    cap = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.cap + 1].count()


class MemberScopedAdmin(admin.ModelAdmin):
    """Lists of rows that belong to a member: a clerk sees those of her stores' members; the search box takes a
    card number or phone, or else an exact value of `search_other_field`."""

    search_other_field = None
    show_full_result_count = False  # no COUNT(*) over the whole table on every search
    paginator = CappedCountPaginator
    list_select_related = ["member"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        store_ids = clerk_store_ids(request)
        return queryset if store_ids is None else queryset.filter(member__home_store_id__in=store_ids)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        member_ids = members_matching(term)
        if member_ids or not self.search_other_field:
            return queryset.filter(member_id__in=member_ids), False
        return queryset.filter(**{self.search_other_field: term}), False


# --- The member page at the counter ------------------------------------------------------------------------------


# The reasons the points services write on ledger entries, as the admin shows them (loyalty/stored_reasons.py).
for _channel in RuleChannel:
    register_reason(re.escape(_channel.value), _channel.label)
for _pattern, _text in (
    (r"points used as cash", _("points used as cash")),
    (r"points used as cash returned on refund", _("points used as cash returned on refund")),
    (r"refund", _("refund")),
    (r"returned points whose lots had expired", _("returned points whose lots had expired")),
    (r"pending period ended: these points can now be used", _("pending period ended: these points can now be used")),
    (r"points expired on (?P<date>\S+)", _("points expired on %(date)s")),
    (r"merged into member (?P<member>\S+)", _("merged into member %(member)s")),
    (r"merged from member (?P<member>\S+)", _("merged from member %(member)s")),
    (r"redemption (?P<id>\d+) cancelled", _("redemption %(id)s cancelled")),
    (r"redeemed (?P<reward>.+)", _("redeemed %(reward)s")),
    (r"transfer to (?P<member>\d+)(?P<note>: .*)?", _("transfer to %(member)s%(note)s")),
    (r"transfer from (?P<member>\d+)(?P<note>: .*)?", _("transfer from %(member)s%(note)s")),
):
    register_reason(_pattern, _text)


class KeyedForm(forms.Form):
    """A form whose submission is one idempotent write: the key is made when the form is shown, so submitting
    it twice (a double click, a reload) replays the first result instead of writing again."""

    key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, request, member, **kwargs):
        self.request, self.member = request, member
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("key", uuid.uuid4())

    def renew_key(self):
        """After an idempotency conflict (the key was used for other values), give the next submit a new key."""
        data = self.data.copy()
        data[self.add_prefix("key")] = str(uuid.uuid4())
        self.data = data


class RecordPurchaseForm(forms.Form):
    order_no = forms.RegexField(
        ORDER_NO_PATTERN,
        label=_("order number"),
        max_length=64,
        error_messages={"invalid": _("Letters, digits and _ . / : - only.")},
    )
    amount = forms.DecimalField(
        label=_("amount paid"), max_digits=12, decimal_places=2, min_value=Decimal("0.01"), max_value=MAX_AMOUNT
    )
    store = forms.ModelChoiceField(queryset=Store.objects.none(), label=_("store"))
    channel = forms.ChoiceField(label=_("channel"), choices=PurchaseChannel.choices, initial=PurchaseChannel.OFFLINE)
    points_used = forms.IntegerField(
        label=_("points used as cash"), min_value=0, max_value=MAX_POINTS, required=False, initial=0
    )

    def __init__(self, *args, request, member, **kwargs):
        self.request, self.member = request, member
        super().__init__(*args, **kwargs)
        store_ids = clerk_store_ids(request)
        stores = Store.objects.filter(is_active=True)
        field = self.fields["store"]
        if store_ids is None:
            field.queryset, field.required = stores, False
            field.help_text = _("Empty: an order keyed in by head office, numbered apart from the stores' orders.")
        else:
            field.queryset = stores.filter(pk__in=store_ids)
            only = list(field.queryset[:2])
            if len(only) == 1:
                field.initial = only[0].pk
            elif member.home_store_id in store_ids:
                field.initial = member.home_store_id


def rewards_available_now():
    """Rewards that can be redeemed now: active, within their dates, in stock (the API's ?available=true)."""
    now = timezone.now()
    return Reward.objects.filter(
        Q(is_active=True)
        & (Q(valid_from__isnull=True) | Q(valid_from__lte=now))
        & (Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        & (Q(stock__isnull=True) | Q(stock__gt=0))
    ).order_by("cost_points", "id")


class RedeemRewardForm(KeyedForm):
    """The rewards that can be redeemed now (the tier rule, her balance and the per-member limit are the service's
    to check, and its refusal is shown on the form). `notice` says why she can redeem nothing, when so: no reward
    is available, or she cannot afford the cheapest. A clerk with several stores says at which one she redeems."""

    reward = forms.ModelChoiceField(queryset=Reward.objects.none(), label=_("reward"))
    quantity = forms.IntegerField(label=_("quantity"), min_value=1, max_value=1000, initial=1)

    field_order = ["reward", "quantity", "store"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["reward"]
        field.queryset = rewards_available_now()
        field.label_from_instance = lambda reward: (
            _("%(name)s — %(cost)s points") % {"name": reward.name, "cost": reward.cost_points}
            + ("" if reward.stock is None else _(", %(stock)s in stock") % {"stock": reward.stock})
        )
        cheapest = field.queryset.first()
        available = points_summary_for(self.member)["available"]
        if cheapest is None:
            self.notice = _(
                "No reward can be redeemed now: none is active, within its dates and in stock (marketers add "
                "rewards under Points › Rewards)."
            )
        elif cheapest.cost_points > available:
            self.notice = _(
                "She cannot afford any reward: %(available)s points available, and the cheapest reward "
                "(%(reward)s) costs %(cost)s."
            ) % {"available": available, "reward": cheapest.name, "cost": cheapest.cost_points}
        else:
            self.notice = None
        store_ids = clerk_store_ids(self.request)
        if store_ids is not None and len(store_ids) > 1:
            self.fields["store"] = forms.ModelChoiceField(
                queryset=Store.objects.filter(is_active=True, pk__in=store_ids),
                label=_("store"),
                initial=self.member.home_store_id if self.member.home_store_id in store_ids else None,
            )


class AdjustPointsForm(KeyedForm):
    points = forms.IntegerField(
        label=_("points"),
        min_value=-MAX_POINTS,
        max_value=MAX_POINTS,
        help_text=_("Positive to add, negative to take away."),
    )
    reason = forms.CharField(label=_("reason"), max_length=200, widget=forms.TextInput(attrs={"size": 60}))
    request_approval = forms.BooleanField(
        label=_("ask a manager to approve it"),
        required=False,
        help_text=_(
            "For adjustments over your limit per entry or your daily total: nothing changes until another manager "
            "approves it."
        ),
    )

    field_order = ["points", "reason", "request_approval"]

    def clean_points(self):
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError(_("An adjustment is not zero."))
        return points


class DecideAdjustmentForm(forms.Form):
    """Approve or reject one adjustment request. No key: a decision is made once; a second is already_decided."""

    decision = forms.ChoiceField(
        label=_("decision"),
        widget=forms.RadioSelect,
        choices=[("approve", _("approve: adjust the points now")), ("reject", _("reject"))],
    )
    note = forms.CharField(label=_("note"), max_length=200, required=False, widget=forms.TextInput(attrs={"size": 60}))

    def __init__(self, *args, request, member, **kwargs):
        self.request, self.member = request, member
        super().__init__(*args, **kwargs)


class HouseholdForm(forms.Form):
    """Link the member with another (found by exact card number or phone, as at the counter), or take her out."""

    link_with = forms.CharField(
        label=_("link with member"),
        max_length=40,
        required=False,
        help_text=_("Card number or phone of a member of the same family."),
    )
    leave = forms.BooleanField(label=_("take her out of her household"), required=False)

    def __init__(self, *args, request, member, **kwargs):
        self.request, self.member = request, member
        super().__init__(*args, **kwargs)

    def clean(self):
        cleaned = super().clean()
        term, leave = (cleaned.get("link_with") or "").strip(), cleaned.get("leave")
        if bool(term) == bool(leave):
            raise forms.ValidationError(_("Either give a member to link with, or tick “take her out”."))
        if term:
            found = members_matching(term)
            if len(found) != 1:
                self.add_error("link_with", _("No member has exactly this card number or phone."))
            else:
                cleaned["other"] = Member.objects.get(pk=found[0])
        return cleaned


class TransferPointsForm(KeyedForm):
    to = forms.ModelChoiceField(queryset=Member.objects.none(), label=_("to member"))
    points = forms.IntegerField(label=_("points"), min_value=1, max_value=MAX_POINTS)
    reason = forms.CharField(
        label=_("reason"), max_length=150, required=False, widget=forms.TextInput(attrs={"size": 60})
    )

    field_order = ["to", "points", "reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["to"].queryset = selectors.household_members(self.member.pk)


REFUNDABLE_PURCHASES_SHOWN = 50


def refund_number():
    """A refund number for a refund keyed in at the counter: made when the form is shown, so posting it twice
    replays the first refund (refund_no is the refund's idempotency key) instead of refunding again."""
    return f"R-{timezone.localtime():%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"


def plain_quantity(quantity):
    """2.000 as 2 and 1.500 as 1.5 (quantities are stored with 3 decimals), as a clerk reads them."""
    if quantity == quantity.to_integral_value():
        return quantity.quantize(Decimal(1))
    return quantity.normalize()


class RefundForm(forms.Form):
    """Refund part or all of one purchase (points.services.record_refund, as the API's refunds endpoint): an
    amount, or the quantities of its lines (their value is the amount unless one is given), or nothing for the
    whole remaining amount."""

    refund_no = forms.RegexField(
        ORDER_NO_PATTERN,
        label=_("refund number"),
        max_length=64,
        error_messages={"invalid": _("Letters, digits and _ . / : - only.")},
        help_text=_("The till's refund number, or the one made here. The same number again refunds nothing more."),
    )
    amount = forms.DecimalField(
        label=_("amount refunded"),
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=MAX_AMOUNT,
        required=False,
    )

    def __init__(self, *args, request, member, purchase, **kwargs):
        self.request, self.member, self.purchase = request, member, purchase
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("refund_no", refund_number())
        self.fields["amount"].help_text = _(
            "Empty: the value of the lines chosen below, or else the whole remaining %(refundable)s."
        ) % {"refundable": f"{purchase.refundable_amount:.2f}"}
        self.line_fields = {}
        remaining = {}
        for line in purchase.lines.order_by("id"):
            sku = remaining.setdefault(line.sku, {"quantity": Decimal(0), "price": line.unit_price})
            sku["quantity"] += line.quantity - line.refunded_quantity
        remaining = {sku: {**line, "quantity": plain_quantity(line["quantity"])} for sku, line in remaining.items()}
        for index, (sku, line) in enumerate(remaining.items()):
            if line["quantity"] <= 0:
                continue
            name = f"line_{index}"
            self.fields[name] = forms.DecimalField(
                label=_("%(sku)s (%(price)s each): quantity refunded") % {"sku": sku, "price": line["price"]},
                max_digits=12,
                decimal_places=3,
                min_value=0,
                max_value=line["quantity"],
                required=False,
                help_text=_("At most %(quantity)s.") % {"quantity": line["quantity"]},
            )
            self.line_fields[name] = (sku, line["price"])

    def clean(self):
        cleaned = super().clean()
        lines = [
            {"sku": sku, "quantity": cleaned[name], "value": cleaned[name] * price}
            for name, (sku, price) in self.line_fields.items()
            if cleaned.get(name)
        ]
        cleaned["lines"] = [{"sku": line["sku"], "quantity": line["quantity"]} for line in lines]
        if cleaned.get("amount") is None and not self.errors:
            if lines:
                cleaned["amount"] = sum(line["value"] for line in lines).quantize(Decimal("0.01"))
            else:
                cleaned["amount"] = self.purchase.refundable_amount
        if cleaned.get("amount") is not None and cleaned["amount"] <= 0 and not self.errors:
            raise forms.ValidationError(
                _("Order %(order)s is already refunded in full.") % {"order": self.purchase.order_no}
            )
        return cleaned


class CancelRedemptionForm(forms.Form):
    """Cancel one redemption (points.services.cancel_redemption, as the redemption list's action): a confirmation."""

    def __init__(self, *args, request, member, redemption, **kwargs):
        self.request, self.member, self.redemption = request, member, redemption
        super().__init__(*args, **kwargs)
        if redemption.status == RedemptionStatus.CANCELLED:
            self.notice = _("This redemption was already cancelled on %(date)s.") % {
                "date": when(redemption.cancelled_at)
            }
        else:
            self.notice = None


# refund_note(purchase) -> text or None: what else the order involved that a clerk refunds apart (stored value
# paid on it), shown with the refund's result; higher apps register theirs in their admin module.
refund_notes = ExtensionPoint("refund_notes", "note(purchase) -> text or None after an admin refund")


def points_summary_for(member):
    """selectors.points_summary (the API's figures), once per member instance on a page."""
    if not hasattr(member, "_points_summary"):
        member._points_summary = selectors.points_summary(member.pk)
    return member._points_summary


def points_glance(member):
    """The member page's summary: available, pending and soon-expiring points."""
    summary = points_summary_for(member)
    expiring = ", ".join(_("%(points)s on %(date)s") % row for row in summary["expiring"]) or "—"
    return [
        (_("available points"), summary["available"]),
        (_("pending points"), summary["pending"]),
        (_("expiring next"), expiring),
    ]


member_glance.register(points_glance, key="points")


# The breakdown's sources a clerk reads in the admin's messages and the purchase preview; tier:<code> lines are
# named by the tier's name and campaign:<id> lines by the campaign's (breakdown_source).
BREAKDOWN_SOURCES = {
    "base": pgettext_lazy("points breakdown", "base"),
    "daily_cap": pgettext_lazy("points breakdown", "daily_cap"),
    "streak": pgettext_lazy("points breakdown", "streak"),
}


def breakdown_source(line):
    """A breakdown line's source as the admin shows it: base, streak, daily cap in words; `tier:<code>` (and
    `tier:<code>:birthday`) by the tier's name; `campaign:<id>` by the campaign's name the line carries."""
    source = line["source"]
    if source in BREAKDOWN_SOURCES:
        return str(BREAKDOWN_SOURCES[source])
    kind, _colon, rest = source.partition(":")
    if kind == "campaign" and line.get("campaign_name"):
        return pgettext("points breakdown", "campaign %(name)s") % {"name": line["campaign_name"]}
    if kind == "tier" and rest:
        code, _colon, occasion = rest.partition(":")
        try:  # tiers is a higher app (it adds these lines through points.hooks): its model is looked up, not imported
            tier = apps.get_model("tiers", "Tier").objects.filter(code=code).values_list("name", flat=True).first()
        except LookupError:
            tier = None
        names = {"tier": tier or code}
        if occasion == "birthday":
            return pgettext("points breakdown", "tier %(tier)s, birthday") % names
        return pgettext("points breakdown", "tier %(tier)s") % names
    return source


def breakdown_text(breakdown):
    return " + ".join(f"{breakdown_source(line)} {line['points']}" for line in breakdown or ())


class PointsMemberAdmin(MemberAdmin):
    """The member page with her points: balances, what is pending and expiring, the newest ledger entries and
    her redemptions, and the counter's three points actions (each through the service the API uses)."""

    points_fields = [
        "points_available",
        "points_pending",
        "points_expiring",
        "lifetime_earned",
        "lifetime_spent",
        "lifetime_expired",
    ]
    readonly_fields = [
        *MemberAdmin.readonly_fields,
        *points_fields,
        "ledger_table",
        "redemptions_table",
        "household_table",
        "pending_adjustments_table",
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [
            *fieldsets,
            (_("Points"), {"fields": self.points_fields}),
            (_("Adjustments waiting for approval"), {"fields": ["pending_adjustments_table"]}),
            (_("Ledger (newest %(count)s entries)") % {"count": LEDGER_ROWS_SHOWN}, {"fields": ["ledger_table"]}),
            (_("Redemptions"), {"fields": ["redemptions_table"]}),
            (_("Household"), {"fields": ["household_table"]}),
        ]

    # Balances -----------------------------------------------------------------------------------------------

    def _summary(self, member):
        return points_summary_for(member)

    @admin.display(description=_("available points"))
    def points_available(self, member):
        return self._summary(member)["available"]

    @admin.display(description=_("pending points"))
    def points_pending(self, member):
        return self._summary(member)["pending"]

    @admin.display(description=_("expiring next"))
    def points_expiring(self, member):
        expiring = self._summary(member)["expiring"]
        if not expiring:
            return "—"
        return ", ".join(_("%(points)s on %(date)s") % row for row in expiring)

    @admin.display(description=_("lifetime earned"))
    def lifetime_earned(self, member):
        return self._summary(member)["lifetime_earned"]

    @admin.display(description=_("lifetime spent"))
    def lifetime_spent(self, member):
        return self._summary(member)["lifetime_spent"]

    @admin.display(description=_("lifetime expired"))
    def lifetime_expired(self, member):
        return self._summary(member)["lifetime_expired"]

    # Tables -------------------------------------------------------------------------------------------------

    @admin.display(description=_("ledger"))
    def ledger_table(self, member):
        entries = selectors.ledger_entries(member.pk).order_by("-id")[:LEDGER_ROWS_SHOWN]
        rows = [
            (
                when(e.created_at),
                e.get_kind_display(),
                f"{e.points:+d}",
                e.balance_after,
                shown_reason(e.reason),
                e.reference,
                e.actor,
                when(e.expires_at) if e.expires_at else "",
            )
            for e in entries
        ]
        if not rows:
            return _("No entries yet.")
        full_list = f"{reverse('admin:points_ledgerentry_changelist')}?member__id__exact={member.pk}"
        return format_html(
            '<table class="points-ledger"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">{}</a></p>',
            _("created at"),
            _("kind"),
            _("points"),
            _("balance after"),
            _("reason"),
            _("reference"),
            _("actor"),
            _("expires at"),
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rows,
            ),
            full_list,
            _("The whole ledger"),
        )

    @admin.display(description=_("redemptions"))
    def redemptions_table(self, member):
        redemptions = (
            Redemption.objects.filter(member_id=member.pk).select_related("reward").order_by("-id")[:REDEMPTIONS_SHOWN]
        )
        rows = [
            (
                when(r.created_at),
                r.reward.name,
                r.quantity,
                r.points_spent,
                r.get_status_display(),
                r.code,
                self._cancel_link(member, r),
            )
            for r in redemptions
        ]
        if not rows:
            return _("No redemptions yet.")
        return format_html(
            '<table class="points-redemptions"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th></th></tr></thead><tbody>{}</tbody></table>",
            _("created at"),
            _("reward"),
            _("quantity"),
            _("points"),
            _("status"),
            _("code"),
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
            ),
        )

    def _cancel_link(self, member, redemption):
        if redemption.status != RedemptionStatus.COMPLETED or member.merged_into_id:
            return ""
        url = reverse("admin:members_member_cancel_redemption", args=[member.pk, redemption.pk])
        return format_html('<a class="button cancel-redemption" href="{}">{}</a>', url, _("Cancel"))

    @admin.display(description=_("household"))
    def household_table(self, member):
        others = list(selectors.household_members(member.pk)) if member.household_id else []
        if not others:
            return _("Not in a household.")
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:members_member_change", args=[other.pk]), str(other)) for other in others),
        )

    @admin.display(description=_("pending adjustments"))
    def pending_adjustments_table(self, member):
        pending = (
            AdjustmentRequest.objects.filter(member_id=member.pk, status=AdjustmentRequestStatus.PENDING)
            .select_related("requested_by")
            .order_by("-id")[:PENDING_REQUESTS_SHOWN]
        )
        rows = [
            (
                when(r.requested_at),
                f"{r.points:+d}",
                r.reason,
                staff_actor(r.requested_by),
                reverse("admin:members_member_decide_adjustment", args=[member.pk, r.pk]),
                _("approve or reject"),
            )
            for r in pending
        ]
        if not rows:
            return _("None.")
        return format_html(
            '<table class="points-adjustment-requests"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
            "<th></th></tr></thead><tbody>{}</tbody></table>",
            _("requested at"),
            _("points"),
            _("reason"),
            _("requested by"),
            format_html_join(
                "", '<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href="{}">{}</a></td></tr>', rows
            ),
        )

    # The counter's actions ----------------------------------------------------------------------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            re_path(
                rf"^{MEMBER_ID_PATTERN}/record-purchase/$",
                view(self.record_purchase_view),
                name=f"{prefix}_record_purchase",
            ),
            re_path(rf"^{MEMBER_ID_PATTERN}/redeem/$", view(self.redeem_reward_view), name=f"{prefix}_redeem"),
            re_path(rf"^{MEMBER_ID_PATTERN}/adjust/$", view(self.adjust_points_view), name=f"{prefix}_adjust"),
            re_path(
                rf"^{MEMBER_ID_PATTERN}/adjustment-requests/{REQUEST_ID_PATTERN}/$",
                view(self.decide_adjustment_view),
                name=f"{prefix}_decide_adjustment",
            ),
            re_path(rf"^{MEMBER_ID_PATTERN}/household/$", view(self.household_view), name=f"{prefix}_household"),
            re_path(rf"^{MEMBER_ID_PATTERN}/transfer/$", view(self.transfer_points_view), name=f"{prefix}_transfer"),
            re_path(rf"^{MEMBER_ID_PATTERN}/refund/$", view(self.choose_refund_view), name=f"{prefix}_refund"),
            re_path(
                rf"^{MEMBER_ID_PATTERN}/purchases/(?P<purchase_id>[0-9]{{1,18}})/refund/$",
                view(self.refund_view),
                name=f"{prefix}_refund_purchase",
            ),
            re_path(
                rf"^{MEMBER_ID_PATTERN}/redemptions/(?P<redemption_id>[0-9]{{1,18}})/cancel/$",
                view(self.cancel_redemption_view),
                name=f"{prefix}_cancel_redemption",
            ),
            *super().get_urls(),
        ]

    def may_act_on_points(self, request):
        """Any staff role may use the points actions, if it may change members."""
        return staff_role(request.user) is not None and self.has_change_permission(request)

    def counter_actions(self, request, member):
        """The points actions (any staff role that may change members), then the merge (admins)."""
        if member.merged_into_id or not self.may_act_on_points(request):
            return super().counter_actions(request, member)
        urls = [
            (_("Record a purchase"), "record_purchase"),
            (_("Refund an order"), "refund"),
            (_("Redeem a reward"), "redeem"),
            (_("Adjust points"), "adjust"),
            *([(_("Transfer points"), "transfer")] if member.household_id else []),
            (_("Household"), "household"),
        ]
        return [
            *((label, reverse(f"admin:members_member_{name}", args=[member.pk])) for label, name in urls),
            *super().counter_actions(request, member),
        ]

    def _member_for_action(self, request, member_id):
        if not self.may_act_on_points(request):
            raise PermissionDenied
        return get_object_or_404(self.get_queryset(request), pk=member_id)

    def _points_action(self, request, member_id, *, form_class, title, submit_label, perform):
        """Show the form; on a valid submit call `perform` (one service call) and go back to the member page with
        its result, or show the service's refusal on the form."""
        member = self._member_for_action(request, member_id)
        if request.method == "POST":
            form = form_class(request.POST, request=request, member=member)
            if form.is_valid():
                try:
                    level, text = perform(request, member, form.cleaned_data)
                except DomainError as error:
                    form.add_error(None, domain_error_text(error))
                    if isinstance(error, services.IdempotencyConflict) and isinstance(form, KeyedForm):
                        form.renew_key()
                else:
                    self.message_user(request, text, level)
                    return HttpResponseRedirect(reverse("admin:members_member_change", args=[member.pk]))
        else:
            form = form_class(request=request, member=member)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{title}: {member}",
            "subtitle": None,
            "member": member,
            "summary": selectors.points_summary(member.pk),
            "form": form,
            "submit_label": submit_label,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, ACTION_TEMPLATE, context)

    def record_purchase_view(self, request, member_id):
        return self._points_action(
            request,
            member_id,
            form_class=RecordPurchaseForm,
            title=_("Record a purchase"),
            submit_label=_("Record the purchase"),
            perform=self._record_purchase,
        )

    def redeem_reward_view(self, request, member_id):
        return self._points_action(
            request,
            member_id,
            form_class=RedeemRewardForm,
            title=_("Redeem a reward"),
            submit_label=_("Redeem"),
            perform=self._redeem_reward,
        )

    def adjust_points_view(self, request, member_id):
        return self._points_action(
            request,
            member_id,
            form_class=AdjustPointsForm,
            title=_("Adjust points"),
            submit_label=_("Adjust"),
            perform=self._adjust_points,
        )

    def decide_adjustment_view(self, request, member_id, request_id):
        if not self.may_act_on_points(request):
            raise PermissionDenied
        adjustment = get_object_or_404(
            AdjustmentRequest.objects.select_related("requested_by"), pk=request_id, member_id=member_id
        )
        title = _("Adjustment request %(id)s (%(points)+d points, “%(reason)s”, asked by %(by)s, %(status)s)") % {
            "id": adjustment.pk,
            "points": adjustment.points,
            "reason": adjustment.reason,
            "by": adjustment.requested_by.get_username(),
            "status": adjustment.get_status_display(),
        }
        return self._points_action(
            request,
            member_id,
            form_class=DecideAdjustmentForm,
            title=title,
            submit_label=_("Decide"),
            perform=partial(self._decide_adjustment, adjustment),
        )

    def household_view(self, request, member_id):
        return self._points_action(
            request,
            member_id,
            form_class=HouseholdForm,
            title=_("Household"),
            submit_label=_("Save"),
            perform=self._change_household,
        )

    def transfer_points_view(self, request, member_id):
        return self._points_action(
            request,
            member_id,
            form_class=TransferPointsForm,
            title=_("Transfer points within the household"),
            submit_label=_("Transfer"),
            perform=self._transfer_points,
        )

    def refundable_purchases(self, request, member):
        """Her purchases a clerk may refund: at her stores (as the API lets her), newest first."""
        purchases = Purchase.objects.filter(member_id=member.pk).select_related("store")
        store_ids = clerk_store_ids(request)
        if store_ids is not None:
            purchases = purchases.filter(store_id__in=store_ids)
        return purchases.order_by("-occurred_at", "-id")

    def choose_refund_view(self, request, member_id):
        """Which order to refund: her purchases that are left to refund, each with a link to its refund form."""
        member = self._member_for_action(request, member_id)
        purchases = self.refundable_purchases(request, member).filter(refunded_amount__lt=F("amount"))
        rows = [
            {
                "purchase": purchase,
                "occurred_at": when(purchase.occurred_at),
                "refundable": f"{purchase.refundable_amount:.2f}",
                "url": reverse("admin:members_member_refund_purchase", args=[member.pk, purchase.pk]),
            }
            for purchase in purchases[:REFUNDABLE_PURCHASES_SHOWN]
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{_('Refund an order')}: {member}",
            "subtitle": None,
            "member": member,
            "summary": selectors.points_summary(member.pk),
            "purchases": rows,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/points/member_refund_choose.html", context)

    def refund_view(self, request, member_id, purchase_id):
        member = self._member_for_action(request, member_id)
        purchase = get_object_or_404(self.refundable_purchases(request, member), pk=purchase_id)
        title = _("Refund order %(order)s (%(amount)s, %(refunded)s refunded so far)") % {
            "order": purchase.order_no,
            "amount": f"{purchase.amount:.2f}",
            "refunded": f"{purchase.refunded_amount:.2f}",
        }
        return self._points_action(
            request,
            member_id,
            form_class=partial(RefundForm, purchase=purchase),
            title=title,
            submit_label=_("Refund"),
            perform=partial(self._refund, purchase),
        )

    def cancel_redemption_view(self, request, member_id, redemption_id):
        if not request.user.has_perm(f"{Redemption._meta.app_label}.change_redemption"):
            raise PermissionDenied
        member = self._member_for_action(request, member_id)
        redemption = get_object_or_404(
            Redemption.objects.select_related("reward"), pk=redemption_id, member_id=member.pk
        )
        title = _("Cancel redemption %(id)s (%(quantity)s × %(reward)s, %(points)s points)") % {
            "id": redemption.pk,
            "quantity": redemption.quantity,
            "reward": redemption.reward.name,
            "points": redemption.points_spent,
        }
        return self._points_action(
            request,
            member_id,
            form_class=partial(CancelRedemptionForm, redemption=redemption),
            title=title,
            submit_label=_("Cancel the redemption"),
            perform=partial(self._cancel_redemption, redemption),
        )

    def _refund(self, purchase, request, member, data):
        amount, lines = data["amount"], data["lines"]
        outcome = services.record_refund(
            actor=admin_actor(request),
            purchase_id=purchase.pk,
            refund_no=data["refund_no"],
            amount=amount,
            lines=lines,
            fingerprint=services.request_fingerprint(
                {
                    "action": "refund",
                    "purchase": purchase.pk,
                    "amount": f"{amount:.2f}",
                    "lines": [{"sku": line["sku"], "quantity": str(line["quantity"])} for line in lines],
                }
            ),
        )
        result = outcome.result
        text = _(
            "Refund %(refund_no)s of order %(order)s: %(amount)s refunded; %(reversed)s points reversed, "
            "%(returned)s points used as cash returned; balance %(balance)s."
        ) % {
            "refund_no": result["refund_no"],
            "order": purchase.order_no,
            "amount": result["amount"],
            "reversed": result["points_reversed"],
            "returned": result["points_returned"],
            "balance": result["balance"],
        }
        parts = [str(text)]
        if result.get("coupons_returned"):
            parts.append(_("Coupons back to her: %(codes)s.") % {"codes": ", ".join(result["coupons_returned"])})
        purchase.refresh_from_db()
        parts += [str(note) for note in refund_notes.call_all(purchase) if note]
        if outcome.replayed:
            return messages.WARNING, _("Already refunded, nothing changed. %(result)s") % {"result": " ".join(parts)}
        return messages.SUCCESS, " ".join(parts)

    def _cancel_redemption(self, redemption, request, member, data):
        result = services.cancel_redemption(actor=admin_actor(request), redemption_id=redemption.pk)
        return messages.SUCCESS, _(
            "Cancelled redemption %(id)s: %(points)s points and %(quantity)s × %(reward)s back in stock; balance "
            "%(balance)s."
        ) % {
            "id": redemption.pk,
            "points": redemption.points_spent,
            "quantity": redemption.quantity,
            "reward": redemption.reward.name,
            "balance": result["balance"],
        }

    def _record_purchase(self, request, member, data):
        store = data["store"]
        points_used = data["points_used"] or 0
        # The natural key is (store, order_no): the same form posted again replays the first result.
        fingerprint = services.request_fingerprint(
            {
                "member": member.pk,
                "order_no": data["order_no"],
                "amount": f"{data['amount']:.2f}",
                "store": store.pk if store else None,
                "channel": data["channel"],
                "points_used": points_used,
            }
        )
        outcome = services.record_purchase(
            actor=admin_actor(request),
            source=f"store:{store.code}" if store else "staff",
            member_id=member.pk,
            order_no=data["order_no"],
            amount=data["amount"],
            store=store,
            channel=data["channel"],
            points_used=points_used,
            fingerprint=fingerprint,
        )
        points = outcome.result["points"]
        text = _("Purchase %(order)s: %(points)s points %(status)s (%(breakdown)s).") % {
            "order": data["order_no"],
            "points": points["awarded"],
            "status": LotStatus(points["status"]).label,
            "breakdown": breakdown_text(points["breakdown"]),
        }
        if outcome.replayed:
            return messages.WARNING, _("Already recorded, nothing changed. %(result)s") % {"result": text}
        return messages.SUCCESS, text

    def _redeem_reward(self, request, member, data):
        reward, quantity = data["reward"], data["quantity"]
        outcome = services.redeem_reward(
            actor=admin_actor(request),
            scope=f"staff:{request.user.pk}",
            key=str(data["key"]),
            fingerprint=services.request_fingerprint(
                {"action": "redeem", "member": member.pk, "reward": reward.pk, "quantity": quantity}
            ),
            member_id=member.pk,
            reward_id=reward.pk,
            quantity=quantity,
            store=self._acting_store(request, data),
        )
        result = outcome.result
        text = _("Redeemed %(quantity)s × %(reward)s for %(points)s points%(code)s; balance %(balance)s.") % {
            "quantity": result["quantity"],
            "reward": result["reward"]["name"],
            "points": result["points_spent"],
            "code": _(", code %(code)s") % {"code": result["code"]} if result["code"] else "",
            "balance": result["balance"],
        }
        if outcome.replayed:
            return messages.WARNING, _("This form was already submitted, nothing changed. %(result)s") % {
                "result": text
            }
        return messages.SUCCESS, text

    def _adjust_points(self, request, member, data):
        fingerprint = {"action": "adjust", "member": member.pk, "points": data["points"], "reason": data["reason"]}
        common = {
            "scope": f"staff:{request.user.pk}",
            "key": str(data["key"]),
            "member_id": member.pk,
            "points": data["points"],
            "reason": data["reason"],
        }
        if data["request_approval"]:
            outcome = services.request_adjustment(
                requester=request.user,
                **common,
                fingerprint=services.request_fingerprint({**fingerprint, "request_approval": True}),
            )
            text = _(
                "Sent for approval: request %(id)s, %(points)+d points. Nothing changes until a manager approves it."
            ) % {"id": outcome.result["id"], "points": outcome.result["points"]}
            return (messages.WARNING if outcome.replayed else messages.SUCCESS), text
        outcome = services.adjust_points(
            actor=admin_actor(request),
            role=staff_role(request.user),
            **common,
            fingerprint=services.request_fingerprint(fingerprint),
        )
        result = outcome.result
        text = _("Adjusted %(points)+d points; balance %(balance)s.") % {
            "points": result["points"],
            "balance": result["balance_after"],
        }
        if outcome.replayed:
            return messages.WARNING, _("This form was already submitted, nothing changed. %(result)s") % {
                "result": text
            }
        return messages.SUCCESS, text

    def _decide_adjustment(self, adjustment, request, member, data):
        decide = services.approve_adjustment if data["decision"] == "approve" else services.reject_adjustment
        result = decide(approver=request.user, request_id=adjustment.pk, note=data["note"])
        if result["status"] == AdjustmentRequestStatus.APPROVED:
            return messages.SUCCESS, _("Approved: %(points)+d points; balance %(balance)s.") % {
                "points": result["points"],
                "balance": result["entry"]["balance_after"],
            }
        return messages.SUCCESS, _("Rejected: nothing changed.")

    def _change_household(self, request, member, data):
        if data["leave"]:
            member_services.leave_household(actor=admin_actor(request), member=member)
            return messages.SUCCESS, _("She is no longer in a household.")
        household = member_services.link_household(actor=admin_actor(request), member=member, other=data["other"])
        return messages.SUCCESS, _("Linked with %(other)s in %(household)s.") % {
            "other": data["other"],
            "household": household,
        }

    def _transfer_points(self, request, member, data):
        receiver = data["to"]
        outcome = services.transfer_points(
            actor=admin_actor(request),
            scope=f"staff:{request.user.pk}",
            key=str(data["key"]),
            fingerprint=services.request_fingerprint(
                {
                    "action": "transfer",
                    "member": member.pk,
                    "to": receiver.pk,
                    "points": data["points"],
                    "reason": data["reason"],
                }
            ),
            from_member_id=member.pk,
            to_member_id=receiver.pk,
            points=data["points"],
            reason=data["reason"],
        )
        text = _("Transferred %(points)s points to %(to)s; balance %(balance)s.") % {
            "points": outcome.result["points"],
            "to": receiver,
            "balance": outcome.result["balance"],
        }
        if outcome.replayed:
            return messages.WARNING, _("This form was already submitted, nothing changed. %(result)s") % {
                "result": text
            }
        return messages.SUCCESS, text

    def _acting_store(self, request, data):
        """Where a clerk redeems: her only store, else the one of hers she chose on the form. Others: none."""
        store_ids = clerk_store_ids(request)
        if not store_ids:
            return None
        if len(store_ids) > 1:
            return data["store"]
        return Store.objects.filter(pk=next(iter(store_ids))).first()


admin.site.unregister(Member)
admin.site.register(Member, PointsMemberAdmin)


# --- Read-only lists ---------------------------------------------------------------------------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    list_display = ["member", "kind", "points", "balance_after", "shown_reason", "reference", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["member__member_no", "member__phone", "reference"]
    search_help_text = _("Card number, phone (any format), or an exact reference (order number ...).")
    search_other_field = "reference"
    ordering = ["-id"]
    readonly_fields = ["shown_reason", "shown_breakdown"]
    # On an entry's page: its reason and breakdown as the lists and the member page show them, not as stored.
    SHOWN_FIELDS = {"reason": "shown_reason", "breakdown": "shown_breakdown"}

    @admin.display(description=_("reason"), ordering="reason")
    def shown_reason(self, entry):
        return shown_reason(entry.reason)

    @admin.display(description=_("breakdown"))
    def shown_breakdown(self, entry):
        return breakdown_text(entry.breakdown) or "—"


@admin.register(Redemption)
class RedemptionAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    list_display = [
        "created_at",
        "member",
        "reward",
        "quantity",
        "points_spent",
        "status",
        "code",
        "store",
        "actor",
        "cancelled_at",
    ]
    list_filter = ["status", "reward"]
    list_select_related = ["member", "reward", "store"]
    search_fields = ["member__member_no", "member__phone", "code"]
    search_help_text = _("Card number, phone (any format), or a coupon code.")
    search_other_field = "code"
    ordering = ["-id"]
    actions = ["cancel_redemptions"]

    def has_cancel_permission(self, request):
        """Cancelling is the one write here: for staff who may change redemptions (through the service)."""
        codename = get_permission_codename("change", self.opts)
        return staff_role(request.user) is not None and request.user.has_perm(f"{self.opts.app_label}.{codename}")

    @admin.action(description=_("Cancel selected redemptions"), permissions=["cancel"])
    def cancel_redemptions(self, request, queryset):
        cancelled, failures = 0, []
        for redemption in queryset.order_by("id")[:ACTION_ROWS_LIMIT]:
            try:
                services.cancel_redemption(actor=admin_actor(request), redemption_id=redemption.pk)
            except DomainError as error:
                failures.append(f"#{redemption.pk}: {domain_error_text(error)}")
            else:
                cancelled += 1
        if cancelled:
            self.message_user(
                request,
                _("Cancelled %(count)s redemption(s); their points and stock are back.") % {"count": cancelled},
                messages.SUCCESS,
            )
        for failure in failures:
            self.message_user(request, failure, messages.ERROR)


@admin.register(PointsAccount)
class PointsAccountAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    list_display = [
        "member",
        "available",
        "pending",
        "lifetime_earned",
        "lifetime_spent",
        "lifetime_expired",
        "updated_at",
    ]
    search_fields = ["member__member_no", "member__phone"]
    search_help_text = _("Card number or phone (any format).")
    ordering = ["-pk"]
    exclude = ["cap_date", "earned_on_cap_date", "last_sign_in", "sign_in_streak"]


@admin.register(AdjustmentRequest)
class AdjustmentRequestAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    """Adjustments waiting for a manager. Every staff role sees those of the members it sees; approving and
    rejecting go through the services, which decide who may (not the requester; within the decider's limit)."""

    list_display = [
        "id",
        "requested_at",
        "member",
        "points",
        "reason",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
        "decision_note",
        "entry",
    ]
    list_filter = ["status"]
    list_select_related = ["member", "requested_by", "decided_by", "entry"]
    search_fields = ["member__member_no", "member__phone"]
    search_help_text = _("Card number or phone (any format).")
    ordering = ["-id"]
    actions = ["approve_requests", "reject_requests"]

    def has_view_permission(self, request, obj=None):
        return staff_role(request.user) is not None

    def has_module_permission(self, request):
        return staff_role(request.user) is not None

    def has_decide_permission(self, request):
        return staff_role(request.user) is not None

    @admin.action(description=_("Approve selected requests"), permissions=["decide"])
    def approve_requests(self, request, queryset):
        self._decide(request, queryset, services.approve_adjustment, _("Approved %(count)s request(s)."))

    @admin.action(description=_("Reject selected requests"), permissions=["decide"])
    def reject_requests(self, request, queryset):
        self._decide(request, queryset, services.reject_adjustment, _("Rejected %(count)s request(s)."))

    def _decide(self, request, queryset, decide, done_text):
        done, failures = 0, []
        for adjustment in queryset.order_by("id")[:ACTION_ROWS_LIMIT]:
            try:
                decide(approver=request.user, request_id=adjustment.pk)
            except DomainError as error:
                failures.append(f"#{adjustment.pk}: {domain_error_text(error)}")
            else:
                done += 1
        if done:
            self.message_user(request, done_text % {"count": done}, messages.SUCCESS)
        for failure in failures:
            self.message_user(request, failure, messages.ERROR)


# --- The marketer's configuration ----------------------------------------------------------------------------------


class VersionedAdmin(ConfigurationAdmin):
    """Rewards and earning rules: a version keeps its terms, a change of terms is "Save as new version" (Django's
    "Save as new", named for what it does in templates/admin/points/submit_line.html); switching one off is
    an action too."""

    save_as = True
    actions = ["deactivate_selected"]

    def has_delete_permission(self, request, obj=None):
        return False  # redemptions and earnings keep pointing at them: switch one off instead

    @admin.action(description=_("Deactivate the selected rows"), permissions=["change"])
    def deactivate_selected(self, request, queryset):
        """Each row through the service, in its own transaction; a refusal is reported and the others go on."""
        done, failures = 0, []
        for pk in queryset.order_by("id").values_list("pk", flat=True)[:ACTION_ROWS_LIMIT]:
            try:
                self.deactivate(request, pk)
            except DomainError as error:
                failures.append(f"#{pk}: {domain_error_text(error)}")
            else:
                done += 1
        if done:
            self.message_user(request, _("Deactivated %(count)s.") % {"count": done}, messages.SUCCESS)
        for failure in failures:
            self.message_user(request, failure, messages.ERROR)


# choices() -> [(tier code, label)] for a reward's eligible tiers, registered by the tiers app's admin under "tiers"
# (points cannot import tiers). Without it the tiers are typed as codes.
tier_choices = ExtensionPoint("tier_choices", "choices() -> [(code, label)] of the tiers", keyed=True)


def model_label(model, name):
    field = model._meta.get_field(name)
    return {"label": capfirst(field.verbose_name), "help_text": field.help_text}


class RewardForm(ConfigurationForm):
    class Meta:
        model = Reward
        fields = configuration.REWARD_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = tier_choices.get("tiers")
        if "eligible_tiers" in self.fields:
            if choices is None:
                self.fields["eligible_tiers"] = WordListField(**model_label(Reward, "eligible_tiers"))
            else:
                field = CodeChoiceListField(choices=choices(), **model_label(Reward, "eligible_tiers"))
                field.keep_unknown(self.instance.eligible_tiers if self.instance.pk else [])
                self.fields["eligible_tiers"] = field
        # The stock as the form showed it comes back with the post: if the marketer left it alone, the save does
        # not write it, so redemptions made while the form was open keep their decrement. (A clerk only views a
        # reward: her form has no fields, every one is shown read-only.)
        if "stock" in self.fields:
            self.fields["stock"].show_hidden_initial = True


@admin.register(Reward)
class RewardAdmin(VersionedAdmin):
    """Once redeemed, a reward keeps its terms (code, kind, cost, voucher amount): a change of them is saved as a
    new version, which retires this one and takes over its stock."""

    form = RewardForm
    compare_with_shown = ["stock"]
    list_display = [
        "code",
        "name",
        "kind",
        "cost_points",
        "stock",
        "per_member_limit",
        "is_active",
        "valid_from",
        "valid_until",
        "replaced_at",
    ]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]
    readonly_fields = ["replaces", "replaced_at", "created_at"]

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": configuration.REWARD_FIELDS})
        return [main] if obj is None else [main, (_("Versions"), {"fields": self.readonly_fields})]

    def create(self, request, values):
        return services.create_reward(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return services.change_reward(actor=admin_actor(request), reward_id=obj.pk, changes=changes)

    def add_version(self, request, source_id, values):
        return services.add_reward_version(actor=admin_actor(request), reward_id=source_id, changes=values)

    def deactivate(self, request, pk):
        return services.deactivate_reward(actor=admin_actor(request), reward_id=pk)


class EarningRuleForm(ConfigurationForm):
    excluded_categories = WordListField(
        label=_("Excluded categories (purchase)"),
        help_text=_("Product categories whose lines earn no points, separated by commas; empty: none."),
    )

    class Meta:
        model = EarningRule
        fields = configuration.RULE_FIELDS


class PurchasePreviewForm(forms.Form):
    """A purchase to try the rules in force on (points.services.preview_purchase, as the API's purchase preview):
    for a member (her tier and the campaigns she is in count), nothing written."""

    member = forms.CharField(label=_("member"), max_length=40, help_text=_("Her card number or phone."))
    amount = forms.DecimalField(
        label=_("amount paid"), max_digits=12, decimal_places=2, min_value=Decimal("0.01"), max_value=MAX_AMOUNT
    )
    store = forms.ModelChoiceField(queryset=Store.objects.filter(is_active=True), label=_("store"), required=False)
    channel = forms.ChoiceField(label=_("channel"), choices=PurchaseChannel.choices, initial=PurchaseChannel.OFFLINE)
    lines = forms.CharField(
        label=_("lines"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text=_("Optional, one per line: category, amount (e.g. “tobacco, 30”): to try excluded categories."),
    )

    def clean_member(self):
        found = members_matching(self.cleaned_data["member"].strip())
        if len(found) != 1:
            raise forms.ValidationError(_("No member has exactly this card number or phone."))
        return Member.objects.get(pk=found[0])

    def clean_lines(self):
        lines = []
        for number, text in enumerate(self.cleaned_data["lines"].splitlines(), start=1):
            if not text.strip():
                continue
            category, _comma, amount = text.rpartition(",")
            try:
                price = Decimal(amount.strip())
            except ArithmeticError:
                price = None
            if not category.strip() or price is None or not price.is_finite() or price < 0:
                raise forms.ValidationError(_("Line %(number)s: write “category, amount”.") % {"number": number})
            category = category.strip()
            lines.append({"sku": category, "category": category, "quantity": Decimal(1), "unit_price": price})
        return lines


@admin.register(EarningRule)
class EarningRuleAdmin(VersionedAdmin):
    """An existing rule keeps its earning fields (points already earned were earned under them): a change to them
    is saved as a new version; in place, only the end date and the switch change. "Preview a purchase" tries the
    rules in force on a purchase, writing nothing."""

    form = EarningRuleForm
    change_list_template = "admin/points/earningrule/change_list.html"
    list_display = ["channel", "name", "store", "valid_from", "valid_until", "is_active"]
    list_filter = ["channel", "is_active"]
    list_select_related = ["store"]
    search_fields = ["name", "event_type"]
    readonly_fields = ["created_by", "created_at"]

    def get_fieldsets(self, request, obj=None):
        description = (
            None
            if obj is None
            else _(
                "Change “valid until” or “active” and press Save; to change how the rule earns, edit the fields and "
                "press “Save as new version” (the new version wins from its “valid from”)."
            )
        )
        main = (
            None,
            {
                "fields": ["channel", "event_type", "name", "store", "valid_from", "valid_until", "is_active"],
                "description": description,
            },
        )
        earning = (
            _("Earning"),
            {
                "fields": [
                    "points",
                    "points_per_unit",
                    "min_amount",
                    "excluded_categories",
                    "pending_days",
                    "daily_limit",
                    "streak_days",
                    "streak_bonus",
                ]
            },
        )
        if obj is None:
            return [main, earning]
        return [main, earning, (_("History"), {"fields": ["created_by", "created_at"]})]

    def create(self, request, values):
        return services.create_earning_rule(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return services.change_earning_rule(actor=admin_actor(request), rule_id=obj.pk, changes=changes)

    def add_version(self, request, source_id, values):
        return services.add_earning_rule_version(actor=admin_actor(request), rule_id=source_id, changes=values)

    def deactivate(self, request, pk):
        return services.deactivate_earning_rule(actor=admin_actor(request), rule_id=pk)

    # Try the rules on a purchase -------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view(self.preview_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_preview"
        return [re_path(r"^preview/$", view, name=name), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "preview_url": reverse("admin:points_earningrule_preview")}
        return super().changelist_view(request, extra_context)

    def preview_view(self, request):
        """What a purchase would earn now under the rules in force (and her tier and campaigns), writing
        nothing: the purchase preview of the API, for a marketer trying a rule."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PurchasePreviewForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                answer = services.preview_purchase(
                    member=data["member"],
                    amount=data["amount"],
                    store=data["store"],
                    channel=data["channel"],
                    lines=data["lines"],
                )
            except DomainError as error:
                form.add_error(None, domain_error_text(error))
            else:
                points = answer["points"]
                result = {
                    "text": _("%(points)s points %(status)s; growth value %(growth)s.")
                    % {
                        "points": points["awarded"],
                        "status": LotStatus(points["status"]).label,
                        "growth": answer["growth_awarded"],
                    },
                    "breakdown": [
                        {"source": breakdown_source(line), "points": line["points"]}
                        for line in points["breakdown"] or []
                    ],
                    "tier_change": answer.get("tier_change"),
                }
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Preview a purchase"),
            "subtitle": None,
            "form": form,
            "result": result,
            "media": self.media + form.media,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/points/earningrule/preview.html", context)


@admin.register(PointsPolicy)
class PointsPolicyAdmin(ConfigurationAdmin):
    """Policies are versions: a new one (starting from the current values) applies from its valid_from; saved
    versions stay as they were."""

    list_display = [
        "valid_from",
        "expiry_mode",
        "expiry_months",
        "daily_cap",
        "cash_points_per_unit",
        "cash_max_share",
        "clerk_adjustment_limit",
        "marketer_adjustment_limit",
        "clerk_daily_adjustment_total",
        "marketer_daily_adjustment_total",
        "member_daily_adjustment_total",
        "transfers_enabled",
        "transfer_daily_limit",
        "created_by",
    ]
    readonly_fields = ["created_by", "created_at"]
    ordering = ["-valid_from", "-id"]

    def get_changeform_initial_data(self, request):
        current = services.current_policy()
        initial = {field: getattr(current, field) for field in configuration.POLICY_FIELDS if field != "valid_from"}
        return {**initial, "valid_from": timezone.now(), **super().get_changeform_initial_data(request)}

    def get_form(self, request, obj=None, change=False, **kwargs):
        """The limits on moving points are an admin's: on anyone else's form they are fixed fields, showing the
        current values, and whatever a post says for them is ignored (the service refuses a change too)."""
        form_class = super().get_form(request, obj, change, **kwargs)
        if staff_role(request.user) != ROLE_ADMIN:
            for name in configuration.POLICY_LIMIT_CEILINGS:
                if name in form_class.base_fields:
                    form_class.base_fields[name].disabled = True
                    form_class.base_fields[name].help_text = _("Only an admin may change this limit.")
        return form_class

    def create(self, request, values):
        role = staff_role(request.user)
        if role != ROLE_ADMIN:  # fixed fields: the new version keeps the limits of the version it follows
            values = {name: value for name, value in values.items() if name not in configuration.POLICY_LIMIT_CEILINGS}
        return services.add_points_policy(actor=admin_actor(request), role=role, values=values)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
