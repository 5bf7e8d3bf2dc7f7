"""HTTP shapes of purchases, refunds, events, balances, ledger entries, rewards and redemptions."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone
from django.utils.encoding import smart_str
from django.utils.translation import gettext as _
from rest_framework import serializers

from loyalty.api import SharedFieldsSerializer
from members.models import PurchaseChannel, Store
from members.selectors import active_stores_by_code
from members.serializers import TierChangeBriefSerializer
from points.models import AdjustmentRequestStatus, EarningRule, EntryKind, LedgerEntry, Reward, RewardKind

MAX_POINTS = 10**9
MAX_AMOUNT = Decimal("9999999999.99")
MAX_LINES = 500  # order lines of a purchase, its preview or a refund
MAX_PAYLOAD_BYTES = 16 * 1024  # an event's payload, as compact JSON (UTF-8)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: 1.5, "12", true and 1e3 are refused (points are whole numbers, never coerced)."""

    default_error_messages = {"invalid": "A whole number is required."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class OccurredAtField(serializers.DateTimeField):
    """When something happened: not before 2000, not more than a day ahead of now (clocks drift, orders do not
    come from the future)."""

    earliest = datetime(2000, 1, 1, tzinfo=UTC)

    def to_internal_value(self, value):
        moment = super().to_internal_value(value)
        if not self.earliest <= moment <= timezone.now() + timedelta(days=1):
            raise serializers.ValidationError(_("Must be between 2000-01-01 and now."))
        return moment


def money_field(**kwargs):
    kwargs.setdefault("min_value", Decimal("0.01"))
    return serializers.DecimalField(max_digits=12, decimal_places=2, max_value=MAX_AMOUNT, **kwargs)


class IdField(serializers.CharField):
    """An id as clients send it: a string (or integer) of digits."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int)):
            raise serializers.ValidationError(_("An id is a string of digits."))
        text = str(data).strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise serializers.ValidationError(_("An id is a string of digits."))
        return int(text)


class PayloadField(serializers.DictField):
    """An event's payload: a JSON object of at most MAX_PAYLOAD_BYTES once serialized."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_PAYLOAD_BYTES:
            raise serializers.ValidationError(
                _("The payload may be at most %(size)s bytes of JSON.") % {"size": MAX_PAYLOAD_BYTES}
            )
        return value


class LinesField(serializers.ListSerializer):
    """Order lines: at most MAX_LINES, refused before any line is validated."""

    def to_internal_value(self, data):
        if isinstance(data, list) and len(data) > MAX_LINES:
            raise serializers.ValidationError([_("At most %(count)s lines.") % {"count": MAX_LINES}])
        return super().to_internal_value(data)


def lines_field(child):
    return LinesField(child=child(), required=False, default=list)


class PurchaseLineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    category = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    quantity = serializers.DecimalField(max_digits=12, decimal_places=3, min_value=Decimal("0.001"))
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"), max_value=MAX_AMOUNT)


def member_no_field():
    """Not defaulted: a body without it hashes (idempotency fingerprint) as before."""
    return serializers.CharField(
        max_length=32,
        required=False,
        help_text="the member's card number, as read from her card or member code: needed to spend the points of a "
        "member of another store than the caller's",
    )


class ActiveStoreField(serializers.SlugRelatedField):
    """An active store by its code, looked up in the cached stores (no query per request on the purchase path);
    the same answers and errors as SlugRelatedField(slug_field="code") over the active stores."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="code", queryset=Store.objects.filter(is_active=True), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str | int | float | bool):
            return super().to_internal_value(data)
        store = active_stores_by_code().get(str(data))
        if store is None:
            self.fail("does_not_exist", slug_name=self.slug_field, value=smart_str(data))
        return store


class PurchaseInputSerializer(SharedFieldsSerializer):
    member = IdField()
    member_no = member_no_field()
    order_no = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$", max_length=64)
    amount = money_field()
    store = ActiveStoreField(required=False, allow_null=True)
    channel = serializers.ChoiceField(choices=PurchaseChannel.choices, default=PurchaseChannel.OFFLINE)
    occurred_at = OccurredAtField(required=False)
    lines = lines_field(PurchaseLineSerializer)
    points_used = StrictIntegerField(min_value=0, max_value=MAX_POINTS, required=False, default=0)


_FAST_PURCHASE_KEYS = frozenset({"member", "order_no", "amount", "store", "channel"})
_ORDER_NO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}")
_PLAIN_AMOUNT = re.compile(r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?")
_CENT = Decimal("0.01")


def fast_purchase_input(data):
    """PurchaseInputSerializer's validated data for the common body (a JSON object of member, order_no, amount and
    maybe store and channel, each a plain valid string, or member a non-negative integer), worked out without
    the serializer; None for any other body, which the serializer then judges (so every error, in every language,
    is the serializer's own). The values, their types and the defaults are exactly the serializer's
    (tests/points/test_input_validation.py compares both over random bodies)."""
    if type(data) is not dict or not data.keys() <= _FAST_PURCHASE_KEYS:
        return None
    member, order_no, amount = data.get("member"), data.get("order_no"), data.get("amount")
    if type(member) is str:
        if not (0 < len(member) <= 18 and member.isascii() and member.isdigit()):
            return None
        member = int(member)
    elif type(member) is not int or member < 0 or member >= 10**18:
        return None
    if type(order_no) is not str or not _ORDER_NO.fullmatch(order_no):
        return None
    if type(amount) is not str or not _PLAIN_AMOUNT.fullmatch(amount):
        return None
    amount = Decimal(amount).quantize(_CENT)
    if amount < _CENT:  # the most digits the pattern lets through is within MAX_AMOUNT
        return None
    fields = PurchaseInputSerializer().fields  # shared, bound once (SharedFieldsSerializer)
    validated = {"member": member, "order_no": order_no, "amount": amount}
    if "store" in data:
        store = data["store"]
        if type(store) is not str or (store := active_stores_by_code().get(store)) is None:
            return None
        validated["store"] = store
    if "channel" in data:
        channel = data["channel"]
        if type(channel) is not str or channel not in fields["channel"].choice_strings_to_values:
            return None
        validated["channel"] = fields["channel"].choice_strings_to_values[channel]
    else:
        validated["channel"] = fields["channel"].get_default()
    validated["lines"] = fields["lines"].get_default()
    validated["points_used"] = fields["points_used"].get_default()
    return validated


class BreakdownLineSerializer(serializers.Serializer):
    """One line of how an award was made up (API.md: a purchase's points.breakdown[])."""

    source = serializers.CharField(
        help_text="the rule: base, streak, daily_cap, tier:<code>, tier:<code>:birthday, campaign:<id>"
    )
    points = serializers.IntegerField(help_text="negative on the daily_cap line")
    campaign_name = serializers.CharField(required=False, help_text="campaign lines only")


class PurchasePointsSerializer(serializers.Serializer):
    awarded = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["pending", "available", "none"])
    available_at = serializers.DateTimeField(allow_null=True)
    breakdown = BreakdownLineSerializer(many=True)


class PointsUsedSerializer(serializers.Serializer):
    points = serializers.IntegerField(help_text="points spent as cash on the order")
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="the money they paid")


class PurchaseResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    order_no = serializers.CharField()
    member = serializers.CharField()
    amount = serializers.CharField()
    points = PurchasePointsSerializer()
    points_used = PointsUsedSerializer(allow_null=True, help_text="null when no points paid for the order")
    growth_awarded = serializers.IntegerField()
    tier_change = TierChangeBriefSerializer(allow_null=True, help_text="the upgrade this purchase caused, or null")


class PurchasePreviewSerializer(serializers.Serializer):
    points = PurchasePointsSerializer()
    growth_awarded = serializers.IntegerField()


class RefundLineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.DecimalField(max_digits=12, decimal_places=3, min_value=Decimal("0.001"))


class RefundInputSerializer(SharedFieldsSerializer):
    amount = money_field()
    refund_no = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$", max_length=64)
    lines = lines_field(RefundLineSerializer)
    occurred_at = OccurredAtField(required=False)


class RefundResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    refund_no = serializers.CharField()
    purchase = serializers.CharField()
    amount = serializers.CharField()
    points_reversed = serializers.IntegerField()
    points_returned = serializers.IntegerField()
    growth_reversed = serializers.IntegerField()
    balance = serializers.IntegerField()


class EventInputSerializer(SharedFieldsSerializer):
    member = IdField()
    type = serializers.SlugField(max_length=40)
    occurred_at = OccurredAtField(required=False)
    order_no = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    payload = PayloadField(required=False, default=dict)


class EventPointsSerializer(serializers.Serializer):
    awarded = serializers.IntegerField()
    breakdown = BreakdownLineSerializer(many=True)


class EventResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    points = EventPointsSerializer()
    growth_awarded = serializers.IntegerField()
    capped = serializers.BooleanField()
    tier_change = TierChangeBriefSerializer(allow_null=True, help_text="the upgrade this event caused, or null")


class SignInInputSerializer(SharedFieldsSerializer):
    occurred_at = OccurredAtField(required=False)


class ExpiringSerializer(serializers.Serializer):
    date = serializers.DateField()
    points = serializers.IntegerField()


class PointsSummarySerializer(serializers.Serializer):
    available = serializers.IntegerField()
    pending = serializers.IntegerField()
    lifetime_earned = serializers.IntegerField()
    lifetime_spent = serializers.IntegerField()
    lifetime_expired = serializers.IntegerField()
    expiring = ExpiringSerializer(many=True)


class LedgerEntrySerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    kind = serializers.ChoiceField(choices=EntryKind.choices)

    class Meta:
        model = LedgerEntry
        fields = ["id", "kind", "points", "balance_after", "reason", "reference", "created_at", "expires_at"]
        read_only_fields = fields


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false only ("yes", 1 and "true" are refused, as StrictIntegerField refuses "12")."""

    default_error_messages = {"invalid": "true or false is required."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class AdjustmentInputSerializer(serializers.Serializer):
    points = StrictIntegerField(min_value=-MAX_POINTS, max_value=MAX_POINTS)
    reason = serializers.CharField(max_length=200)
    # Not defaulted: a body without it hashes as before, so retries of earlier adjustments still replay.
    request_approval = StrictBooleanField(
        required=False,
        help_text="true: do not adjust now; ask a manager to approve it (202 with the pending "
        "request). For adjustments over your role's limit.",
    )
    member_no = member_no_field()

    def validate_points(self, value):
        if value == 0:
            raise serializers.ValidationError(_("An adjustment is not zero."))
        return value


class AdjustmentRequestSerializer(serializers.Serializer):
    id = serializers.CharField()
    member = serializers.CharField()
    points = serializers.IntegerField()
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=AdjustmentRequestStatus.choices)
    requested_by = serializers.CharField()
    requested_at = serializers.DateTimeField()
    decided_by = serializers.CharField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField(allow_blank=True)
    entry = LedgerEntrySerializer(allow_null=True, help_text="the adjustment, once approved")


class DecisionInputSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class TransferInputSerializer(serializers.Serializer):
    to = IdField(help_text="the receiving member's id (of the same household)")
    points = StrictIntegerField(min_value=1, max_value=MAX_POINTS)
    reason = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    member_no = member_no_field()


class TransferredLotSerializer(serializers.Serializer):
    points = serializers.IntegerField()
    expires_on = serializers.DateField(allow_null=True, help_text="the last day these points can be used")


class TransferResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    member = serializers.CharField(help_text="the sending member's id")
    to = serializers.CharField()
    points = serializers.IntegerField()
    reason = serializers.CharField(allow_blank=True)
    business_date = serializers.DateField()
    created_at = serializers.DateTimeField()
    balance = serializers.IntegerField(help_text="the sender's available points after the transfer")
    lots = TransferredLotSerializer(many=True, help_text="what moved, by expiry (the expiry moves with the points)")


class HouseholdMemberSerializer(serializers.Serializer):
    id = serializers.CharField()
    member_no = serializers.CharField()
    name = serializers.CharField(allow_blank=True)


class MyHouseholdSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True, help_text="null: the member belongs to no household")
    members = HouseholdMemberSerializer(many=True, help_text="the other members, to whom points may be transferred")


class DeductionInputSerializer(serializers.Serializer):
    order_no = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$", max_length=64)
    points = StrictIntegerField(min_value=1, max_value=MAX_POINTS)
    amount = money_field(required=False, help_text="the order's amount, when the order is not recorded yet")
    member_no = member_no_field()


class DeductionResultSerializer(serializers.Serializer):
    points = serializers.IntegerField()
    amount = serializers.CharField()
    order_no = serializers.CharField()
    balance = serializers.IntegerField()


class RewardSerializer(serializers.ModelSerializer):
    """A reward's shape; the rules (a unique code, a positive cost, terms kept once redeemed) are
    points.services.configuration's to check."""

    id = serializers.CharField(read_only=True)
    code = serializers.SlugField(max_length=50)  # unique among current versions: the service checks it
    available = serializers.SerializerMethodField()
    replaces = serializers.CharField(
        source="replaces_id",
        read_only=True,
        allow_null=True,
        help_text="the version this one replaced (its terms stay with it)",
    )

    class Meta:
        model = Reward
        fields = [
            "id",
            "code",
            "name",
            "kind",
            "description",
            "cost_points",
            "stock",
            "per_member_limit",
            "eligible_tiers",
            "voucher_amount",
            "valid_from",
            "valid_until",
            "is_active",
            "available",
            "replaces",
            "replaced_at",
        ]
        read_only_fields = ["id", "available", "replaces", "replaced_at"]
        extra_kwargs = {"cost_points": {"min_value": 1}}
        validators = []  # the code is unique among current versions: the service checks it (and the database)

    def get_available(self, reward) -> bool:
        return reward.is_available_at(timezone.now()) and (reward.stock is None or reward.stock > 0)

    def validate_eligible_tiers(self, value):
        if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
            raise serializers.ValidationError(_("A list of tier codes."))
        return value


class RedemptionInputSerializer(SharedFieldsSerializer):
    member = IdField()
    reward = IdField()
    quantity = StrictIntegerField(min_value=1, max_value=1000, default=1)
    member_no = member_no_field()


class MyRedemptionInputSerializer(SharedFieldsSerializer):
    reward = IdField()
    quantity = StrictIntegerField(min_value=1, max_value=1000, default=1)


class RedemptionRewardSerializer(serializers.Serializer):
    id = serializers.CharField()
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=RewardKind.choices)


class RedemptionResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    points_spent = serializers.IntegerField()
    quantity = serializers.IntegerField()
    code = serializers.CharField(allow_null=True)
    reward = RedemptionRewardSerializer()
    created_at = serializers.DateTimeField()
    cancelled_at = serializers.DateTimeField(allow_null=True)
    balance = serializers.IntegerField(required=False)


class EarningRuleSerializer(serializers.ModelSerializer):
    """An earning rule's shape; the rules (valid_until after valid_from, a custom rule's event type, terms kept by a
    saved version) are points.services.configuration's to check."""

    id = serializers.CharField(read_only=True)
    store = serializers.SlugRelatedField(
        slug_field="code", queryset=Store.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = EarningRule
        fields = [
            "id",
            "channel",
            "event_type",
            "name",
            "store",
            "valid_from",
            "valid_until",
            "is_active",
            "points",
            "points_per_unit",
            "min_amount",
            "excluded_categories",
            "pending_days",
            "daily_limit",
            "streak_days",
            "streak_bonus",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "created_by", "created_at"]
