"""The platform's API shapes: staff login and job runs."""

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from loyalty.models import JobRun


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
