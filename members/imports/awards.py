"""award_points: each imported order recorded with its points through the purchase recorder the points app
registers, one transaction per order; both merges hand their known rows here."""

import hashlib
import json

from django.db import IntegrityError

from loyalty.errors import DomainError
from members.models import Purchase, Store

from .rows import ACTOR, LOOKUP_BATCH, ChunkOutcome


def _fingerprint(row, source):
    body = [
        source,
        row.order_no,
        row.member_id,
        str(row.amount),
        row.occurred_at.isoformat(),
        row.store_id,
        row.channel,
    ]
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def _award_points(rows, *, source, recorder):
    """Record each order with its points through the points app's service (its own transaction per order)."""
    outcome, recorded = ChunkOutcome(), []
    stores = Store.objects.in_bulk({row.store_id for row in rows if row.store_id})
    for row in rows:
        try:
            result = recorder(
                actor=ACTOR,
                source=source,
                member_id=row.member_id,
                order_no=row.order_no,
                amount=row.amount,
                fingerprint=_fingerprint(row, source),
                store=stores.get(row.store_id),
                channel=row.channel,
                occurred_at=row.occurred_at,
            )
        except DomainError as error:
            outcome.rejects.append((row.line, f"{error.code}: {error.detail}"))
            continue
        except IntegrityError:  # recorded meanwhile by another import, whose idempotency record is gone
            if not Purchase.objects.filter(source=source, order_no=row.order_no).exists():
                raise
            outcome.skipped += 1
            continue
        if result.replayed:
            outcome.skipped += 1
        else:
            outcome.imported += 1
            recorded.append(row.order_no)
    for start in range(0, len(recorded), LOOKUP_BATCH):
        Purchase.objects.filter(source=source, order_no__in=recorded[start : start + LOOKUP_BATCH]).update(
            imported=True
        )
    return outcome
