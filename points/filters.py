import django_filters
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from points.models import EntryKind, LedgerEntry, Reward


class LedgerFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=EntryKind.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = LedgerEntry
        fields = []


class RewardFilter(django_filters.FilterSet):
    tier = django_filters.CharFilter(method="filter_tier", help_text="rewards this tier code may redeem")
    available = django_filters.BooleanFilter(
        method="filter_available", help_text="active, within validity and in stock now"
    )
    kind = django_filters.CharFilter()

    class Meta:
        model = Reward
        fields = []

    def filter_tier(self, queryset, name, value):
        if connection.vendor == "postgresql":
            return queryset.filter(Q(eligible_tiers=[]) | Q(eligible_tiers__contains=[value]))
        # SQLite has no JSON containment: keep the rewards whose list holds the code (few rows: the catalogue).
        ids = [
            reward.pk
            for reward in queryset.only("pk", "eligible_tiers")
            if not reward.eligible_tiers or value in reward.eligible_tiers
        ]
        return queryset.filter(pk__in=ids)

    def filter_available(self, queryset, name, value):
        now = timezone.now()
        condition = (
            Q(is_active=True)
            & (Q(valid_from__isnull=True) | Q(valid_from__lte=now))
            & (Q(valid_until__isnull=True) | Q(valid_until__gt=now))
            & (Q(stock__isnull=True) | Q(stock__gt=0))
        )
        return queryset.filter(condition) if value else queryset.exclude(condition)
