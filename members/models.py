"""Members, stores, tags and the identities that act on them (staff users, client apps, member logins).

Tables, constraints and small properties only; every write the business knows by name is in services.py.
"""

import json

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _


class Store(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=100)
    city = models.CharField(_("city"), max_length=60, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("store")
        verbose_name_plural = _("stores")

    def __str__(self):
        return f"{self.name} ({self.code})"


class StaffUser(AbstractUser):
    """A person working in the admin or through a staff token: clerk, marketer or admin (by group).

    A clerk acts for the stores listed here only; marketers and admins see every store.
    """

    stores = models.ManyToManyField(Store, blank=True, related_name="staff", verbose_name=_("stores"))

    class Meta:
        verbose_name = _("staff user")
        verbose_name_plural = _("staff users")


class Gender(models.TextChoices):
    MALE = "male", _("male")
    FEMALE = "female", _("female")
    UNKNOWN = "unknown", _("unknown")


class Channel(models.TextChoices):
    STORE = "store", _("store")
    MINI_PROGRAM = "mini_program", _("mini-program")
    APP = "app", _("app")
    WEB = "web", _("web")
    IMPORT = "import", _("import")


class Household(models.Model):
    """Members of one family, linked by staff: points may move between them when the points policy allows it
    (SPEC §5). A member belongs to at most one household."""

    name = models.CharField(_("name"), max_length=100, blank=True)
    created_by = models.CharField(_("created by"), max_length=120, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("household")
        verbose_name_plural = _("households")

    def __str__(self):
        return self.name or f"household {self.pk}"


class MemberStatus(models.TextChoices):
    ACTIVE = "active", _("active")
    FROZEN = "frozen", _("frozen")
    ANONYMISED = "anonymised", _("anonymised")
    MERGED = "merged", _("merged into another member")


class Member(models.Model):
    member_no = models.CharField(_("card number"), max_length=20, unique=True, editable=False)
    phone = models.CharField(
        _("phone"), max_length=20, null=True, blank=True, unique=True, help_text=_("E.164, e.g. +8613800138000")
    )
    external_id = models.CharField(_("external id"), max_length=64, null=True, blank=True, unique=True)
    name = models.CharField(_("name"), max_length=100, blank=True)
    gender = models.CharField(_("gender"), max_length=8, choices=Gender.choices, default=Gender.UNKNOWN)
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    email = models.EmailField(_("email"), blank=True)
    home_store = models.ForeignKey(
        Store, models.PROTECT, null=True, blank=True, related_name="members", verbose_name=_("home store")
    )
    channel = models.CharField(_("registration channel"), max_length=16, choices=Channel.choices, default=Channel.STORE)
    referral_code = models.CharField(_("referral code"), max_length=12, unique=True, editable=False)
    referrer = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="referrals", verbose_name=_("referred by")
    )
    consent_sms = models.BooleanField(_("SMS consent"), default=False)
    consent_wechat = models.BooleanField(_("WeChat consent"), default=False)
    consent_email = models.BooleanField(_("email consent"), default=False)
    status = models.CharField(_("status"), max_length=12, choices=MemberStatus.choices, default=MemberStatus.ACTIVE)
    merged_into = models.ForeignKey(
        "self",
        models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_members",
        editable=False,
        verbose_name=_("merged into"),
        help_text=_("A duplicate closed by a merge: the member she now is (always the current survivor)."),
    )
    joined_at = models.DateTimeField(_("joined at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    tags = models.ManyToManyField(
        "Tag", through="MemberTag", related_name="members", blank=True, verbose_name=_("tags")
    )
    # Indexed only where set (most members have no household): see Meta.indexes.
    household = models.ForeignKey(
        Household,
        models.PROTECT,
        null=True,
        blank=True,
        related_name="members",
        db_index=False,
        verbose_name=_("household"),
    )
    token_version = models.PositiveIntegerField(
        _("token version"),
        default=0,
        db_default=0,  # rows inserted in SQL (the members import, the benchmarks' data) start at 0 too
        editable=False,
        help_text=_(
            "Carried in her member tokens: a freeze, an anonymisation, a merge or a phone change bumps it, and every "
            "token issued before is refused."
        ),
    )

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")
        indexes = [
            models.Index(fields=["home_store", "id"], name="member_store_idx"),
            models.Index(fields=["joined_at"], name="member_joined_idx"),
            models.Index(fields=["household"], name="member_household_idx", condition=Q(household__isnull=False)),
        ]
        constraints = [
            # A merged duplicate may have handed both to her survivor; lookups by her card number still work.
            models.CheckConstraint(
                condition=Q(phone__isnull=False)
                | Q(external_id__isnull=False)
                | Q(status__in=["anonymised", "merged"]),
                name="member_has_phone_or_external_id",
            ),
            models.CheckConstraint(
                condition=~Q(status="merged") | Q(merged_into__isnull=False), name="member_merged_has_survivor"
            ),
        ]

    def __str__(self):
        return f"{self.member_no} {self.name}".strip()

    @property
    def consents(self):
        return {"sms": self.consent_sms, "wechat": self.consent_wechat, "email": self.consent_email}

    @property
    def is_frozen(self):
        return self.status == MemberStatus.FROZEN

    def surviving_member(self):
        """The member this one now is: herself, or the survivor she was merged into (one hop: a merge moves the
        pointers of members merged into the duplicate earlier on to the new survivor)."""
        return self.merged_into if self.merged_into_id else self


class WechatIdentity(models.Model):
    """One of a member's WeChat identities (SPEC §1): her openid in one official account or mini-program (`app_id`),
    and her unionid across the merchant's apps when WeChat gives one. A client finds a member by either; the
    wechat message channel reaches her through her openid in the account that sends template messages
    (WECHAT_APP_ID). An openid belongs to one member; a merge moves them to the survivor, an erasure deletes them."""

    member = models.ForeignKey(Member, models.CASCADE, related_name="wechat_identities", verbose_name=_("member"))
    app_id = models.CharField(
        _("app id"), max_length=32, help_text=_("The official account's or mini-program's appid.")
    )
    openid = models.CharField(_("openid"), max_length=64)
    unionid = models.CharField(_("unionid"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("added at"), default=timezone.now)

    class Meta:
        verbose_name = _("WeChat identity")
        verbose_name_plural = _("WeChat identities")
        constraints = [models.UniqueConstraint(fields=["app_id", "openid"], name="wechat_identity_unique")]
        indexes = [
            models.Index(fields=["unionid"], name="wechat_unionid_idx", condition=~Q(unionid="")),
            models.Index(fields=["member", "app_id"], name="wechat_member_app_idx"),
            # The admin search and ?wechat_openid= without an app id find a member by her openid in any app.
            models.Index(fields=["openid"], name="wechat_openid_idx"),
        ]

    def __str__(self):
        return f"{self.app_id}:{self.openid}"


class ErasedIdentityKind(models.TextChoices):
    PHONE = "phone", _("phone")
    EXTERNAL_ID = "external_id", _("external id")


class ErasedIdentity(models.Model):
    """A phone or external id erased on the member's request, kept as a keyed one-way hash so that importing an
    old file again (import_members, import_purchases --create-members) does not bring her back. Written by
    `anonymise_member` in its transaction; read by the imports; nothing else. A person who registers again herself
    is not refused (see `anonymise_member`).

    Why keyed (HMAC-SHA256), not a plain hash: phone numbers are a small space. China's mobile numbers are fewer
    than 10^10 (11 digits, starting 13 to 19); one GPU computes SHA-256 of all of them in seconds, so a plain hash
    of a phone is the phone. With a secret key, the table alone gives nothing away: to test a guess one needs the
    key too. The key is dedicated: derived from SECRET_KEY for this purpose only
    (`membership.erasure_keys`), so a digest is of no use as a signature anywhere else, and nothing else signed
    with SECRET_KEY is such a digest. The kind is part of the hashed message, so a phone and an external id
    never share a digest.

    Key rotation: the plain values are gone, so digests cannot be computed again under a new key. Rotate
    SECRET_KEY the Django way, keeping the former one in SECRET_KEY_FALLBACKS as long as old files may still be
    imported: the imports test each row against the digests under every configured key; new erasures are hashed
    under the current one. `key_id` (a fingerprint of the key, not the key) says which key a row was written
    under; an import refuses to start while rows exist under a key that is no longer configured, rather than
    silently letting those members come back.

    Nothing else is kept (no member, no date), so a row says no more than "someone erased had this identifier".
    """

    kind = models.CharField(_("kind"), max_length=16, choices=ErasedIdentityKind.choices)
    digest = models.CharField(_("digest"), max_length=64, unique=True, help_text=_("HMAC-SHA256, hex"))
    key_id = models.CharField(_("key id"), max_length=16)

    class Meta:
        verbose_name = _("erased identity")
        verbose_name_plural = _("erased identities")

    def __str__(self):
        return f"{self.kind} {self.digest[:12]}…"


class TagKind(models.TextChoices):
    MANUAL = "manual", _("manual")
    RULE = "rule", _("rule-based")


class Tag(models.Model):
    code = models.SlugField(_("code"), max_length=50, unique=True)
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("kind"), max_length=8, choices=TagKind.choices, default=TagKind.MANUAL)
    rule = models.JSONField(
        _("rule"), null=True, blank=True, help_text=_("For rule-based tags: the condition members must meet.")
    )
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("tag")
        verbose_name_plural = _("tags")

    def __str__(self):
        return self.name


class MemberTag(models.Model):
    member = models.ForeignKey(Member, models.CASCADE, related_name="member_tags")
    tag = models.ForeignKey(Tag, models.CASCADE, related_name="member_tags")
    added_at = models.DateTimeField(_("added at"), default=timezone.now)
    added_by = models.CharField(_("added by"), max_length=120, blank=True)

    class Meta:
        verbose_name = _("member tag")
        verbose_name_plural = _("member tags")
        constraints = [models.UniqueConstraint(fields=["member", "tag"], name="member_tag_unique")]
        indexes = [models.Index(fields=["tag", "member"], name="member_tag_by_tag_idx")]

    def __str__(self):
        return f"{self.member_id}:{self.tag_id}"


class OtpChallenge(models.Model):
    """A one-time login code sent to a phone. The code itself is stored hashed. Wrong guesses are counted apart by
    who guesses: `attempts` from the address that asked for the code, `foreign_attempts` from every other address
    (members.services.login.verify_login_code)."""

    phone = models.CharField(max_length=20)
    code_hash = models.CharField(max_length=64)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    foreign_attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["phone", "-created_at"], name="otp_phone_idx"),
            models.Index(fields=["ip_address", "-created_at"], name="otp_ip_idx"),
        ]

    def __str__(self):
        return f"code for {self.phone} at {self.created_at:%Y-%m-%d %H:%M}"


class OtpRequestLock(models.Model):
    """One row per phone and one per client address that asked for a login code, keyed by a keyed hash (no phone or
    address in clear). request_login_code locks the rows of a request (SELECT ... FOR UPDATE, in key order) while
    it counts the codes already sent and sends the next, so parallel requests are counted one after the other.
    `seen_at`: the last request; the nightly purge_member_logins job deletes rows not seen for a day."""

    key = models.CharField(max_length=64, unique=True)
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("login code request lock")
        verbose_name_plural = _("login code request locks")

    def __str__(self):
        return f"{self.key[:12]}…"


class MemberRefreshToken(models.Model):
    """A member's refresh token; only its SHA-256 is stored. A login starts a family; each refresh consumes its
    token (`used_at`) and issues the next of the family. Presenting a used token again revokes the whole family
    (`revoked_at`), as does a logout. `token_version`: the member's at issue; a token of an older version is refused.
    Written by members.services.login only; the nightly purge_member_logins job deletes expired rows."""

    token_hash = models.CharField(max_length=64, unique=True)
    family = models.UUIDField(db_index=True)
    member = models.ForeignKey(Member, models.CASCADE, related_name="refresh_tokens")
    token_version = models.PositiveIntegerField()
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("member refresh token")
        verbose_name_plural = _("member refresh tokens")

    def __str__(self):
        return f"refresh token of {self.member_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class MemberMerge(models.Model):
    """A duplicate member merged into a survivor: who did it, why, and what moved (the answer the merge gave, kept
    so that the same merge asked again, or a retry with the same Idempotency-Key, gets it back). A member is merged
    away at most once; written by members.services.merge only."""

    survivor = models.ForeignKey(Member, models.PROTECT, related_name="absorbed_merges", verbose_name=_("survivor"))
    duplicate = models.OneToOneField(Member, models.PROTECT, related_name="merged_away", verbose_name=_("duplicate"))
    reason = models.CharField(_("reason"), max_length=200)
    actor = models.CharField(_("actor"), max_length=120)
    idempotency_scope = models.CharField(max_length=60, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_hash = models.CharField(max_length=64)
    # JSON text, not jsonb: the same merge asked again answers the very bytes of the first answer, keys in order.
    result = models.TextField(_("result"), blank=True)
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        verbose_name = _("member merge")
        verbose_name_plural = _("member merges")
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_scope", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="member_merge_idempotency_key_unique",
            ),
            models.CheckConstraint(condition=~Q(survivor=models.F("duplicate")), name="member_merge_two_members"),
        ]

    def __str__(self):
        return f"{self.duplicate_id} → {self.survivor_id}"

    @property
    def answer(self):
        """The merge's answer as it was given (see members.services.merge)."""
        return json.loads(self.result) if self.result else {}


class PurchaseChannel(models.TextChoices):
    OFFLINE = "offline", _("offline")
    ONLINE = "online", _("online")


class Purchase(models.Model):
    """An order a member paid for. `source` scopes `order_no`: an order number is unique per client app or, for
    orders keyed in by staff, per store (SPEC §1). Written by points.services (with its points, in one
    transaction) and by the purchase import."""

    # No index of its own: purchase_member_time_idx starts with member_id (one index less to write per purchase).
    member = models.ForeignKey(Member, models.PROTECT, related_name="purchases", db_index=False)
    store = models.ForeignKey(Store, models.PROTECT, null=True, blank=True, related_name="purchases")
    source = models.CharField(_("source"), max_length=40, help_text=_("client:<id> or store:<code>"))
    order_no = models.CharField(_("order number"), max_length=64)
    channel = models.CharField(
        _("channel"), max_length=8, choices=PurchaseChannel.choices, default=PurchaseChannel.OFFLINE
    )
    occurred_at = models.DateTimeField(_("occurred at"))
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    refunded_amount = models.DecimalField(_("refunded amount"), max_digits=14, decimal_places=2, default=0)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    points_awarded = models.BigIntegerField(_("points awarded"), default=0)
    points_reversed = models.BigIntegerField(_("points reversed"), default=0)
    points_used = models.BigIntegerField(_("points used as cash"), default=0)
    points_used_returned = models.BigIntegerField(_("points used returned"), default=0)
    imported = models.BooleanField(_("imported"), default=False)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("purchase")
        verbose_name_plural = _("purchases")
        constraints = [
            models.UniqueConstraint(fields=["source", "order_no"], name="purchase_order_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="purchase_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=models.F("amount")),
                name="purchase_refund_within_amount",
            ),
        ]
        indexes = [
            # Covering: the RFM job reads a member id range's purchases from the index alone (index-only scan, no
            # heap page per purchase: a member's purchases are spread over the whole table, in time order).
            models.Index(
                fields=["member", "occurred_at"],
                include=["id", "amount", "refunded_amount"],
                name="purchase_member_time_cover_idx",
            ),
            models.Index(fields=["occurred_at"], name="purchase_time_idx"),
            models.Index(fields=["order_no"], name="purchase_order_no_idx"),
        ]

    def __str__(self):
        return f"{self.order_no} ({self.amount})"

    @property
    def refundable_amount(self):
        return self.amount - self.refunded_amount


class PurchaseLine(models.Model):
    purchase = models.ForeignKey(Purchase, models.CASCADE, related_name="lines")
    sku = models.CharField(_("SKU"), max_length=64)
    category = models.CharField(_("category"), max_length=64, blank=True)
    quantity = models.DecimalField(_("quantity"), max_digits=12, decimal_places=3)
    unit_price = models.DecimalField(_("unit price"), max_digits=14, decimal_places=2)
    refunded_quantity = models.DecimalField(_("refunded quantity"), max_digits=12, decimal_places=3, default=0)

    class Meta:
        verbose_name = _("purchase line")
        verbose_name_plural = _("purchase lines")
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="purchase_line_quantity_positive"),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="purchase_line_price_not_negative"),
        ]

    def __str__(self):
        return f"{self.sku} × {self.quantity}"

    @property
    def line_amount(self):
        return self.quantity * self.unit_price


class Refund(models.Model):
    purchase = models.ForeignKey(Purchase, models.PROTECT, related_name="refunds")
    refund_no = models.CharField(_("refund number"), max_length=64)
    amount = models.DecimalField(_("amount"), max_digits=14, decimal_places=2)
    lines = models.JSONField(_("lines"), default=list, blank=True)
    points_reversed = models.BigIntegerField(_("points reversed"), default=0)
    points_returned = models.BigIntegerField(_("points used returned"), default=0)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        constraints = [
            models.UniqueConstraint(fields=["purchase", "refund_no"], name="refund_no_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self):
        return f"{self.refund_no} ({self.amount})"


class Segment(models.TextChoices):
    IMPORTANT_VALUE = "important_value", _("important value 重要价值")
    IMPORTANT_DEVELOP = "important_develop", _("important develop 重要发展")
    IMPORTANT_RETAIN = "important_retain", _("important retain 重要保持")
    IMPORTANT_WINBACK = "important_winback", _("important win-back 重要挽留")
    GENERAL_VALUE = "general_value", _("general value 一般价值")
    GENERAL_DEVELOP = "general_develop", _("general develop 一般发展")
    GENERAL_RETAIN = "general_retain", _("general retain 一般保持")
    GENERAL_WINBACK = "general_winback", _("general win-back 一般挽留")
    INACTIVE = "inactive", _("inactive")


class Lifecycle(models.TextChoices):
    NEW = "new", _("new")
    ACTIVE = "active", _("active")
    DORMANT = "dormant", _("dormant")
    LOST = "lost", _("lost")
    NEVER_PURCHASED = "never_purchased", _("never purchased")


class RfmChunkValues(models.Model):
    """The rfm job's working rows: each chunk writes its members' values here (a narrow table with one index, cheap
    to fill), and the finishing step writes every member's RfmSnapshot row once, scores and segment included, from
    them, then deletes them. Kept in a table (not a temporary one) because a run's chunks commit one by one and may
    run in different workers; `as_of` keeps two dates' runs apart."""

    pk = models.CompositePrimaryKey("as_of", "member_id")
    as_of = models.DateField()
    member_id = models.BigIntegerField()  # no foreign key: a working row, gone when its run finishes
    recency_days = models.IntegerField(null=True)
    frequency = models.IntegerField()
    monetary = models.DecimalField(max_digits=14, decimal_places=2)
    lifecycle = models.CharField(max_length=16)

    def __str__(self):
        return f"{self.member_id} {self.as_of}"


class RfmSnapshot(models.Model):
    """A member's RFM values, scores, segment and lifecycle stage as of a business date (one row per member and
    date: the history that segment moves are counted from). The newest completed date is the current one."""

    member = models.ForeignKey(Member, models.CASCADE, related_name="rfm_snapshots")
    as_of = models.DateField(_("as of"))
    window_days = models.PositiveSmallIntegerField(_("window (days)"), default=365)
    recency_days = models.IntegerField(_("recency (days)"), null=True)
    frequency = models.IntegerField(_("frequency"), default=0)
    monetary = models.DecimalField(_("monetary"), max_digits=14, decimal_places=2, default=0)
    r_score = models.PositiveSmallIntegerField(null=True)
    f_score = models.PositiveSmallIntegerField(null=True)
    m_score = models.PositiveSmallIntegerField(null=True)
    segment = models.CharField(_("segment"), max_length=20, choices=Segment.choices, default=Segment.INACTIVE)
    lifecycle = models.CharField(_("lifecycle stage"), max_length=16, choices=Lifecycle.choices)

    class Meta:
        verbose_name = _("RFM snapshot")
        verbose_name_plural = _("RFM snapshots")
        constraints = [models.UniqueConstraint(fields=["as_of", "member"], name="rfm_one_row_per_member_and_date")]
        indexes = [
            models.Index(fields=["as_of", "segment"], name="rfm_segment_idx"),
            models.Index(fields=["member", "-as_of"], name="rfm_member_idx"),
        ]

    def __str__(self):
        return gettext("member %(member)s on %(date)s: %(segment)s") % {
            "member": self.member_id,
            "date": self.as_of,
            "segment": self.get_segment_display(),
        }
