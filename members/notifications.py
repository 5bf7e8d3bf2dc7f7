"""What members gives the messaging platform: who a member is to it (status, consents, addresses on each channel),
and the win-back messages of the reminders job (members who became dormant or lost in the last RFM run)."""

from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext_lazy as _

from loyalty.message_templates import MessageKind, register_message_kind
from loyalty.messaging import MessageRequest, Recipient, recipient_loaders
from members.models import Lifecycle, Member, RfmSnapshot, WechatIdentity
from members.reminders import ReminderSource, register_reminder_source

LOAD_BATCH = 10_000


def load_recipients(member_ids):
    """{member_id: Recipient} for these members: three statements per LOAD_BATCH members."""
    recipients = {}
    for first in range(0, len(member_ids), LOAD_BATCH):
        ids = member_ids[first : first + LOAD_BATCH]
        openids = {}
        if settings.WECHAT_APP_ID:
            rows = WechatIdentity.objects.filter(member_id__in=ids, app_id=settings.WECHAT_APP_ID).order_by("-id")
            openids = dict(rows.values_list("member_id", "openid"))  # the newest per member wins
        rows = Member.objects.filter(pk__in=ids).values_list(
            "pk", "status", "phone", "email", "name", "member_no", "consent_sms", "consent_wechat", "consent_email"
        )
        for pk, status, phone, email, name, member_no, sms, wechat, email_consent in rows:
            recipients[pk] = Recipient(
                member_id=pk,
                status=status,
                consents={"sms": sms, "wechat": wechat, "email": email_consent},
                addresses={"sms": phone or "", "email": email or "", "wechat": openids.get(pk, ""), "inbox": member_no},
                variables={"name": name, "member_no": member_no},
            )
    return recipients


WIN_BACK = register_message_kind(
    MessageKind(
        code="win_back",
        label=_("win-back"),
        marketing=True,
        variables={"lifecycle": _("her lifecycle stage now (dormant or lost)")},
        sample={"lifecycle": Lifecycle.DORMANT.label},
    )
)
BECAME = (Lifecycle.DORMANT, Lifecycle.LOST)


def win_back_requests(as_of, start, stop, now):
    """Members in [start, stop) who became dormant or lost in the last completed RFM run: their lifecycle stage
    in it is dormant or lost and was another in the run before. One message per member and RFM run."""
    from members.jobs import latest_rfm_date

    latest = latest_rfm_date()
    if latest is None:
        return []
    previous = RfmSnapshot.objects.filter(as_of__lt=latest).order_by("-as_of").values_list("as_of", flat=True).first()
    if previous is None:
        return []
    changed = RfmSnapshot.objects.filter(as_of=previous, member_id=OuterRef("member_id")).exclude(
        lifecycle=OuterRef("lifecycle")
    )
    rows = (
        RfmSnapshot.objects.filter(as_of=latest, member_id__gte=start, member_id__lt=stop, lifecycle__in=BECAME)
        .filter(Exists(changed))
        .order_by("member_id")
        .values_list("member_id", "lifecycle")
    )
    labels = dict(Lifecycle.choices)
    return [
        MessageRequest(member_id, WIN_BACK.code, f"rfm:{latest.isoformat()}", {"lifecycle": labels[lifecycle]})
        for member_id, lifecycle in rows
    ]


def register():
    """Called from MembersConfig.ready()."""
    recipient_loaders.register(load_recipients, key="members")
    register_reminder_source(ReminderSource(name="win_back", requests=win_back_requests))
