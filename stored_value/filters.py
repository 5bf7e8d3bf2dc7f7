import django_filters

from stored_value.models import EntryKind, StoredValueEntry, TopUpRule


class EntryFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=EntryKind.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = StoredValueEntry
        fields = []


class TopUpRuleFilter(django_filters.FilterSet):
    store = django_filters.CharFilter(field_name="store__code", help_text="store code")

    class Meta:
        model = TopUpRule
        fields = ["is_active"]
