from rest_framework import serializers


class TierSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    rank = serializers.IntegerField()
    entry_threshold = serializers.IntegerField()
    retention_threshold = serializers.IntegerField()
    hold_days = serializers.IntegerField()
    points_multiplier = serializers.CharField()
    birthday_bonus = serializers.IntegerField()
    discount_rate = serializers.CharField()
    free_shipping = serializers.BooleanField()
    benefits = serializers.CharField()


class TierChangeSerializer(serializers.Serializer):
    source_tier = serializers.CharField(allow_null=True)
    to = serializers.CharField()
    reason = serializers.CharField()
    at = serializers.DateTimeField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("source_tier")  # "from" is a Python keyword
        return fields


class MemberStandingSerializer(serializers.Serializer):
    tier = TierSerializer(allow_null=True)
    growth_value = serializers.IntegerField()
    next_tier = TierSerializer(allow_null=True)
    to_next = serializers.IntegerField(allow_null=True)
    hold_until = serializers.DateField(allow_null=True)
    history = TierChangeSerializer(many=True)
