#!/usr/bin/env python3
"""What the webhook outbox costs a purchase: record_purchase in-process, in interleaved blocks with no subscription
and with an active subscription to points.earned (every purchase then writes its outbox event), medians and means
of each side, and emit() alone. Delivery is not measured (a worker's work): the nudge after commit is off.

    createdb -h 127.0.0.1 -U postgres loyalty_outbox_bench
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/loyalty_outbox_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/loyalty_outbox_bench .venv/bin/python bench/outbox.py

It writes purchases into that database (use a scratch one) and deletes the events it wrote.
"""

import argparse
import itertools
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty.settings")
os.environ["WEBHOOKS_KICK_ON_COMMIT"] = "false"

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402

from loyalty import events  # noqa: E402
from loyalty.config_cache import clear_all  # noqa: E402
from loyalty.models import OutboxEvent, WebhookSubscription  # noqa: E402
from members.models import Member, Store  # noqa: E402
from points import services  # noqa: E402

RUN = int(time.time())
orders = itertools.count()


def members(count):
    store, _ = Store.objects.get_or_create(code="OUTBOX", defaults={"name": "Outbox bench"})
    have = list(Member.objects.filter(home_store=store).order_by("id")[:count])
    for index in range(len(have), count):
        have.append(
            Member.objects.create(
                member_no=f"OB{index:010d}",
                referral_code=f"OB{index:06d}",
                external_id=f"outbox-bench-{index}",
                home_store=store,
            )
        )
    return have


def one_purchase(member):
    order_no = f"OB{RUN}-{next(orders)}"
    body = {"member": member.pk, "order_no": order_no, "amount": "10.00"}
    started = time.perf_counter()
    services.record_purchase(
        actor="bench",
        source="bench:outbox",
        member_id=member.pk,
        order_no=order_no,
        amount=Decimal("10.00"),
        fingerprint=services.request_fingerprint(body),
    )
    return time.perf_counter() - started


def block(subscription, active, people, size):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(is_active=active)
    clear_all()
    one_purchase(people[0])  # the cache warm again
    return [one_purchase(people[index % len(people)]) for index in range(size)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=12, help="block pairs (without, with) [12]")
    parser.add_argument("--size", type=int, default=100, help="purchases per block [100]")
    parser.add_argument("--members", type=int, default=200, help="members the purchases go to [200]")
    args = parser.parse_args()
    people = members(args.members)
    subscription = WebhookSubscription.objects.create(
        url="https://hooks.bench.invalid/", events=["points.earned"], secret="b" * 32, is_active=False
    )
    first_event = (OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    try:
        for _ in range(2):  # warm-up
            block(subscription, False, people, 20)
            block(subscription, True, people, 20)
        without, with_event = [], []
        for _ in range(args.blocks):
            without += block(subscription, False, people, args.size)
            with_event += block(subscription, True, people, args.size)
        WebhookSubscription.objects.filter(pk=subscription.pk).update(is_active=True)
        clear_all()
        data = {"member": "1", "points": 10, "reference": "OB1", "reason": "purchase", "entry": "1",
                "status": "pending", "available_at": "2026-12-09T10:00:00+08:00",
                "expires_at": "2027-12-03T00:00:00+08:00", "breakdown": [{"source": "base", "points": 10}]}  # fmt: skip
        emits = []
        for _ in range(20):
            with transaction.atomic():
                started = time.perf_counter()
                for _ in range(100):
                    events.emit("points.earned", data, member_id=people[0].pk)
                emits.append((time.perf_counter() - started) / 100)
    finally:
        OutboxEvent.objects.filter(id__gte=first_event).delete()
        subscription.delete()
    median_without, median_with = statistics.median(without), statistics.median(with_event)
    print(f"purchases per side: {len(without)}")  # noqa: T201
    print(  # noqa: T201
        f"median without {median_without * 1000:.2f} ms, with {median_with * 1000:.2f} ms, "
        f"ratio {median_with / median_without:.3f}; means {statistics.mean(without) * 1000:.2f} / "
        f"{statistics.mean(with_event) * 1000:.2f} ms"
    )
    print(f"emit() alone: median {statistics.median(emits) * 1000:.3f} ms per event")  # noqa: T201


if __name__ == "__main__":
    main()
