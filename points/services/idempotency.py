"""Retried client writes: the first request with a key does the work; a retry with the same key and the same
body gets the first result back; the same key with another body is refused.

The claim is an INSERT ... ON CONFLICT DO NOTHING on the unique (scope, key): a concurrent request with the same
key waits on that index entry until the first transaction ends, then sees its committed result (or, if the first
rolled back, claims the key itself). So 20 simultaneous retries make exactly one write.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import timezone

from loyalty.errors import DomainError
from points.models import IdempotencyRecord

KEEP_FOR = timedelta(days=30)


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    default_detail = "This idempotency key was used with a different request."


class IdempotencyKeyRequired(DomainError):
    status = 400
    code = "idempotency_key_required"
    default_detail = "Send an Idempotency-Key header with this request."


def request_fingerprint(payload):
    """A stable hash of a request body (key order and spacing do not matter)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Claim:
    record_id: int | None
    replay: IdempotencyRecord | None = None


def claim(*, scope, key, fingerprint):
    """Call first thing inside the service's transaction. Returns a Claim: either ours to fill with `complete`,
    or a replay of the earlier result. Raises IdempotencyConflict for a different body under the same key."""
    table = IdempotencyRecord._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (scope, key, request_hash, status_code, response, created_at) "  # noqa: S608
            "VALUES (%s, %s, %s, 0, NULL, %s) ON CONFLICT (scope, key) DO NOTHING RETURNING id",
            [scope, key, fingerprint, timezone.now()],
        )
        row = cursor.fetchone()
    if row:
        return Claim(record_id=row[0])
    earlier = IdempotencyRecord.objects.get(scope=scope, key=key)
    if earlier.request_hash != fingerprint:
        raise IdempotencyConflict()
    return Claim(record_id=None, replay=earlier)


def complete(claim_, *, response, status_code=201):
    IdempotencyRecord.objects.filter(pk=claim_.record_id).update(
        response=json.dumps(response, cls=DjangoJSONEncoder, ensure_ascii=False), status_code=status_code)


def replayed_response(record):
    return json.loads(record.response)


def forget_expired(now=None):
    """Drop records older than KEEP_FOR (a nightly job calls this)."""
    return IdempotencyRecord.objects.filter(created_at__lt=(now or timezone.now()) - KEEP_FOR).delete()[0]
