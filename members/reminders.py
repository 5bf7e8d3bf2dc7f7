"""The reminders job (SPEC §7, 09:00 business time): for its business date, every app that has something to remind
members of finds them set-based, one chunk of member ids at a time, and the chunk writes their messages in bulk.

Apps plug in a ReminderSource (in AppConfig.ready(): members the win-back messages; points the expiry reminders and
the birthday greetings with their bonus; tiers the downgrade warnings). A source runs inside the chunk's
transaction: it selects with a few set-based statements for the chunk's member id range (never a query per
member), may write what goes with its messages (the birthday bonus, through the points services), and returns
loyalty.messaging.MessageRequests. The chunk writes them all with `queue_messages` (a few INSERT statements),
and after it commits they go to the workers in batches.

Nothing is sent twice: each message names what it is about (its dedupe key: the lot date and the days before it,
the year, the hold date, the RFM run) and the message log keeps one per member, kind, channel and key. A re-run of
the date (`--force`) writes nothing new, and a worker killed mid-chunk leaves the chunk undone with nothing of it
written (its messages and bonuses roll back with it): the runner does it again once.

The business date is the day the reminders go out (today by default): "expiring in 30 days" counts from it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty.clock import business_date
from loyalty.messaging import MessageRequest, queue_messages, send_due_messages
from loyalty.registry import ExtensionPoint
from loyalty.scheduling import JobDefinition, register_job
from members.jobs import member_bounds

CHUNK_SIZE = 50_000


@dataclass(frozen=True)
class ReminderSource:
    """`requests(as_of, start, stop, now)`: the messages due on business date `as_of` to members with ids in
    [start, stop), found set-based, in the chunk's transaction."""

    name: str
    requests: Callable[[date, int, int, datetime], list[MessageRequest]]


reminder_sources = ExtensionPoint(
    "reminder_sources", "ReminderSource by name: what the reminders job reminds members of", keyed=True
)


def register_reminder_source(source):
    reminder_sources.register(source, key=source.name)


def reminders_chunk(as_of, start, stop, params):
    """Every source's messages for members in [start, stop), written in bulk in the runner's transaction.
    Counts: requests per source, and messages written per status (queued, sent: the inbox, skipped)."""
    now = timezone.now()
    counts, requests = {}, []
    for source in reminder_sources:
        if params.get("sources") and source.name not in params["sources"]:
            continue
        found = source.requests(as_of, start, stop, now)
        counts[source.name] = len(found)
        requests += found
    queued = queue_messages(requests, now=now)
    counts.update({f"messages_{status}": number for status, number in queued.counts.items()})
    return counts


def reminders_finish(as_of, params):
    """After the last chunk: send what is due now that was left queued (the sweep, once more)."""
    transaction.on_commit(send_due_messages)
    return {}


def register_reminders_job():
    """Called from MembersConfig.ready()."""
    register_job(
        JobDefinition(
            name="reminders",
            description=_(
                "Reminders to members for the business date: points expiring, birthday greetings with the "
                "birthday bonus, tier downgrade warnings, win-back messages."
            ),
            bounds=member_bounds,
            run_chunk=reminders_chunk,
            finish=reminders_finish,
            chunk_size=CHUNK_SIZE,
            default_as_of=business_date,
            latest_as_of=business_date,  # the reminders of today go out today; tomorrow's are refused
        )
    )
