#!/usr/bin/env python3
"""What the webhook outbox costs a purchase: record_purchase in-process, in interleaved blocks with no subscription
and with an active subscription to points.earned (every purchase then writes its outbox event), medians and means
of each side, and emit() alone. Besides wall-clock time it counts CPU time per purchase (this process's, and the
PostgreSQL backend's from /proc, so the server must run on this machine): on a busy machine the wall clock
mostly measures the neighbours, the CPU a purchase spends much less so. Delivery is not measured (a worker's
work): the nudge after commit is off.

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


def backend_cpu_seconds():
    """CPU seconds (user + system) the PostgreSQL backend of this connection has used so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def block(subscription, active, people, size, cpu):
    WebhookSubscription.objects.filter(pk=subscription.pk).update(is_active=active)
    clear_all()
    one_purchase(people[0])  # the cache warm again
    python_before, pg_before = time.process_time(), backend_cpu_seconds()
    times = [one_purchase(people[index % len(people)]) for index in range(size)]
    cpu["python"] += time.process_time() - python_before
    cpu["pg"] += backend_cpu_seconds() - pg_before
    return times


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
        scratch = {"python": 0.0, "pg": 0.0}
        for _ in range(2):  # warm-up
            block(subscription, False, people, 20, scratch)
            block(subscription, True, people, 20, scratch)
        without, with_event = [], []
        cpu_without, cpu_with = {"python": 0.0, "pg": 0.0}, {"python": 0.0, "pg": 0.0}
        for _ in range(args.blocks):
            without += block(subscription, False, people, args.size, cpu_without)
            with_event += block(subscription, True, people, args.size, cpu_with)
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
    per = {side: {k: v * 1000 / len(without) for k, v in cpu.items()} for side, cpu in (("without", cpu_without),
           ("with", cpu_with))}  # fmt: skip
    total = {side: sum(values.values()) for side, values in per.items()}
    print(  # noqa: T201
        f"CPU per purchase without: {per['without']['python']:.2f} ms Python + {per['without']['pg']:.2f} ms "
        f"PostgreSQL = {total['without']:.2f} ms; with: {per['with']['python']:.2f} + {per['with']['pg']:.2f} = "
        f"{total['with']:.2f} ms; ratio {total['with'] / total['without']:.3f}"
    )


if __name__ == "__main__":
    main()
