"""Retried client writes: the first request with a key does the work; a retry with the same key and the same
body gets the first result back; the same key with another body is refused.

The claim is an INSERT ... ON CONFLICT DO NOTHING on the unique (scope, key): a concurrent request with the same
key waits on that index entry until the first transaction ends, then sees its committed result (or, if the first
rolled back, claims the key itself). So 20 simultaneous retries make exactly one write.

Records are kept IDEMPOTENCY_RETENTION_DAYS (at least 30, SPEC §2); the nightly purge_idempotency job deletes
older ones (purge_bounds / purge_chunk). A purchase or refund retried after that finds its natural key
(order_no, refund_no) already recorded and is refused with AlreadyRecorded, never done twice.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loyalty import batch
from loyalty.clock import end_of_business_day
from loyalty.errors import DomainError
from points.models import IdempotencyRecord

PURGE_CHUNK_SIZE = 50_000


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    default_detail = _("This idempotency key was used with a different request.")


class AlreadyRecorded(DomainError):
    """A retry whose record was purged: what it asks for is recorded already (its natural key says so), and its
    first answer is no longer kept to be replayed."""

    code = "already_recorded"
    default_detail = _("This was already recorded; its first answer is no longer kept, so it is not repeated.")


class IdempotencyKeyRequired(DomainError):
    status = 400
    code = "idempotency_key_required"
    default_detail = _("Send an Idempotency-Key header with this request.")


def request_fingerprint(payload):
    """A stable hash of a request body (key order and spacing do not matter)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Claim:
    record_id: int | None
    replay: IdempotencyRecord | None = None


CLAIM_SQL = (
    f"INSERT INTO {IdempotencyRecord._meta.db_table} (scope, key, request_hash, status_code, response, created_at) "  # noqa: S608
    "VALUES (%s, %s, %s, 0, NULL, %s) ON CONFLICT (scope, key) DO NOTHING RETURNING id"
)


def send_claim(*, scope, key, fingerprint, returning=""):
    """claim()'s INSERT, sent (loyalty.batch: inside `pipelined()` answered with the statements after it);
    `claim_from` reads its answer. `returning`: more values to return after the record's id when the key is
    claimed (SQL expressions of ours, e.g. a new purchase's id from its sequence)."""
    return batch.send(
        f"{CLAIM_SQL}, {returning}" if returning else CLAIM_SQL, [scope, key, fingerprint, timezone.now()]
    )


def claim_from(sent, *, scope, key, fingerprint):
    """The Claim that send_claim's answer makes (see claim)."""
    row = sent.one()
    if row:
        return Claim(record_id=row[0])
    earlier = IdempotencyRecord.objects.get(scope=scope, key=key)
    if earlier.request_hash != fingerprint:
        raise IdempotencyConflict()
    return Claim(record_id=None, replay=earlier)


def claim(*, scope, key, fingerprint):
    """Call first thing inside the service's transaction. Returns a Claim: either ours to fill with `complete`,
    or a replay of the earlier result. Raises IdempotencyConflict for a different body under the same key."""
    return claim_from(
        send_claim(scope=scope, key=key, fingerprint=fingerprint), scope=scope, key=key, fingerprint=fingerprint
    )


def response_text(response):
    """The stored form of a result (what a replay answers, parsed again)."""
    return json.dumps(response, cls=DjangoJSONEncoder, ensure_ascii=False)


def complete(claim_, *, response, status_code=201):
    IdempotencyRecord.objects.filter(pk=claim_.record_id).update(
        response=response_text(response), status_code=status_code
    )


def release(claim_):
    """Give the key back inside the claiming transaction, for a request refused in a way that must still commit
    something (a wrong payment PIN counts against the PIN): a retry with the same key is then a new attempt."""
    IdempotencyRecord.objects.filter(pk=claim_.record_id).delete()


def replayed_response(record):
    return json.loads(record.response)


def purge_cutoff(as_of):
    """Records created before this instant go in the purge for business date `as_of`: the end of that day minus
    the retention. A run acts only for a day that has ended, so every record it deletes is older than that."""
    return end_of_business_day(as_of) - timedelta(days=settings.IDEMPOTENCY_RETENTION_DAYS)


def purge_bounds(as_of):
    """The id range of the records the purge for `as_of` deletes (one aggregate, no rows read)."""
    bounds = IdempotencyRecord.objects.filter(created_at__lt=purge_cutoff(as_of)).aggregate(
        low=Min("id"), high=Max("id")
    )
    return bounds["low"], bounds["high"]


PURGE_SQL = (
    f"DELETE FROM {IdempotencyRecord._meta.db_table} "  # noqa: S608 - the table name is ours
    "WHERE id >= %s AND id < %s AND created_at < %s"
)


def purge_chunk(start, stop, as_of):
    """Delete, in one statement, the records with ids in [start, stop) created before the cutoff of `as_of`.
    Runs in the caller's transaction. Idempotent per date: what is left is younger than the cutoff."""
    cutoff = connection.ops.adapt_datetimefield_value(purge_cutoff(as_of))  # SQLite compares stored UTC text
    with connection.cursor() as cursor:
        cursor.execute(PURGE_SQL, [start, stop, cutoff])
        return {"deleted": cursor.rowcount}
