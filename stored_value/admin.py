"""Admin screens for stored value: accounts and their ledgers read-only (a clerk sees her stores' members), the
counter's top-up form (clerks: the money was paid at the till, the payment reference is its receipt), read-only
lists of top-ups, payments and withdrawals, and the marketer's top-up rules and the admin's stored-value policy.

Every write goes through stored_value.services, the same functions the API calls."""

import json
import re
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from loyalty.access import staff_role
from loyalty.admin import ConfigurationAdmin, ConfigurationForm, ReadOnlyAdmin, admin_actor, clerk_store_ids
from loyalty.errors import DomainError
from loyalty.stored_reasons import register as register_reason
from loyalty.stored_reasons import shown_reason
from members.extensions import member_glance
from members.models import Member, Store
from points.admin import MemberScopedAdmin, domain_error_text, members_matching, refund_notes, when
from points.services import request_fingerprint
from stored_value import selectors, services
from stored_value.models import (
    Payment,
    PaymentMethod,
    StoredValueAccount,
    StoredValueEntry,
    StoredValuePolicy,
    TopUp,
    TopUpRule,
    Withdrawal,
)
from stored_value.services import configuration
from stored_value.services.balances import MAX_CENTS
from stored_value.services.ledger import BONUS_EXPIRY_REASON, cents, money

LEDGER_ROWS_SHOWN = 50


# The reasons the stored-value services write on entries, as the admin shows them (loyalty/stored_reasons.py).
for _pattern, _text in (
    (r"top-up", _("top-up")),
    (r"stored-value top-up bonus", _("stored-value top-up bonus")),
    (r"bonus of (?P<rule>.+)", _("bonus of %(rule)s")),
    (r"order (?P<order>\S+)", _("order %(order)s")),
    (r"refund (?P<refund>\S+) of order (?P<order>\S+)", _("refund %(refund)s of order %(order)s")),
    (re.escape(BONUS_EXPIRY_REASON), _("bonus money past its validity")),
    (r"returned bonus whose validity had ended", _("returned bonus whose validity had ended")),
):
    register_reason(_pattern, _text)


class ReadOnlyMemberScopedAdmin(MemberScopedAdmin, ReadOnlyAdmin):
    pass


@admin.register(StoredValueAccount)
class StoredValueAccountAdmin(ReadOnlyMemberScopedAdmin):
    """A member's stored value: both balances, her PIN's state and her ledger (newest first), read-only; the
    counter's "Top up" button opens the top-up form for her."""

    list_display = ["member", "principal", "bonus", "total", "pin", "updated_at"]
    fields = ["member", "principal", "bonus", "total", "pin", "top_up_link", "ledger"]
    readonly_fields = fields

    @admin.display(description=_("principal"))
    def principal(self, account):
        return money(account.principal_cents)

    @admin.display(description=_("bonus"))
    def bonus(self, account):
        return money(account.bonus_cents)

    @admin.display(description=_("total"))
    def total(self, account):
        return money(account.total_cents)

    @admin.display(description=_("payment PIN"))
    def pin(self, account):
        if account.pin_locked_at:
            return _("locked since %(at)s (staff set a new one)") % {"at": when(account.pin_locked_at)}
        return _("set") if account.has_pin else _("none")

    @admin.display(description=_("top up"))
    def top_up_link(self, account):
        url = reverse("admin:stored_value_topup_add") + f"?member={account.member.member_no}"
        return format_html('<a class="button" href="{}">{}</a>', url, _("Top up"))

    @admin.display(description=_("ledger (newest first)"))
    def ledger(self, account):
        entries = selectors.ledger_entries(account.member_id).order_by("-id")[:LEDGER_ROWS_SHOWN]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    when(entry.created_at),
                    entry.get_kind_display(),
                    money(entry.principal_delta),
                    money(entry.bonus_delta),
                    money(entry.balance_after),
                    entry.reference,
                    shown_reason(entry.reason),
                    entry.actor,
                )
                for entry in entries
            ),
        )
        labels = (_("at"), _("kind"), _("principal"), _("bonus"), _("balance"), _("reference"), _("reason"), _("by"))
        header = format_html_join("", "<th>{}</th>", ((label,) for label in labels))
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", header, rows)


@admin.register(StoredValueEntry)
class StoredValueEntryAdmin(ReadOnlyMemberScopedAdmin):
    list_display = [
        "created_at",
        "member",
        "kind",
        "principal_delta",
        "bonus_delta",
        "principal_after",
        "bonus_after",
        "reference",
        "shown_reason",
        "actor",
    ]
    list_filter = ["kind"]
    search_other_field = "reference"
    readonly_fields = ["shown_reason"]
    # On an entry's page: its reason as the lists show it, not as stored ("order DEMO-1" reads 订单 DEMO-1).
    SHOWN_FIELDS = {"reason": "shown_reason"}

    @admin.display(description=_("reason"), ordering="reason")
    def shown_reason(self, entry):
        return shown_reason(entry.reason)


class TopUpForm(forms.Form):
    member = forms.CharField(label=_("member"), help_text=_("Her card number or phone."))
    amount = forms.DecimalField(
        label=_("amount"),
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=Decimal(MAX_CENTS) / 100,
    )
    payment_method = forms.ChoiceField(label=_("payment method"), choices=PaymentMethod.choices)
    payment_ref = forms.RegexField(
        label=_("payment reference"),
        regex=r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,99}$",
        max_length=100,
        help_text=_("The receipt, card slip or WeChat Pay / Alipay transaction number: once per payment."),
    )
    store = forms.ModelChoiceField(label=_("store"), queryset=Store.objects.none())

    def __init__(self, *args, store_ids=None, **kwargs):
        super().__init__(*args, **kwargs)
        stores = Store.objects.filter(is_active=True).order_by("code")
        self.fields["store"].queryset = stores if store_ids is None else stores.filter(pk__in=store_ids)
        if store_ids is None:
            self.fields["store"].required = False

    def clean_member(self):
        found = members_matching(self.cleaned_data["member"].strip())
        if len(found) != 1:
            raise forms.ValidationError(_("No member with this card number or phone."))
        return Member.objects.get(pk=found[0])


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyMemberScopedAdmin):
    """Top-ups, read-only; "Add" is the counter's top-up form (clerks), through stored_value.services.top_up."""

    list_display = ["created_at", "member", "amount", "bonus", "payment_method", "payment_ref", "store", "actor"]
    list_filter = ["payment_method"]
    search_other_field = "payment_ref"
    list_select_related = ["member", "store"]

    @admin.display(description=_("amount"))
    def amount(self, top_up):
        return money(top_up.amount_cents)

    @admin.display(description=_("bonus"))
    def bonus(self, top_up):
        return money(top_up.bonus_cents)

    def has_add_permission(self, request):
        return staff_role(request.user) is not None and request.user.has_perm("stored_value.add_topup")

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        store_ids = clerk_store_ids(request)
        if request.method == "POST":
            form = TopUpForm(request.POST, store_ids=store_ids)
            if form.is_valid():
                done = self._top_up(request, form)
                if done is not None:
                    return done
        else:
            form = TopUpForm(initial={"member": request.GET.get("member", "")}, store_ids=store_ids)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Top up a member's stored value"),
            "form": form,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/stored_value/top_up.html", context)

    def _top_up(self, request, form):
        data = form.cleaned_data
        member, store = data["member"], data.get("store")
        amount = cents(data["amount"])
        try:
            outcome = services.top_up(
                actor=admin_actor(request),
                member_id=member.pk,
                amount_cents=amount,
                payment_method=data["payment_method"],
                payment_ref=data["payment_ref"],
                store=store,
                fingerprint=request_fingerprint(
                    {"path": "admin:top-up", "member": member.pk, "amount": amount, "store": store and store.pk}
                ),
            )
        except DomainError as error:
            form.add_error(None, domain_error_text(error))
            return None
        result = outcome.result
        self.message_user(
            request,
            _("Topped up %(amount)s with %(bonus)s bonus: the balance is %(total)s.")
            % {"amount": result["amount"], "bonus": result["bonus"], "total": result["balance"]["total"]},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:stored_value_storedvalueaccount_change", args=[member.pk]))


@admin.register(Payment)
class PaymentAdmin(ReadOnlyMemberScopedAdmin):
    list_display = [
        "created_at",
        "member",
        "order_no",
        "amount_cents",
        "principal_used",
        "bonus_used",
        "principal_refunded",
        "bonus_refunded",
        "store",
    ]
    search_other_field = "order_no"


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyMemberScopedAdmin):
    list_display = ["created_at", "member", "top_up", "principal_cents", "bonus_forfeited_cents", "reason", "actor"]


# "amount, bonus[, points[, growth]]": amounts in yuan with at most 2 decimals; commas ASCII or full-width.
MONEY, WHOLE, COMMA = r"(\d+(?:\.\d{1,2})?)", r"(\d*)", r"\s*[,，]\s*"
TIER_LINE = re.compile(rf"^\s*{MONEY}{COMMA}{MONEY}(?:{COMMA}{WHOLE}(?:{COMMA}{WHOLE})?)?\s*$")


def yuan(cents):
    return f"{Decimal(cents) / 100:.2f}"


def tier_lines(tiers):
    """A rule's tiers as the lines a marketer types: "500.00, 50.00, 100" (amount and bonus in yuan, then points
    and growth when given). A shape the lines cannot say is one line of JSON."""
    lines = []
    for tier in tiers or ():
        if not isinstance(tier, dict) or not {"amount", "bonus"} <= set(tier):
            return [json.dumps(list(tiers))]
        parts = [yuan(tier["amount"]), yuan(tier["bonus"])]
        if tier.get("points") or tier.get("growth"):
            parts.append(str(tier.get("points") or 0))
        if tier.get("growth"):
            parts.append(str(tier["growth"]))
        lines.append(", ".join(parts))
    return lines


class TopUpTiersField(forms.Field):
    """A top-up rule's tiers as lines a marketer types, one tier a line: the amount and the bonus money in yuan,
    then optionally bonus points and growth value ("500.00, 50.00, 100"). Cleaned into the list of
    {"amount": cents, "bonus": cents, "points"?, "growth"?} the model keeps (points and growth left out when 0);
    a JSON list (as the field was typed before) is taken as it is. The service checks the tiers themselves."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 40, "class": "vLargeTextField top-up-tiers"})
    default_error_messages = {
        "invalid_line": _(
            "Line %(line)s: write the amount and the bonus in yuan, then optionally points and growth, separated by "
            "commas (e.g. “500.00, 50.00, 100”)."
        ),
    }

    def prepare_value(self, value):
        if not isinstance(value, list | tuple):
            return value
        return "\n".join(tier_lines(value))

    def to_python(self, value):
        if value in self.empty_values:
            return []
        if isinstance(value, list | tuple):
            return list(value)
        if str(value).strip().startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        tiers = []
        for number, line in enumerate(str(value).splitlines(), start=1):
            if not line.strip():
                continue
            match = TIER_LINE.match(line)
            if not match:
                raise forms.ValidationError(
                    self.error_messages["invalid_line"], code="invalid_line", params={"line": number}
                )
            amount, bonus, points, growth = match.groups()
            tier = {"amount": int(Decimal(amount) * 100), "bonus": int(Decimal(bonus) * 100)}
            if points and int(points):
                tier["points"] = int(points)
            if growth and int(growth):
                tier["growth"] = int(growth)
            tiers.append(tier)
        return tiers

    @staticmethod
    def _plain(tiers):
        """Tiers with zero points and growth left out: the same terms however they were written."""
        if not isinstance(tiers, list):
            return tiers
        return [
            {key: value for key, value in tier.items() if not (key in ("points", "growth") and value == 0)}
            if isinstance(tier, dict)
            else tier
            for tier in tiers
        ]

    def has_changed(self, initial, data):
        try:
            return self._plain(self.to_python(initial)) != self._plain(self.to_python(data))
        except forms.ValidationError:
            return True


class TopUpRuleForm(ConfigurationForm):
    tiers = TopUpTiersField(
        label=capfirst(TopUpRule._meta.get_field("tiers").verbose_name),
        help_text=_(
            "One tier a line: the top-up amount and the bonus money in yuan, then optionally bonus points and "
            "growth value, separated by commas (e.g. “500.00, 50.00, 100”). A top-up of at least the amount gets "
            "the highest tier it reaches."
        ),
    )

    class Meta:
        model = TopUpRule
        fields = configuration.RULE_FIELDS


@admin.register(TopUpRule)
class TopUpRuleAdmin(ConfigurationAdmin):
    """Top-up rules are versions: a change of the tiers, the validity or the store is "Save as new version"; in
    place, only the end date and the switch change."""

    form = TopUpRuleForm
    save_as = True
    list_display = ["name", "store", "valid_from", "valid_until", "is_active", "created_by"]
    list_filter = ["is_active"]
    readonly_fields = ["created_by", "created_at", "shown_tiers"]

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        """Read only (staff who may only view): the tiers as the same yuan lines the form's field shows, not JSON."""
        fields = [name for name in super().get_fields(request, obj) if name != "shown_tiers"]
        if obj is not None and not self.has_change_permission(request, obj):
            return ["shown_tiers" if name == "tiers" else name for name in fields]
        return fields

    @admin.display(description=capfirst(TopUpRule._meta.get_field("tiers").verbose_name))
    def shown_tiers(self, rule):
        return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in tier_lines(rule.tiers)))

    def create(self, request, values):
        return services.create_top_up_rule(actor=admin_actor(request), values=values)

    def change(self, request, obj, changes):
        return services.change_top_up_rule(actor=admin_actor(request), rule_id=obj.pk, changes=changes)

    def add_version(self, request, source_id, values):
        return services.add_top_up_rule_version(actor=admin_actor(request), rule_id=source_id, changes=values)


class StoredValuePolicyForm(ConfigurationForm):
    class Meta:
        model = StoredValuePolicy
        fields = configuration.POLICY_FIELDS


@admin.register(StoredValuePolicy)
class StoredValuePolicyAdmin(ConfigurationAdmin):
    """The daily spending limit and the PIN rules, versioned; only admins add a version."""

    form = StoredValuePolicyForm
    list_display = ["valid_from", "daily_limit_cents", "pin_required", "pin_max_attempts", "created_by"]
    readonly_fields = ["created_by", "created_at"]
    ordering = ["-valid_from", "-id"]

    def create(self, request, values):
        return services.add_stored_value_policy(
            actor=admin_actor(request), role=staff_role(request.user), values=values
        )

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def stored_value_glance(member):
    """The member page's part (members.extensions.member_glance): her stored-value balance when she has an account,
    from stored_value.selectors.summary, with the counter's top-up form for her."""
    if not StoredValueAccount.objects.filter(member_id=member.pk).exists():
        return []
    balance = selectors.summary(member.pk)
    top_up = f"{reverse('admin:stored_value_topup_add')}?{urlencode({'member': member.member_no})}"
    return [
        (
            _("stored value"),
            format_html(
                '{} <span class="help">({})</span> <a href="{}">{}</a>',
                balance["total"],
                _("principal %(principal)s + bonus %(bonus)s") % balance,
                top_up,
                _("Top up"),
            ),
        )
    ]


member_glance.register(stored_value_glance, key="stored_value")


def stored_value_refund_note(purchase):
    """After an admin refund of an order (points.admin.refund_notes): what of it was paid from stored value. That
    money goes back with the stored-value payment's own refund (the till or the API), not with the points."""
    payment = Payment.objects.filter(source=purchase.source, order_no=purchase.order_no).first()
    if payment is None:
        return None
    return _(
        "%(paid)s of this order was paid from stored value (%(refunded)s refunded so far): refund it with the "
        "stored-value payment's refund."
    ) % {"paid": money(payment.amount_cents), "refunded": money(payment.refunded_cents)}


refund_notes.register(stored_value_refund_note)
