"""Messages to members and phones: the message log, the rules every message to a member obeys, and the channel
backends that deliver them.

Two ways in:
- `send_message`: one message with its text given (login codes): recorded, delivered after commit.
- `queue_messages` / `notify`: messages of a registered kind (loyalty.message_templates) to members, rendered from
  the active template of each channel. Every one is recorded with what became of it, by these rules, in order:
  1. a member who is not active (frozen, anonymised, merged) gets nothing: skipped, "member is frozen";
  2. a marketing kind goes only on a channel she consented to (sms, wechat, email; the inbox needs none):
     skipped, "no consent for sms"; transactional kinds always go;
  3. a channel needs her address there (phone, email, openid in WECHAT_APP_ID): skipped, "no phone number";
  4. at most one message of a kind per member and channel in MESSAGE_FREQUENCY_CAP_DAYS (or the kind's own
     period; 0: one per thing it is about): skipped, "frequency cap: ...";
  5. one message per (member, kind, channel, dedupe key): the same thing asked again writes nothing (a job run
     again, a trigger retried);
  6. quiet hours (MESSAGE_QUIET_HOURS in business time): the message waits, queued with `send_after` at their
     end, and the sweep (`send_due_messages`, every minute) sends it then. The inbox is never quiet (it rings
     no phone), nor are kinds the member waits for (a redemption at the counter).
  Inbox messages are stored, so they are sent when written. The others are delivered after commit by Celery
  tasks, in batches.

Delivery (`deliver_message`): a task delivers the attempt it was sent for, once: it takes the message by raising
`attempts` from the number it was given (so two tasks for the same message never both call the provider) and
sets `send_after` to the end of its lease. A member frozen or erased since is skipped then. A failed provider call
is tried again after MESSAGE_RETRY_BASE_SECONDS, doubling each time, until MESSAGE_MAX_ATTEMPTS calls; then the
message is failed, with the provider's answer. A worker that died with a message leaves it queued: the sweep sends
it again once the lease has passed (so a provider may, rarely, get a message twice; never none).

Backends, one per channel (settings.MESSAGE_BACKENDS). A backend delivers one Message and says whether the message
log may keep one-time codes readable (`keeps_secrets`): the development outbox does, so a tester can read an OTP in
GET /api/v1/messages/; production backends do not, and the log keeps the body masked.
"""

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from loyalty.clock import business_tz
from loyalty.config_cache import cached
from loyalty.log_masking import mask_phones
from loyalty.message_templates import compiled_template, kind_for, message_kinds, plain_text, wechat_fields
from loyalty.models import Message, MessageChannel, MessageStatus, MessageTemplate
from loyalty.registry import ExtensionPoint

logger = logging.getLogger(__name__)
MASK = "******"
CHANNELS = (MessageChannel.INBOX, MessageChannel.SMS, MessageChannel.WECHAT, MessageChannel.EMAIL)
CONSENT_CHANNELS = (MessageChannel.SMS, MessageChannel.WECHAT, MessageChannel.EMAIL)


class DeliveryFailed(Exception):
    """The provider did not take the message; `str()` is its answer. `permanent`: trying again cannot help (the
    provider refused the request itself), so the message fails at once."""

    def __init__(self, answer, *, permanent=False):
        super().__init__(answer)
        self.permanent = permanent


# --- Backends --------------------------------------------------------------------------------------------------


class OutboxBackend:
    """Development and test: the message log is the outbox. Nothing leaves the machine."""

    keeps_secrets = True

    def deliver(self, message, body):
        # Never the body in the logs: it may hold a one-time code (the message log keeps it, in development).
        logger.info("outbox: %s message %s (%s) recorded", message.channel, message.pk, message.kind)
        return ""


class ConsoleBackend(OutboxBackend):
    """Development: print each message to standard output as well (the recipient's phone masked)."""

    def deliver(self, message, body):
        print(f"[{message.channel}] to {mask_phones(message.recipient)}: {body}", flush=True)  # noqa: T201
        return ""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would repeat the request, bearer token included, to whatever host the Location
    names. The 3xx answer then reaches the caller as an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class InboxBackend(OutboxBackend):
    """The in-app inbox: the message row is the delivery; the member reads it at /api/v1/me/messages/."""

    keeps_secrets = False


def _post_json(url, payload, token, timeout, *, gateway="the gateway", message_id=None):
    """POST JSON with a bearer token; the JSON answer (a dict). DeliveryFailed with the provider's answer on an
    error: permanent for a 4xx other than 408 and 429 (the request itself was refused). A redirect is not followed
    (the token would go with it, to another host): a failed send, logged with its status only."""
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
        url,
        data=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        opener = urllib.request.build_opener(_NoRedirects)  # and the usual handlers (proxies from the env)
        with opener.open(request, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:
            error.close()
            logger.warning(
                "message %s not sent: %s answered %s (a redirect), not followed with the token",
                message_id,
                gateway,
                error.code,
            )
            raise DeliveryFailed(
                f"{gateway} answered {error.code} (a redirect, not followed)", permanent=True
            ) from error
        text = error.read(300).decode("utf-8", "replace") if error.fp else ""
        error.close()
        permanent = 400 <= error.code < 500 and error.code not in (408, 429)
        raise DeliveryFailed(f"HTTP {error.code}: {text}".strip(), permanent=permanent) from error
    except (OSError, ValueError) as error:
        raise DeliveryFailed(str(error)) from error
    return answer if isinstance(answer, dict) else {}


class HttpSmsBackend:
    """Production SMS through an HTTP gateway: POST {"to", "text"} as JSON with a bearer token to SMS_HTTP_URL.
    The gateway's JSON answer may carry an "id", kept as the provider's message id. A redirect is not followed (the
    token would go with it, to another host): it is a failed send, logged with its status only."""

    keeps_secrets = False
    timeout_seconds = 5

    def deliver(self, message, body):
        if not settings.SMS_HTTP_URL:
            raise DeliveryFailed("SMS_HTTP_URL is not set")
        answer = _post_json(
            settings.SMS_HTTP_URL,
            {"to": message.recipient, "text": body},
            settings.SMS_HTTP_TOKEN,
            self.timeout_seconds,
            gateway="the SMS gateway",
            message_id=message.pk,
        )
        return str(answer.get("id", ""))


class HttpWechatBackend:
    """Production WeChat template messages: POST WeChat's template message ({"touser": openid, "template_id",
    "data": {"first": {"value": ...}, "keyword1": ...}}) to WECHAT_HTTP_URL with a bearer token (a relay that holds
    the official account's access token, or WeChat's message/template/send URL itself). WeChat answers
    {"errcode": 0, "msgid": ...}; any other errcode is a failure with WeChat's errmsg."""

    keeps_secrets = False
    timeout_seconds = 5

    def deliver(self, message, body):
        if not settings.WECHAT_HTTP_URL:
            raise DeliveryFailed("WECHAT_HTTP_URL is not set")
        template_id = message.template.provider_template_id if message.template_id else ""
        if not template_id:
            raise DeliveryFailed("the WeChat template has no provider template id", permanent=True)
        payload = {"touser": message.recipient, "template_id": template_id, "data": wechat_fields(body)}
        answer = _post_json(
            settings.WECHAT_HTTP_URL,
            payload,
            settings.WECHAT_HTTP_TOKEN,
            self.timeout_seconds,
            gateway="the WeChat gateway",
            message_id=message.pk,
        )
        if answer.get("errcode", 0) != 0:
            raise DeliveryFailed(f"errcode {answer.get('errcode')}: {answer.get('errmsg', '')}".strip())
        return str(answer.get("msgid", ""))


class DjangoEmailBackend:
    """Email through Django's email backend (settings EMAIL_URL, DEFAULT_FROM_EMAIL): the HTML body with its text
    part."""

    keeps_secrets = False

    def deliver(self, message, body):
        email = EmailMultiAlternatives(
            subject=message.subject, body=plain_text(body), from_email=None, to=[message.recipient]
        )
        email.attach_alternative(body, "text/html")
        try:
            email.send()
        except OSError as error:  # smtplib's errors are OSErrors
            raise DeliveryFailed(str(error)) from error
        return ""


SECRET_CHANNELS = ("sms",)  # the channels that carry one-time login codes


def refuse_backends_that_keep_codes():
    """Production refuses a backend that keeps one-time codes readable (the development outbox or console): with
    one, staff could read a member's login code in the message log and log in as her."""
    for channel in SECRET_CHANNELS:
        path = settings.MESSAGE_BACKENDS.get(channel, "")
        if path and getattr(import_string(path), "keeps_secrets", False):
            raise ImproperlyConfigured(
                f"In production the {channel} backend must not keep one-time codes readable: {path} does. Set "
                f"SMS_BACKEND to a delivering backend, e.g. loyalty.messaging.HttpSmsBackend with SMS_HTTP_URL."
            )


def backend_for(channel):
    path = settings.MESSAGE_BACKENDS.get(channel)
    if not path:
        raise DeliveryFailed(f"No backend for channel {channel}")
    return path, import_string(path)()


# --- One message with its text (login codes) -------------------------------------------------------------------


def send_message(*, channel, kind, recipient, body, member=None, subject="", secrets=(), immediate=True):
    """Record a message and deliver it after the surrounding transaction commits.

    `secrets` (one-time codes) are masked in the stored body unless the channel's backend keeps secrets.
    `immediate` delivers in this process right after commit, once, without retries (login codes: the member is
    waiting, the code never passes through the broker, and a masked body cannot be sent again); otherwise a
    Celery task delivers it.
    """
    backend_path, backend = backend_for(channel)
    stored = body
    if not backend.keeps_secrets:
        for secret in secrets:
            stored = stored.replace(secret, MASK)
    now = timezone.now()
    message = Message.objects.create(
        member=member,
        recipient=recipient,
        channel=channel,
        kind=kind,
        subject=subject,
        body=stored,
        backend=backend_path,
        created_at=now,
        send_after=None if immediate else now + lease(),
    )
    if immediate:
        transaction.on_commit(lambda: deliver_message(message.pk, 0, body=body))
    else:
        transaction.on_commit(lambda: dispatch([message.pk]))
    return message


# --- Messages of a kind to members -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """What the rules need to know of a member: her status, consents, address per channel, and the variables
    every template may use (name, member_no)."""

    member_id: int
    status: str
    consents: dict[str, bool]
    addresses: dict[str, str]
    variables: dict[str, str] = field(default_factory=dict)


# The members app registers `load(member_ids) -> {member_id: Recipient}` (loyalty knows no member table).
recipient_loaders = ExtensionPoint(
    "message_recipients", "load(member_ids) -> {member_id: Recipient}, registered by members", keyed=True
)

MISSING_ADDRESS = {
    MessageChannel.SMS: "no phone number",
    MessageChannel.EMAIL: "no email address",
    MessageChannel.WECHAT: "no WeChat openid",
    MessageChannel.INBOX: "no member",
}


def load_recipients(member_ids):
    return recipient_loaders["members"](sorted(set(member_ids)))


@dataclass(frozen=True)
class MessageRequest:
    """A message of `kind` to a member, about `dedupe_key` (one per member, kind, channel and key), with the
    kind's variables (the member's name and card number are added)."""

    member_id: int
    kind: str
    dedupe_key: str
    variables: dict = field(default_factory=dict)


@dataclass
class Queued:
    """What queue_messages wrote: counts by status, and the ids sent to the workers after commit."""

    counts: dict = field(default_factory=dict)
    dispatched: list = field(default_factory=list)


def lease():
    return timedelta(seconds=settings.MESSAGE_LEASE_SECONDS)


def _quiet_bounds():
    start, _, end = settings.MESSAGE_QUIET_HOURS.partition("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def quiet_until(at):
    """The end of the quiet hours `at` falls in (an aware datetime), or None when `at` is not in them."""
    if not settings.MESSAGE_QUIET_HOURS:
        return None
    start, end = _quiet_bounds()
    local = at.astimezone(business_tz())
    clock, day = local.time(), local.date()
    if start == end:
        return None
    if start < end:
        quiet, end_day = start <= clock < end, day
    else:  # over midnight: 21:00-09:00
        quiet, end_day = clock >= start or clock < end, day + timedelta(days=1) if clock >= start else day
    return datetime.combine(end_day, end, tzinfo=business_tz()) if quiet else None


def active_templates():
    """{(kind, channel): MessageTemplate} of the active templates in MESSAGE_LANGUAGE (cached per process)."""
    language = settings.MESSAGE_LANGUAGE
    return cached(
        f"loyalty.message_templates:{language}",
        lambda: {
            (template.kind, template.channel): template
            for template in MessageTemplate.objects.filter(is_active=True, language=language)
        },
        models=[MessageTemplate],
    )


def frequency_days(kind):
    return settings.MESSAGE_FREQUENCY_CAP_DAYS if kind.frequency_days is None else kind.frequency_days


def _recently_sent(member_ids, kinds, now):
    """{(member_id, kind, channel)} of messages queued or sent within each kind's period (a message exactly one
    period ago no longer counts)."""
    periods = {kind.code: frequency_days(kind) for kind in kinds if frequency_days(kind) > 0}
    if not periods or not member_ids:
        return set()
    since = now - timedelta(days=max(periods.values()))
    found = set()
    ids = sorted(member_ids)
    for first in range(0, len(ids), 10_000):
        rows = Message.objects.filter(
            member_id__in=ids[first : first + 10_000],
            kind__in=list(periods),
            status__in=[MessageStatus.QUEUED, MessageStatus.SENT],
            created_at__gt=since,
        ).values_list("member_id", "kind", "channel", "created_at")
        found |= {
            (member_id, kind, channel)
            for member_id, kind, channel, created_at in rows
            if created_at > now - timedelta(days=periods[kind])
        }
    return found


def skip_reason(kind, channel, recipient, recent):
    """Why this message may not go (rules 1-4 above), or "" when it may."""
    if recipient is None:
        return MISSING_ADDRESS[MessageChannel.INBOX]
    if recipient.status != "active":
        return f"member is {recipient.status}"
    if kind.marketing and channel in CONSENT_CHANNELS and not recipient.consents.get(channel):
        return f"no consent for {channel}"
    if not recipient.addresses.get(channel):
        if channel == MessageChannel.WECHAT and not settings.WECHAT_APP_ID:
            return "WECHAT_APP_ID is not set"
        return MISSING_ADDRESS[channel]
    if (recipient.member_id, kind.code, channel) in recent:
        return f"frequency cap: one {kind.code} per {frequency_days(kind)} days on {channel}"
    return ""


def queue_messages(requests: Iterable[MessageRequest], *, now=None):
    """Write the messages these requests make, one per channel with an active template, by the rules above, in
    the caller's transaction (in bulk: a few statements whatever the number); the ones due now go to the workers
    after commit, in batches. Returns a Queued. Raises ValueError for a request without its kind's variables."""
    requests = list(requests)
    now = now or timezone.now()
    result = Queued()
    templates = active_templates()
    if not requests or not templates:
        return result
    kinds = {code: kind_for(code) for code in {request.kind for request in requests}}
    recipients = load_recipients(request.member_id for request in requests)
    recent = _recently_sent(set(recipients), kinds.values(), now)
    quiet_end = quiet_until(now)
    compiled = {}
    backends = {channel: settings.MESSAGE_BACKENDS.get(channel, "") for channel in CHANNELS}
    sent, queued, skipped = str(MessageStatus.SENT), str(MessageStatus.QUEUED), str(MessageStatus.SKIPPED)
    inbox = str(MessageChannel.INBOX)
    due_at = now + lease()
    rows, waiting = [], set()
    for request in requests:
        kind = kinds[request.kind]
        missing = set(kind.variables) - set(request.variables)
        if missing:
            raise ValueError(f"{kind.code} message without {', '.join(sorted(missing))}")
        recipient = recipients.get(request.member_id)
        variables = {**(recipient.variables if recipient else {}), **request.variables}
        capped = frequency_days(kind) > 0
        for channel in CHANNELS:
            template = templates.get((kind.code, channel))
            if template is None:
                continue
            if template.pk not in compiled:
                compiled[template.pk] = compiled_template(template)
            rendered = compiled[template.pk].render(variables)
            reason = skip_reason(kind, channel, recipient, recent)
            status, send_after, sent_at = queued, None, None
            if reason:
                status = skipped
            elif channel == inbox:
                status, sent_at = sent, now
            elif quiet_end is not None and kind.quiet_hours:
                send_after = quiet_end  # the sweep sends it then
                waiting.add((request.member_id, kind.code, str(channel), request.dedupe_key))
            else:
                send_after = due_at
            if not reason and capped:
                recent.add((request.member_id, kind.code, channel))  # the cap holds within the batch too
            rows.append(
                MessageRow(
                    member_id=request.member_id,
                    recipient=recipient.addresses.get(channel, "") if recipient else "",
                    channel=str(channel),
                    kind=kind.code,
                    template_id=template.pk,
                    dedupe_key=request.dedupe_key,
                    subject=rendered.subject[:200],
                    body=rendered.body,
                    status=status,
                    status_reason=reason,
                    backend=backends[channel],
                    created_at=now,
                    send_after=send_after,
                    sent_at=sent_at,
                )
            )
    inserted = _insert_new(rows)
    for _pk, row in inserted:
        result.counts[row.status] = result.counts.get(row.status, 0) + 1
    result.dispatched = [
        pk
        for pk, row in inserted
        if row.status == queued and (row.member_id, row.kind, row.channel, row.dedupe_key) not in waiting
    ]
    if result.dispatched:
        ids = list(result.dispatched)
        transaction.on_commit(lambda: dispatch(ids))
    return result


def notify(*, member_id, kind, dedupe_key, variables, now=None):
    """A member's message of `kind` about `dedupe_key` (tier changes, redemptions): written in the caller's
    transaction, so a change rolled back sends nothing, and delivered after commit."""
    return queue_messages([MessageRequest(member_id, kind, dedupe_key, variables)], now=now)


class MessageRow(NamedTuple):
    """A message to write: the Message columns queue_messages sets (the others take the model's defaults)."""

    member_id: int
    recipient: str
    channel: str
    kind: str
    template_id: int | None
    dedupe_key: str
    subject: str
    body: str
    status: str
    status_reason: str
    backend: str
    created_at: datetime
    send_after: datetime | None
    sent_at: datetime | None


INSERT_BATCH = 500  # rows per INSERT ... VALUES statement (SQLite)
ARRAY_BATCH = 10_000  # rows per INSERT ... SELECT FROM unnest(arrays) statement (PostgreSQL)


def _message_columns():
    """[(field, index in MessageRow or None, default)] for every column of the message table but the id."""
    columns = []
    for model_field in Message._meta.concrete_fields:
        if model_field.primary_key:
            continue
        name = model_field.attname
        index = MessageRow._fields.index(name) if name in MessageRow._fields else None
        columns.append((model_field, index, None if index is not None else model_field.get_default()))
    return columns


def _binary_cursor():
    """PostgreSQL: a cursor of Django's connection (its transaction, its error translation and query logging) that
    sends the parameters apart from the statement, `%b` ones in binary: psycopg's client-side binding, which Django
    uses, would spell every array out as text in Python, five times slower for the message arrays."""
    import psycopg

    connection.ensure_connection()
    return connection._prepare_cursor(psycopg.Cursor(connection.connection))


def _insert_new(rows):
    """INSERT the rows, skipping any whose (member, kind, channel, dedupe key) exists already; return [(id, row)] of
    the rows written, in id order. PostgreSQL: one INSERT ... SELECT FROM unnest(one array per column) per
    ARRAY_BATCH rows; other databases: one INSERT ... VALUES per INSERT_BATCH rows."""
    columns = _message_columns()
    names = ", ".join(connection.ops.quote_name(model_field.column) for model_field, _, _ in columns)
    table = connection.ops.quote_name(Message._meta.db_table)
    returning = " ON CONFLICT DO NOTHING RETURNING id, member_id, kind, channel, dedupe_key"
    written = []
    size = ARRAY_BATCH if connection.vendor == "postgresql" else INSERT_BATCH
    for first in range(0, len(rows), size):
        batch = rows[first : first + size]
        by_key = {(row.member_id, row.kind, row.channel, row.dedupe_key): row for row in batch}
        if connection.vendor == "postgresql":
            arrays = [
                [row[index] for row in batch] if index is not None else [default] * len(batch)
                for _, index, default in columns
            ]
            unnest = ", ".join(f"%b::{model_field.db_type(connection)}[]" for model_field, _, _ in columns)
            statement = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({unnest})" + returning  # noqa: S608
            params = arrays
        else:
            row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
            statement = f"INSERT INTO {table} ({names}) VALUES " + ", ".join([row_sql] * len(batch)) + returning  # noqa: S608
            params = [
                model_field.get_db_prep_save(row[index] if index is not None else default, connection)
                for row in batch
                for model_field, index, default in columns
            ]
        with _binary_cursor() if connection.vendor == "postgresql" else connection.cursor() as cursor:
            cursor.execute(statement, params)
            returned = cursor.fetchall()
        written += [(pk, by_key[(member_id, kind, channel, key)]) for pk, member_id, kind, channel, key in returned]
    written.sort(key=lambda item: item[0])
    return written


# --- Delivery --------------------------------------------------------------------------------------------------


def dispatch(message_ids, attempts=None):
    """Send these queued messages to the workers, in batches of MESSAGE_BATCH_SIZE (`attempts`: the attempt each
    is at, default 0). A broker that is down stops the sending: the messages stay queued and the sweep sends
    them when their lease ends."""
    from loyalty.tasks import deliver_messages_task

    items = [[pk, (attempts or {}).get(pk, 0)] for pk in message_ids]
    size = settings.MESSAGE_BATCH_SIZE
    for first in range(0, len(items), size):
        try:
            deliver_messages_task.delay(items[first : first + size])
        except Exception:  # broker down: the sweep sends them after their lease
            logger.exception("could not send %d message(s) to the workers", len(items) - first)
            return


def retry_delay(attempts):
    """Seconds before the next provider call after `attempts` failed ones: base, 2 × base, 4 × base, ..."""
    return settings.MESSAGE_RETRY_BASE_SECONDS * 2 ** (attempts - 1)


def deliver_messages(items):
    """Deliver a batch of [message_id, attempt] pairs (deliver_message each), reading their members once."""
    member_ids = Message.objects.filter(pk__in=[pk for pk, _ in items], member__isnull=False).values_list(
        "member_id", flat=True
    )
    recipients = load_recipients(member_ids) if recipient_loaders.get("members") else {}
    return [deliver_message(pk, attempt, recipients=recipients) for pk, attempt in items]


def deliver_message(message_id, attempt=0, *, body=None, recipients=None):
    """Deliver attempt number `attempt` (0: the first) of a queued message, once, and record what became of it.
    Returns the status, or None when the message was not this task's to deliver (sent already, taken by another
    task, or at another attempt). `body`: the text with its secrets (send_message's immediate messages: one try,
    no retry). `recipients`: the members as a batch read them, before it began."""
    now = timezone.now()
    # A message with its secrets in memory is never leased: the sweep must not send its masked copy.
    taken = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED, attempts=attempt).update(
        attempts=F("attempts") + 1, send_after=None if body is not None else now + lease()
    )
    if not taken:
        return None
    message = Message.objects.select_related("template").get(pk=message_id)
    if message.member_id and message.kind in message_kinds:
        if recipients is None or message.member_id not in recipients:
            recipients = load_recipients([message.member_id])
        recipient = recipients.get(message.member_id)
        if recipient is None or recipient.status != "active":
            reason = f"member is {recipient.status}" if recipient else MISSING_ADDRESS[MessageChannel.INBOX]
            return _finish(message, MessageStatus.SKIPPED, status_reason=reason)
    try:
        _, backend = backend_for(message.channel)
        provider_id = backend.deliver(message, body if body is not None else message.body)
    except DeliveryFailed as error:
        answer = str(error)[:400]
        if body is not None or error.permanent or message.attempts >= settings.MESSAGE_MAX_ATTEMPTS:
            return _finish(message, MessageStatus.FAILED, status_reason=f"attempt {message.attempts}: {answer}")
        _retry_later(message, answer, now)
        return MessageStatus.QUEUED
    return _finish(message, MessageStatus.SENT, sent_at=timezone.now(), provider_message_id=(provider_id or "")[:100])


def _finish(message, status, **fields):
    Message.objects.filter(pk=message.pk).update(status=status, **fields)
    return status


def _retry_later(message, answer, now):
    """Keep the message queued and send it to the workers again after the backoff (or at the end of the quiet
    hours the retry would fall in; the sweep sends it then)."""
    delay = retry_delay(message.attempts)
    at = now + timedelta(seconds=delay)
    kind = message_kinds.get(message.kind)
    quiet_end = quiet_until(at) if kind is None or kind.quiet_hours else None
    Message.objects.filter(pk=message.pk).update(
        status_reason=f"attempt {message.attempts}: {answer}"[:500],
        send_after=quiet_end or at + lease(),
    )
    if quiet_end is not None:
        return
    from loyalty.tasks import deliver_message_task

    try:
        deliver_message_task.apply_async((message.pk, message.attempts), countdown=delay)
    except Exception:  # broker down: the sweep sends it after send_after
        logger.exception("could not schedule the retry of message %s", message.pk)


SWEEP_LIMIT = 50_000


def send_due_messages(*, now=None, limit=SWEEP_LIMIT):
    """The sweep (every minute, and after the reminders job): send the queued messages whose time has come (quiet
    hours over, a retry whose task was lost, a worker that died with them). Each is leased before it is sent to
    the workers, so the next sweep does not send it again. A message out of attempts is failed. Returns the
    number sent to the workers."""
    now = now or timezone.now()
    due = list(
        Message.objects.filter(status=MessageStatus.QUEUED, send_after__lte=now)
        .order_by("send_after", "id")
        .values_list("id", "attempts")[:limit]
    )
    exhausted = [pk for pk, attempts in due if attempts >= settings.MESSAGE_MAX_ATTEMPTS]
    if exhausted:
        Message.objects.filter(pk__in=exhausted, status=MessageStatus.QUEUED).update(
            status=MessageStatus.FAILED,
            status_reason=f"no answer after {settings.MESSAGE_MAX_ATTEMPTS} attempts (the worker was lost)",
        )
    sendable = [(pk, attempts) for pk, attempts in due if attempts < settings.MESSAGE_MAX_ATTEMPTS]
    for first in range(0, len(sendable), 10_000):
        batch = dict(sendable[first : first + 10_000])
        Message.objects.filter(pk__in=list(batch), status=MessageStatus.QUEUED).update(send_after=now + lease())
        dispatch(list(batch), attempts=batch)
    return len(sendable)


def mark_read(*, member_id, message_id, now=None):
    """The member read an inbox message of hers: `read_at` is set once. Returns the message, or None when she has
    no such inbox message."""
    inbox = Message.objects.filter(
        pk=message_id, member_id=member_id, channel=MessageChannel.INBOX, status=MessageStatus.SENT
    )
    inbox.filter(read_at__isnull=True).update(read_at=now or timezone.now())
    return inbox.first()
