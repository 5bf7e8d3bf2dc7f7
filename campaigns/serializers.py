"""The campaign's shape (API.md "Shapes fixed for clients"). The serializers check the input's shape only; the
rules (codes that exist, a kind's fields, weights that sum, terms of a running campaign) are
campaigns.services.configuration's."""

from django.utils import timezone
from django.utils.translation import gettext
from rest_framework import serializers

from campaigns.models import Campaign, CampaignKind, CampaignStatus, CapPeriod, Stacking

CODE_LIST = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)


class TargetSerializer(serializers.Serializer):
    tiers = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)
    segments = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)
    lifecycle = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)
    stores = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)
    channels = serializers.ListField(child=serializers.CharField(max_length=60), max_length=500, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    gettext("Unknown target keys: %(unknown)s.") % {"unknown": ", ".join(sorted(unknown))}
                )
        return super().to_internal_value(data)


class VariantSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=30)
    weight = serializers.IntegerField(min_value=1, max_value=100)
    multiplier = serializers.DecimalField(max_digits=6, decimal_places=2, required=False, allow_null=True)
    bonus_points = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, allow_null=True)


class CampaignSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    status = serializers.SerializerMethodField()
    kind = serializers.ChoiceField(choices=CampaignKind.choices)
    stacking = serializers.ChoiceField(choices=Stacking.choices, required=False)
    multiplier = serializers.DecimalField(max_digits=6, decimal_places=2, required=False, allow_null=True)
    bonus_points = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, allow_null=True)
    trigger = serializers.DictField(required=False)
    conditions = serializers.DictField(required=False)
    target = TargetSerializer(required=False)
    budget_points = serializers.IntegerField(min_value=1, max_value=2_000_000_000, required=False, allow_null=True)
    per_member_cap = serializers.IntegerField(min_value=1, max_value=100_000_000, required=False, allow_null=True)
    per_member_period_cap = serializers.IntegerField(
        min_value=1, max_value=100_000_000, required=False, allow_null=True
    )
    cap_period = serializers.ChoiceField(choices=[("", "none"), *CapPeriod.choices], required=False, allow_blank=True)
    holdout_percent = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=99, required=False
    )
    priority = serializers.IntegerField(min_value=-1000, max_value=1000, required=False)
    variants = VariantSerializer(many=True, required=False, max_length=20)
    copied_from = serializers.CharField(source="copied_from_id", read_only=True, allow_null=True)
    coupon_template = serializers.RegexField(
        r"^[0-9]{1,18}$",
        source="coupon_template_id",
        required=False,
        allow_null=True,
        help_text="A coupon template's id: each award also issues the member one coupon of it (while the template's "
        "quantity and per-member limit allow; otherwise the points still award and the coupon is skipped). With a "
        "template, bonus_points and multiplier may stay empty: a coupon-only campaign.",
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "status",
            "starts_at",
            "ends_at",
            "priority",
            "stacking",
            "multiplier",
            "bonus_points",
            "trigger",
            "conditions",
            "target",
            "budget_points",
            "budget_used",
            "per_member_cap",
            "per_member_period_cap",
            "cap_period",
            "variants",
            "holdout_percent",
            "copied_from",
            "created_by",
            "created_at",
            "activated_at",
            "budget_exhausted_at",
            "coupon_template",
        ]
        read_only_fields = ["id", "budget_used", "created_by", "created_at", "activated_at", "budget_exhausted_at"]

    def get_status(self, campaign) -> str:
        return campaign.status_at(timezone.now())

    def to_representation(self, campaign):
        data = super().to_representation(campaign)
        target = campaign.target or {}
        data["target"] = {key: list(target.get(key) or []) for key in TargetSerializer().fields}
        data["variants"] = [
            {
                "code": v.code,
                "weight": v.weight,
                "multiplier": f"{v.multiplier:.2f}" if v.multiplier is not None else None,
                "bonus_points": v.bonus_points,
            }
            for v in campaign.variants.all()
        ]
        return data


class CampaignStatusSerializer(serializers.Serializer):
    """What activate, pause and end answer: the campaign."""

    status = serializers.ChoiceField(choices=CampaignStatus.choices)


class ResultGroupSerializer(serializers.Serializer):
    group = serializers.CharField()
    members = serializers.IntegerField()
    participants = serializers.IntegerField()
    purchases = serializers.IntegerField()
    revenue = serializers.CharField()
    points_cost = serializers.IntegerField()
    repurchase_rate = serializers.FloatField()
    revenue_per_member = serializers.CharField()


class LiftSerializer(serializers.Serializer):
    group = serializers.CharField()
    metric = serializers.ChoiceField(choices=["repurchase_rate", "revenue_per_member"])
    estimate = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)


class PointsPerExtraRevenueSerializer(serializers.Serializer):
    group = serializers.CharField()
    extra_revenue = serializers.CharField(allow_null=True, help_text="decimal string; null: the holdout is empty")
    points_per_extra_revenue = serializers.FloatField(allow_null=True, help_text="null when extra_revenue ≤ 0")


class CampaignResultsSerializer(serializers.Serializer):
    campaign_id = serializers.CharField()
    to = serializers.DateField()
    groups = ResultGroupSerializer(many=True)
    lift = LiftSerializer(many=True)
    points_per_extra_revenue = PointsPerExtraRevenueSerializer(many=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields
