"""HTTP shapes of stored value: balances, the ledger, top-ups, payments, refunds, withdrawals, adjustments, PINs.
Money comes in and goes out as decimal strings ("129.90"); the services work in cents."""

from decimal import Decimal

from django.utils.translation import gettext as _
from rest_framework import serializers

from members.models import Store
from members.serializers import TierChangeBriefSerializer
from points.serializers import IdField, member_no_field
from stored_value.models import EntryKind, PaymentMethod, TopUpRule
from stored_value.services.ledger import cents, money

MAX_AMOUNT = Decimal("999999999.99")  # stored_value.services.balances.MAX_CENTS in money
NUMBER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$"  # order and refund numbers, as the purchases API takes them
PIN_PATTERN = r"^[0-9]{6}$"


def money_field(*, signed=False, **kwargs):
    return serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=-MAX_AMOUNT if signed else Decimal("0.01"),
        max_value=MAX_AMOUNT,
        **kwargs,
    )


def store_field():
    return serializers.SlugRelatedField(
        slug_field="code",
        queryset=Store.objects.filter(is_active=True),
        required=False,
        allow_null=True,
        help_text="store code; a caller bound to one store may leave it out",
    )


def pin_field(**kwargs):
    return serializers.RegexField(PIN_PATTERN, max_length=6, write_only=True, **kwargs)


class StoredValueAccountSerializer(serializers.Serializer):
    member = serializers.CharField()
    principal = serializers.CharField(help_text="decimal string")
    bonus = serializers.CharField(help_text="decimal string")
    total = serializers.CharField(help_text="decimal string")
    principal_cents = serializers.IntegerField()
    bonus_cents = serializers.IntegerField()
    total_cents = serializers.IntegerField()


class StoredValueSummarySerializer(StoredValueAccountSerializer):
    has_pin = serializers.BooleanField()
    pin_locked = serializers.BooleanField()


class StoredValueEntrySerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=EntryKind.choices)
    principal = serializers.CharField(help_text="signed change of the principal")
    bonus = serializers.CharField(help_text="signed change of the bonus")
    amount = serializers.CharField(help_text="signed change of the total")
    principal_after = serializers.CharField()
    bonus_after = serializers.CharField()
    balance_after = serializers.CharField()
    principal_cents = serializers.IntegerField()
    bonus_cents = serializers.IntegerField()
    reason = serializers.CharField()
    reference = serializers.CharField()
    store = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class StoredValueTopUpInputSerializer(serializers.Serializer):
    member = IdField()
    amount = money_field()
    payment_method = serializers.ChoiceField(choices=PaymentMethod.choices)
    payment_ref = serializers.RegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,99}$",
        max_length=100,
        help_text="the external payment's reference (cash receipt, card slip, WeChat Pay or Alipay transaction id): "
        "unique per payment method, the top-up's idempotency key",
    )
    store = store_field()


class StoredValueTopUpResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    member = serializers.CharField()
    amount = serializers.CharField()
    bonus = serializers.CharField()
    amount_cents = serializers.IntegerField()
    bonus_cents = serializers.IntegerField()
    bonus_points = serializers.IntegerField()
    bonus_growth = serializers.IntegerField()
    bonus_expires_at = serializers.DateTimeField(allow_null=True)
    payment_method = serializers.CharField()
    payment_ref = serializers.CharField()
    store = serializers.CharField(allow_null=True)
    rule = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    balance = StoredValueAccountSerializer()
    tier_change = TierChangeBriefSerializer(allow_null=True, help_text="the upgrade the top-up's bonus growth caused")


class StoredValuePaymentInputSerializer(serializers.Serializer):
    member = IdField()
    member_no = member_no_field()
    order_no = serializers.RegexField(NUMBER_PATTERN, max_length=64)
    amount = money_field()
    pin = pin_field(required=False, help_text="the member's 6-digit payment PIN (when she has one)")
    store = store_field()


class StoredValuePaymentResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    member = serializers.CharField()
    order_no = serializers.CharField()
    amount = serializers.CharField()
    principal_used = serializers.CharField()
    bonus_used = serializers.CharField()
    refunded = serializers.CharField()
    amount_cents = serializers.IntegerField()
    principal_used_cents = serializers.IntegerField()
    bonus_used_cents = serializers.IntegerField()
    store = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    balance_after = serializers.CharField(help_text="the total balance after the payment")
    balance = StoredValueAccountSerializer()


class StoredValueRefundInputSerializer(serializers.Serializer):
    amount = money_field()
    refund_no = serializers.RegexField(
        NUMBER_PATTERN, max_length=64, help_text="unique per payment: its idempotency key"
    )


class StoredValueRefundResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    payment = serializers.CharField()
    refund_no = serializers.CharField()
    amount = serializers.CharField()
    principal = serializers.CharField()
    bonus = serializers.CharField()
    bonus_expired = serializers.CharField(help_text="returned bonus whose validity had ended: expired at once")
    balance_after = serializers.CharField()
    balance = StoredValueAccountSerializer()
    created_at = serializers.DateTimeField()


class StoredValueWithdrawalInputSerializer(serializers.Serializer):
    top_up = IdField()
    amount = money_field(
        required=False, allow_null=True, help_text="principal to pay back; default (or null): all its unspent principal"
    )
    reason = serializers.CharField(max_length=200)
    store = store_field()


class StoredValueWithdrawalResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    top_up = serializers.CharField()
    member = serializers.CharField()
    amount = serializers.CharField()
    bonus_forfeited = serializers.CharField()
    unspent_left = serializers.CharField()
    reason = serializers.CharField()
    balance_after = serializers.CharField()
    balance = StoredValueAccountSerializer()
    created_at = serializers.DateTimeField()


class StoredValueAdjustmentInputSerializer(serializers.Serializer):
    member_no = member_no_field()
    principal = money_field(signed=True, required=False, default=Decimal("0"))
    bonus = money_field(signed=True, required=False, default=Decimal("0"))
    reason = serializers.CharField(max_length=200)


class StoredValueAdjustmentResultSerializer(StoredValueEntrySerializer):
    balance = StoredValueAccountSerializer()


class StoredValuePinInputSerializer(serializers.Serializer):
    pin = pin_field(help_text="6 digits")


class MyStoredValuePinInputSerializer(StoredValuePinInputSerializer):
    current_pin = pin_field(required=False, help_text="the PIN she has now, if any")


class StoredValuePinResultSerializer(serializers.Serializer):
    member = serializers.CharField()
    has_pin = serializers.BooleanField()
    locked = serializers.BooleanField()


class TopUpTierSerializer(serializers.Serializer):
    """One tier of a top-up rule: a top-up of at least `amount` gets `bonus` money, `points` and `growth`."""

    amount = money_field(help_text="decimal string: the least top-up this tier applies to")
    bonus = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0"),
        max_value=MAX_AMOUNT,
        help_text="decimal string: the bonus money it gives",
    )
    points = serializers.IntegerField(min_value=0, max_value=10**9, default=0, help_text="bonus points")
    growth = serializers.IntegerField(min_value=0, max_value=10**9, default=0, help_text="bonus growth value")

    def to_representation(self, tier):
        return {
            "amount": money(tier["amount"]),
            "bonus": money(tier["bonus"]),
            "points": tier.get("points", 0),
            "growth": tier.get("growth", 0),
        }

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        return {
            "amount": cents(values["amount"]),
            "bonus": cents(values["bonus"]),
            "points": values.get("points", 0),  # a partial request (a new version) skips the defaults
            "growth": values.get("growth", 0),
        }


class TopUpRuleSerializer(serializers.ModelSerializer):
    """A top-up rule's shape, tiers in decimal strings; the rules (at least one tier, no two tiers at the same
    amount, valid_until after valid_from, terms kept by a version) are stored_value.services.configuration's and
    the model's to check."""

    id = serializers.CharField(read_only=True)
    store = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Store.objects.all(),
        required=False,
        allow_null=True,
        help_text="store code; empty: every store (a store's own rule beats the general one)",
    )
    tiers = TopUpTierSerializer(many=True, allow_empty=False)

    class Meta:
        model = TopUpRule
        fields = [
            "id",
            "name",
            "store",
            "valid_from",
            "valid_until",
            "is_active",
            "tiers",
            "bonus_valid_days",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "created_by", "created_at"]
        extra_kwargs = {"bonus_valid_days": {"min_value": 1, "max_value": 3650}}

    def validate_tiers(self, tiers):
        amounts = [tier["amount"] for tier in tiers]
        if len(set(amounts)) < len(amounts):
            raise serializers.ValidationError(_("Two tiers have the same amount: each amount may appear once."))
        return sorted(tiers, key=lambda tier: tier["amount"])


class TopUpPreviewInputSerializer(serializers.Serializer):
    amount = money_field(help_text="decimal string: the top-up to preview")
    store = serializers.SlugRelatedField(
        slug_field="code", queryset=Store.objects.all(), required=False, allow_null=True, help_text="store code"
    )


class TopUpPreviewSerializer(serializers.Serializer):
    amount = serializers.CharField()
    amount_cents = serializers.IntegerField()
    bonus = serializers.CharField()
    bonus_cents = serializers.IntegerField()
    bonus_points = serializers.IntegerField()
    bonus_growth = serializers.IntegerField()
    bonus_expires_at = serializers.DateTimeField(allow_null=True)
    rule = serializers.CharField(allow_null=True)
    tier = TopUpTierSerializer(allow_null=True)
