"""The coupons' shapes (API.md "Shapes fixed for clients": Coupon template, Coupon, the check and redeem answers).
The serializers check the input's shape only; the rules (a kind's fields, validity, stores that exist, terms of
a template in use) are campaigns.services.coupons'."""

from django.utils.translation import gettext as _
from rest_framework import serializers

from campaigns.models_coupons import BatchStatus, CouponKind, CouponSource, CouponStatus, CouponTemplate, IssueOn
from campaigns.services.coupons import MAX_MEMBERS_PER_ISSUE, REASONS
from members.models import Segment, Store
from points.serializers import IdField

CODES = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)


def _money(**kwargs):
    return serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True, **kwargs
    )


class CouponTemplateSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    kind = serializers.ChoiceField(choices=CouponKind.choices)
    amount_off = _money(help_text="amount_off: what it takes off; gift / free_item: its value")
    percent_off = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=0,
        max_value=100,
        required=False,
        allow_null=True,
        help_text="percent_off: 15 for 15 % off",
    )
    max_discount = _money(help_text="percent_off: the cap")
    threshold = _money(help_text="the order amount it needs (满100减20: 100)")
    valid_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True, help_text="valid N days counting the issue day"
    )
    valid_from = serializers.DateField(required=False, allow_null=True)
    valid_until = serializers.DateField(required=False, allow_null=True, help_text="the last valid day")
    stores = serializers.ListField(
        child=serializers.CharField(max_length=60), max_length=500, required=False, help_text="codes; empty: all"
    )
    categories = serializers.ListField(
        child=serializers.CharField(max_length=60), max_length=500, required=False, help_text="empty: all"
    )
    total_quantity = serializers.IntegerField(
        min_value=1, max_value=2_000_000_000, required=False, allow_null=True, help_text="empty: unlimited"
    )
    per_member_limit = serializers.IntegerField(min_value=1, max_value=10_000, required=False, allow_null=True)
    issue_on = serializers.ChoiceField(choices=IssueOn.choices, required=False, allow_blank=True)
    issued_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = CouponTemplate
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "amount_off",
            "percent_off",
            "max_discount",
            "threshold",
            "valid_days",
            "valid_from",
            "valid_until",
            "stores",
            "categories",
            "total_quantity",
            "issued_count",
            "per_member_limit",
            "stackable_with_points",
            "issue_on",
            "reward_code",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["created_at"]


class CouponIssueInputSerializer(serializers.Serializer):
    members = serializers.ListField(
        child=IdField(),
        min_length=1,
        max_length=MAX_MEMBERS_PER_ISSUE,
        required=False,
        help_text="member ids, each once: issued now (201)",
    )
    tag = serializers.SlugField(max_length=50, required=False, help_text="a tag's code: its members, as a job (202)")
    segment = serializers.ChoiceField(
        choices=Segment.choices, required=False, help_text="an RFM segment's members, as a job (202)"
    )

    file = serializers.FileField(
        required=False,
        help_text="multipart/form-data: a CSV of members whose header names one key column (member_no, phone or "
        "external_id), as a job (202); its rejected lines in the batch's rejects file",
    )

    def validate_members(self, members):
        if len(set(members)) != len(members):
            raise serializers.ValidationError(_("List each member once."))
        return members

    def validate(self, attrs):
        given = [name for name in ("members", "tag", "segment", "file") if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError({"members": [_("Send exactly one of members, tag, segment and file.")]})
        return attrs


class CouponBatchSerializer(serializers.Serializer):
    id = serializers.CharField()
    template = serializers.CharField()
    target = serializers.DictField(child=serializers.CharField(allow_null=True))
    status = serializers.ChoiceField(choices=BatchStatus.choices)
    issued = serializers.IntegerField()
    skipped_over_limit = serializers.IntegerField()
    skipped_over_quantity = serializers.IntegerField()
    rejected = serializers.IntegerField(help_text="an uploaded list's lines that issued nothing (all reasons)")
    rejects = serializers.CharField(
        allow_null=True, help_text="an uploaded list's rejects file (CSV: line, key, reason); null for a tag or segment"
    )
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class IssuedCouponSerializer(serializers.Serializer):
    member = serializers.CharField()
    code = serializers.CharField()


class CouponIssueResultSerializer(serializers.Serializer):
    issued = IssuedCouponSerializer(many=True)


class CouponSerializer(serializers.Serializer):
    """A coupon as the wallet shows it."""

    code = serializers.CharField()
    template = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=CouponKind.choices)
    member = serializers.CharField()
    status = serializers.ChoiceField(
        choices=CouponStatus.choices, help_text="an unused coupon past valid_until shows expired"
    )
    valid_from = serializers.DateField()
    valid_until = serializers.DateField()
    stackable_with_points = serializers.BooleanField()
    source = serializers.ChoiceField(choices=CouponSource.choices)
    issued_at = serializers.DateTimeField()
    used_at = serializers.DateTimeField(allow_null=True)
    order_no = serializers.CharField(allow_null=True)
    discount = serializers.CharField(allow_null=True)
    store = serializers.CharField(allow_null=True)


def store_field():
    return serializers.SlugRelatedField(
        slug_field="code",
        queryset=Store.objects.filter(is_active=True),
        required=False,
        allow_null=True,
        help_text="store code; a caller bound to one store may leave it out",
    )


class CouponCheckInputSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=40, help_text="as typed or scanned; case, spaces and dashes do not count")
    store = store_field()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, help_text="the order amount")
    member = IdField(required=False, help_text="the member at the counter: a coupon of another is not_owner")
    categories = serializers.ListField(
        child=serializers.CharField(max_length=60),
        max_length=200,
        required=False,
        help_text="the order's product categories; without them the template's categories are not checked",
    )
    points_used = serializers.IntegerField(
        min_value=0,
        max_value=10**12,
        required=False,
        default=0,
        help_text="points the order uses as cash: a coupon not stackable with points is refused "
        "(not_stackable_with_points) when more than 0 (at redeem, points already deducted on the order count too)",
    )


class CouponRedeemInputSerializer(CouponCheckInputSerializer):
    order_no = serializers.CharField(max_length=64)


class CouponCheckResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    reason = serializers.ChoiceField(choices=REASONS, required=False, help_text="only when not valid")
    discount = serializers.CharField(help_text="decimal string; 0.00 when not valid")
    code = serializers.CharField()
    template = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=CouponKind.choices)
    member = serializers.CharField()
    valid_from = serializers.DateField()
    valid_until = serializers.DateField()
    stackable_with_points = serializers.BooleanField()


class CouponRedeemResultSerializer(serializers.Serializer):
    code = serializers.CharField()
    order_no = serializers.CharField()
    discount = serializers.CharField()
    status = serializers.ChoiceField(choices=[CouponStatus.USED])
    member = serializers.CharField()
    template = serializers.CharField()
    store = serializers.CharField(allow_null=True)
    amount = serializers.CharField()
    used_at = serializers.DateTimeField()
