"""Which group a member is in for a campaign: a stable hash of (campaign, member), never a random draw.

The bucket is the first 32 bits of MD5("<campaign id>:<member id>") scaled to 0..9999 basis points: the same in
every process and on every run, and computable in SQL (`bucket_sql`) so results and bulk jobs can group members
without reading them into Python. The first `holdout_percent` of the buckets are the holdout; the rest are split
between the variants by their weights, in the order of their ids."""

import hashlib
from decimal import Decimal

from campaigns.models import HOLDOUT

BUCKETS = 10_000


def bucket(campaign_id, member_id):
    digest = hashlib.md5(f"{campaign_id}:{member_id}".encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) * BUCKETS >> 32


def bucket_sql(campaign_id_sql, member_id_sql):
    """The same bucket as a PostgreSQL expression."""
    return (
        f"((('x' || substr(md5(({campaign_id_sql})::text || ':' || ({member_id_sql})::text), 1, 8))::bit(32)::bigint"
        f" * {BUCKETS}) >> 32)"
    )


def holdout_buckets(holdout_percent):
    return int(Decimal(holdout_percent) * BUCKETS / 100)


def group_for(campaign_id, member_id, *, holdout, variants):
    """`holdout`: the holdout's buckets (holdout_buckets); `variants`: [(code, weight)] in id order."""
    position = bucket(campaign_id, member_id)
    if position < holdout:
        return HOLDOUT
    total = sum(weight for _, weight in variants)
    # Scale the rest of the buckets to the variants' weights.
    point = (position - holdout) * total // (BUCKETS - holdout)
    for code, weight in variants:
        if point < weight:
            return code
        point -= weight
    return variants[-1][0]
