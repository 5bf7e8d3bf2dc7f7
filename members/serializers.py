"""HTTP shapes of members, tags, stores, messages and logins. Validation of input only; no business rules."""

from datetime import date

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from loyalty.models import Message
from members.extensions import represent_member_field
from members.models import Channel, Gender, Member, Store, Tag, TagKind
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from members.tag_rules import InvalidRule, validate_rule


class PhoneField(serializers.CharField):
    """A phone number in any common form, given back normalised to E.164."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            return normalise_phone(text)
        except InvalidPhoneNumber as error:
            raise serializers.ValidationError(str(error)) from None


class BirthdayField(serializers.DateField):
    def to_internal_value(self, value):
        birthday = super().to_internal_value(value)
        if birthday > timezone.localdate() or birthday < date(1900, 1, 1):
            raise serializers.ValidationError(_("Enter a birthday between 1900-01-01 and today."))
        return birthday


class StrictBooleanField(serializers.BooleanField):
    """true or false only: "yes", 1 and "on" are not consents."""

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        raise serializers.ValidationError(_("Must be true or false."))


class ConsentsSerializer(serializers.Serializer):
    sms = StrictBooleanField(required=False)
    wechat = StrictBooleanField(required=False)
    email = StrictBooleanField(required=False)


class TierSummarySerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class MemberPointsBriefSerializer(serializers.Serializer):
    available = serializers.IntegerField()
    pending = serializers.IntegerField()


class RfmSerializer(serializers.Serializer):
    as_of = serializers.DateField()
    recency_days = serializers.IntegerField(allow_null=True)
    frequency = serializers.IntegerField()
    monetary = serializers.DecimalField(max_digits=14, decimal_places=2)
    r_score = serializers.IntegerField(allow_null=True)
    f_score = serializers.IntegerField(allow_null=True)
    m_score = serializers.IntegerField(allow_null=True)
    segment = serializers.CharField()
    lifecycle = serializers.CharField()


class MemberSerializer(serializers.ModelSerializer):
    """The member representation of API.md. Tier, points, growth value and RFM come from their own apps
    (members.extensions); each is its empty value until that app is installed and has data."""

    id = serializers.CharField(read_only=True)
    store = serializers.SlugRelatedField(
        source="home_store", slug_field="code", read_only=True, allow_null=True, help_text="home store, or null"
    )
    email = serializers.CharField(read_only=True, help_text='an email address, or "" when she gave none')
    referrer = serializers.CharField(source="referrer_id", read_only=True, allow_null=True)
    merged_into = serializers.CharField(
        source="merged_into_id",
        read_only=True,
        allow_null=True,
        help_text="status merged: the member she was merged into (use that one)",
    )
    consents = ConsentsSerializer(read_only=True)
    tags = serializers.SerializerMethodField()
    tier = serializers.SerializerMethodField()
    points = serializers.SerializerMethodField()
    growth_value = serializers.SerializerMethodField()
    rfm = serializers.SerializerMethodField()

    class Meta:
        model = Member
        fields = [
            "id",
            "member_no",
            "phone",
            "external_id",
            "name",
            "gender",
            "birthday",
            "email",
            "status",
            "store",
            "channel",
            "joined_at",
            "referral_code",
            "referrer",
            "merged_into",
            "consents",
            "tier",
            "points",
            "growth_value",
            "tags",
            "rfm",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_tags(self, member):
        return sorted(tag.code for tag in member.tags.all())

    @extend_schema_field(TierSummarySerializer(allow_null=True))
    def get_tier(self, member):
        return represent_member_field("tier", member)

    @extend_schema_field(MemberPointsBriefSerializer)
    def get_points(self, member):
        return represent_member_field("points", member)

    @extend_schema_field(OpenApiTypes.INT)
    def get_growth_value(self, member):
        return represent_member_field("growth_value", member)

    @extend_schema_field(RfmSerializer(allow_null=True))
    def get_rfm(self, member):
        return represent_member_field("rfm", member)


class MemberRegistrationSerializer(serializers.Serializer):
    phone = PhoneField(required=False, allow_null=True)
    external_id = serializers.CharField(required=False, allow_null=True, max_length=64)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
    gender = serializers.ChoiceField(choices=Gender.choices, required=False, default=Gender.UNKNOWN)
    birthday = BirthdayField(required=False, allow_null=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    store = serializers.SlugRelatedField(
        slug_field="code", queryset=Store.objects.filter(is_active=True), required=False, allow_null=True
    )
    channel = serializers.ChoiceField(
        choices=[c for c in Channel.choices if c[0] != Channel.IMPORT], required=False, default=Channel.STORE
    )
    referral_code = serializers.CharField(required=False, allow_blank=True, max_length=12)
    consents = ConsentsSerializer(required=False)

    def validate(self, attrs):
        if not attrs.get("phone") and not attrs.get("external_id"):
            raise serializers.ValidationError({"phone": [_("Give a phone or an external_id (at least one).")]})
        return attrs


class MemberUpdateSerializer(serializers.Serializer):
    """PATCH by staff and client apps."""

    phone = PhoneField(required=False, allow_null=True)
    external_id = serializers.CharField(required=False, allow_null=True, max_length=64)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    gender = serializers.ChoiceField(choices=Gender.choices, required=False)
    birthday = BirthdayField(required=False, allow_null=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    store = serializers.SlugRelatedField(
        slug_field="code", queryset=Store.objects.filter(is_active=True), required=False, source="home_store"
    )
    consents = ConsentsSerializer(required=False)


class ProfileUpdateSerializer(serializers.Serializer):
    """PATCH /me/ by the member herself: the phone is her login (changed only by staff), and a birthday once set
    is fixed (it drives the birthday bonus)."""

    name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    gender = serializers.ChoiceField(choices=Gender.choices, required=False)
    birthday = BirthdayField(required=False)
    email = serializers.EmailField(required=False, allow_blank=True)
    consents = ConsentsSerializer(required=False)

    def validate_birthday(self, value):
        member = self.context["member"]
        if member.birthday and member.birthday != value:
            raise serializers.ValidationError(_("Your birthday is already set; ask a store to correct it."))
        return value


class MemberTagInputSerializer(serializers.Serializer):
    tag = serializers.SlugRelatedField(slug_field="code", queryset=Tag.objects.filter(is_active=True))


class MemberStatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200)


class MemberMergeInputSerializer(serializers.Serializer):
    duplicate = serializers.RegexField(
        r"^[0-9]{1,18}$", help_text="id of the member merged away (closed)", error_messages={"invalid": "A member id."}
    )
    reason = serializers.CharField(max_length=200)


class MergedPointsSerializer(serializers.Serializer):
    available = serializers.IntegerField(help_text="the duplicate's available balance (negative: debt) moved")
    pending = serializers.IntegerField()
    lots = serializers.IntegerField(help_text="open lots moved with their own available and expiry dates")
    lifetime_earned = serializers.IntegerField()
    lifetime_spent = serializers.IntegerField()
    lifetime_expired = serializers.IntegerField()
    redemptions = serializers.IntegerField()
    deductions = serializers.IntegerField()
    adjustment_requests = serializers.IntegerField(help_text="adjustments still waiting for approval")


class MergedGrowthSerializer(serializers.Serializer):
    entries = serializers.IntegerField(help_text="growth entries mirrored onto the survivor, with their dates")
    value = serializers.IntegerField(help_text="their total")
    window_growth = serializers.IntegerField(help_text="the survivor's growth in the window after the merge")


class TierChangeBriefSerializer(serializers.Serializer):
    to = serializers.CharField()
    reason = serializers.CharField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.CharField(allow_null=True)  # a Python keyword
        return fields


class MergedSerializer(serializers.Serializer):
    points = MergedPointsSerializer(required=False, help_text="when the points app is installed")
    growth = MergedGrowthSerializer(required=False, help_text="when the tiers app is installed")
    tier = TierChangeBriefSerializer(
        required=False, allow_null=True, help_text="the survivor's tier change (reason merge), or null"
    )
    purchases = serializers.IntegerField()
    tags = serializers.ListField(child=serializers.CharField(), help_text="tags the survivor gained")
    referrals = serializers.IntegerField(help_text="members the duplicate had referred, now the survivor's")
    identifiers = serializers.ListField(
        child=serializers.CharField(), help_text="phone / external_id handed to the survivor (she had none)"
    )
    profile = serializers.ListField(
        child=serializers.CharField(), help_text="profile fields the survivor took from the duplicate (hers were empty)"
    )
    household = serializers.CharField(
        allow_null=True, help_text="the duplicate's household the survivor joined (she had none)"
    )


class MemberMergeResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    survivor = serializers.CharField()
    duplicate = serializers.CharField()
    reason = serializers.CharField()
    actor = serializers.CharField()
    created_at = serializers.DateTimeField()
    moved = MergedSerializer()


class TagSerializer(serializers.ModelSerializer):
    """Manual tags, and rule tags whose `rule` (members.tag_rules) the nightly job applies."""

    id = serializers.CharField(read_only=True)
    kind = serializers.ChoiceField(choices=TagKind.choices, default=TagKind.MANUAL)
    member_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Tag
        fields = ["id", "code", "name", "kind", "rule", "description", "is_active", "created_at", "member_count"]
        read_only_fields = ["id", "created_at", "member_count"]

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", TagKind.MANUAL))
        rule = attrs.get("rule", getattr(self.instance, "rule", None))
        if self.instance is not None and "kind" in attrs and attrs["kind"] != self.instance.kind:
            raise serializers.ValidationError({"kind": [_("A tag's kind cannot change; make a new tag.")]})
        if kind == TagKind.MANUAL and rule:
            raise serializers.ValidationError({"rule": [_("Manual tags have no rule.")]})
        if kind == TagKind.RULE:
            try:
                validate_rule(rule)
            except InvalidRule as error:
                raise serializers.ValidationError({"rule": [str(error)]}) from None
        return attrs


class StoreSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)

    class Meta:
        model = Store
        fields = ["id", "code", "name", "city", "is_active"]
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    member = serializers.CharField(source="member_id", read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "member",
            "recipient",
            "channel",
            "kind",
            "subject",
            "body",
            "status",
            "status_reason",
            "dedupe_key",
            "attempts",
            "created_at",
            "send_after",
            "sent_at",
            "read_at",
        ]
        read_only_fields = fields


class InboxMessageSerializer(serializers.ModelSerializer):
    id = serializers.CharField(read_only=True)
    read = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "kind", "subject", "body", "created_at", "read", "read_at"]
        read_only_fields = fields

    def get_read(self, message) -> bool:
        return message.read_at is not None


class WechatIdentitySerializer(serializers.Serializer):
    """A member's WeChat identity: her openid in an official account or mini-program (app_id), her unionid."""

    app_id = serializers.CharField(max_length=32)
    openid = serializers.CharField(max_length=64)
    unionid = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    created_at = serializers.DateTimeField(read_only=True)


class OtpRequestSerializer(serializers.Serializer):
    phone = PhoneField()


class OtpSentSerializer(serializers.Serializer):
    sent = serializers.BooleanField()
    expires_in = serializers.IntegerField(help_text="seconds")
    retry_after = serializers.IntegerField(help_text="seconds before another code may be asked for")


class MemberLoginSerializer(serializers.Serializer):
    phone = PhoneField()
    code = serializers.RegexField(r"^\d{6}$", error_messages={"invalid": "Enter the 6-digit code."})


class MemberTokensSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    created = serializers.BooleanField(help_text="true when this login registered the member")
    member = MemberSerializer()


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField(help_text="the next refresh token: the one sent is used up")
