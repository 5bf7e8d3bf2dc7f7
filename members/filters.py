import contextlib

import django_filters
from django.db.models import Q
from django.utils.translation import gettext
from rest_framework.exceptions import ValidationError

from loyalty.models import Message, MessageStatus
from members.extensions import filter_members_by
from members.models import Member, MemberStatus, WechatIdentity
from members.phone_numbers import InvalidPhoneNumber, normalise_phone


def _phone_or_400(value, field):
    try:
        return normalise_phone(value)
    except InvalidPhoneNumber:
        raise ValidationError({field: [gettext("Enter a valid phone number.")]}) from None


def found_as(queryset, condition):
    """Members matching `condition`, where a merged duplicate that matches counts as her survivor (her phone, card
    number and external id lead to the member she was merged into)."""
    merged = Member.objects.filter(condition, merged_into__isnull=False).values("merged_into_id")
    return queryset.filter(condition | Q(pk__in=merged))


class MemberFilter(django_filters.FilterSet):
    phone = django_filters.CharFilter(method="filter_phone")
    external_id = django_filters.CharFilter(method="filter_identifier")
    member_no = django_filters.CharFilter(method="filter_identifier")
    status = django_filters.ChoiceFilter(choices=MemberStatus.choices)
    store = django_filters.CharFilter(field_name="home_store__code")
    tag = django_filters.CharFilter(method="filter_tag")
    tier = django_filters.CharFilter(method="filter_extension", help_text="tier code")
    segment = django_filters.CharFilter(method="filter_extension", help_text="RFM segment")
    lifecycle = django_filters.CharFilter(method="filter_extension", help_text="lifecycle stage")
    joined_after = django_filters.IsoDateTimeFilter(field_name="joined_at", lookup_expr="gte")
    joined_before = django_filters.IsoDateTimeFilter(field_name="joined_at", lookup_expr="lt")
    q = django_filters.CharFilter(method="search", help_text="name, phone or card number")
    wechat_openid = django_filters.CharFilter(
        method="filter_wechat_openid", help_text="a WeChat openid (with wechat_app_id: in that app)"
    )
    wechat_app_id = django_filters.CharFilter(method="filter_nothing", help_text="the app of wechat_openid")
    unionid = django_filters.CharFilter(method="filter_unionid", help_text="a WeChat unionid")

    class Meta:
        model = Member
        fields = []

    def filter_phone(self, queryset, name, value):
        return found_as(queryset, Q(phone=_phone_or_400(value, "phone")))

    def filter_identifier(self, queryset, name, value):
        return found_as(queryset, Q(**{name: value}))

    def filter_tag(self, queryset, name, value):
        return queryset.filter(member_tags__tag__code=value)

    def filter_extension(self, queryset, name, value):
        return filter_members_by(name, queryset, value)

    def filter_wechat_openid(self, queryset, name, value):
        identities = WechatIdentity.objects.filter(openid=value)
        app_id = self.data.get("wechat_app_id")
        if app_id:
            identities = identities.filter(app_id=app_id)
        return queryset.filter(pk__in=identities.values("member_id"))

    def filter_nothing(self, queryset, name, value):
        return queryset  # read by filter_wechat_openid

    def filter_unionid(self, queryset, name, value):
        return queryset.filter(pk__in=WechatIdentity.objects.filter(unionid=value).values("member_id"))

    def search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        digits = value.lstrip("+").replace(" ", "").replace("-", "")
        if digits.isdigit():
            condition = Q(member_no=digits) | Q(phone__endswith=digits)
            with contextlib.suppress(InvalidPhoneNumber):
                condition |= Q(phone=normalise_phone(value))
            return found_as(queryset, condition)
        return queryset.filter(name__icontains=value)


class MessageFilter(django_filters.FilterSet):
    recipient = django_filters.CharFilter(method="filter_recipient", help_text="phone or member id")
    kind = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=MessageStatus.choices)
    channel = django_filters.CharFilter()

    class Meta:
        model = Message
        fields = []

    def filter_recipient(self, queryset, name, value):
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) <= 18:
            condition = Q(member_id=int(value))
            with contextlib.suppress(InvalidPhoneNumber):
                condition |= Q(recipient=normalise_phone(value))
            return queryset.filter(condition)
        try:
            return queryset.filter(recipient=normalise_phone(value))
        except InvalidPhoneNumber:
            return queryset.filter(recipient=value)
