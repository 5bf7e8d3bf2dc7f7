import django_filters
from django.db.models import Q

from campaigns.models_coupons import Coupon, CouponStatus
from loyalty.clock import business_date


class CouponFilter(django_filters.FilterSet):
    """`status` as the wallet shows it: an unused coupon past its last day is expired before the nightly job
    marks it."""

    status = django_filters.ChoiceFilter(choices=CouponStatus.choices, method="filter_status")

    class Meta:
        model = Coupon
        fields = []

    def filter_status(self, queryset, name, value):
        today = business_date()
        if value == CouponStatus.UNUSED:
            return queryset.filter(status=CouponStatus.UNUSED, valid_until__gte=today)
        if value == CouponStatus.EXPIRED:
            return queryset.filter(
                Q(status=CouponStatus.EXPIRED) | Q(status=CouponStatus.UNUSED, valid_until__lt=today)
            )
        return queryset.filter(status=value)
