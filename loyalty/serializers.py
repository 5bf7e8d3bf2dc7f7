"""The platform's API shapes: staff login, job runs, webhook subscriptions and their deliveries."""

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from loyalty.events import known_patterns
from loyalty.models import JobRun, WebhookDelivery, WebhookSubscription


class StaffLoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class StaffTokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    user = inline_serializer(
        "StaffIdentity",
        {
            "username": serializers.CharField(),
            "role": serializers.CharField(),
            "stores": serializers.ListField(child=serializers.CharField()),
        },
    )


class JobRunSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)

    class Meta:
        model = JobRun
        fields = [
            "id",
            "job",
            "business_date",
            "status",
            "counts",
            "chunks_total",
            "chunks_done",
            "error",
            "params",
            "triggered_by",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    """API.md: `{id, url, events, secret (write-only), is_active}`. The secret is shown once, in the answer to the
    creation (WebhookCreatedSerializer); left out, one is made."""

    id = serializers.CharField(read_only=True)
    url = serializers.URLField(max_length=500, help_text="https, to a public address (development: http, loopback).")
    events = serializers.ListField(
        child=serializers.CharField(max_length=60),
        min_length=1,
        max_length=50,
        help_text=f"Event types, `prefix.*` or `*`: {', '.join(known_patterns())}.",
    )
    secret = serializers.CharField(
        write_only=True,
        required=False,
        min_length=16,
        max_length=100,
        trim_whitespace=False,
        help_text="The HMAC-SHA256 key of the Loyalty-Signature header (16 to 100 characters); made when left out.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ["id", "url", "events", "secret", "is_active", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class WebhookCreatedSerializer(WebhookSubscriptionSerializer):
    """The answer to a creation: the subscription with its secret, this once."""

    secret = serializers.CharField(read_only=True)


class WebhookEventSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookDeliverySerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    subscription = serializers.CharField(source="subscription_id", read_only=True)
    event = WebhookEventSerializer(read_only=True)
    member = serializers.CharField(source="member_id", read_only=True, allow_null=True)
    response_status = serializers.IntegerField(
        source="last_status_code", read_only=True, allow_null=True, help_text="The last attempt's HTTP status."
    )
    latency_ms = serializers.IntegerField(source="last_latency_ms", read_only=True, allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "subscription",
            "event",
            "member",
            "status",
            "attempts",
            "response_status",
            "latency_ms",
            "last_error",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
            "resends",
            "created_at",
        ]
        read_only_fields = fields
