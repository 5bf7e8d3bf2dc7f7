"""Purchases under load while the server's database sessions are terminated (pg_terminate_backend) in the middle
of their transactions: every answer is a 2xx or a 503 (never a 500), every purchase that got a 2xx is in the ledger
once, and every one that did not lands exactly once when retried with the same order_no. check_ledger stays clean.
"""

import threading
import time
from collections import Counter
from random import Random

import pytest

from loyalty.credentials import create_api_client
from members.models import Purchase
from points.audit import ledger_mismatches
from points.models import IdempotencyRecord, LedgerEntry, PointsAccount, PointsLot
from tests.conftest import ALL_SCOPES
from tests.factories import MemberFactory
from tests.faults.conftest import call, observer, sessions, terminate

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLIENTS = 4
MIN_ORDERS_PER_CLIENT = 10
SESSIONS_TO_CUT = 12  # sessions terminated inside a transaction before the killer stops
KILL_EVERY = 0.15  # seconds between two rounds: longer than a purchase, so retries get through
RETRIES = 40
DEADLINE = 90  # seconds for the whole load, a bound for a loaded machine, not a pace


class Killer(threading.Thread):
    """Terminates the server's sessions that are inside a transaction, round after round (every fifth round its
    idle ones too, the persistent connections a later request would reuse), until enough were cut."""

    def __init__(self, application_name):
        super().__init__(daemon=True)
        self.application_name = application_name
        self.cut_in_transaction = self.cut_idle = 0
        self.stop = threading.Event()
        self.start()

    def run(self):
        with observer() as conn:
            round_no = 0
            while self.cut_in_transaction < SESSIONS_TO_CUT and not self.stop.wait(KILL_EVERY):
                round_no += 1
                found = sessions(conn, self.application_name)
                busy = [s["pid"] for s in found if s["xact"]]
                self.cut_in_transaction += terminate(conn, busy)
                if round_no % 5 == 0:
                    self.cut_idle += terminate(conn, [s["pid"] for s in found if not s["xact"]])

    @property
    def done(self):
        return not self.is_alive()


def test_purchases_survive_sessions_terminated_mid_transaction(start_gunicorn, store_a):
    members = MemberFactory.create_batch(3, home_store=store_a)
    headers = {"Authorization": f"Api-Key {create_api_client(name='POS', all_stores=True, scopes=ALL_SCOPES)[1]}"}
    server = start_gunicorn(workers=2, threads=4)
    orders, statuses, lock = {}, Counter(), threading.Lock()
    deadline = time.monotonic() + DEADLINE
    killer = Killer(server.application_name)

    def client(index):
        rng = Random(index)
        number = 0
        while (number < MIN_ORDERS_PER_CLIENT or not killer.done) and time.monotonic() < deadline:
            order_no = f"L{index}-{number}"
            body = {
                "member": str(members[number % len(members)].pk),
                "order_no": order_no,
                "amount": f"{rng.randint(10, 300)}.{rng.randint(0, 99):02d}",
                "store": "A001",
            }
            answers = []
            for _ in range(RETRIES):
                answer = call(server.port, "POST", "/api/v1/purchases/", body, headers, timeout=60)
                answers.append(answer)
                if 200 <= answer.status < 300:
                    break
                time.sleep(0.05)  # a short back-off (the server's Retry-After is meant for real clients)
            with lock:
                orders[order_no] = {"body": body, "answers": answers}
                statuses.update(a.status for a in answers)
            number += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE + 120)
    killer.stop.set()
    killer.join(30)
    assert not any(thread.is_alive() for thread in threads), "the load did not finish"
    assert killer.cut_in_transaction >= SESSIONS_TO_CUT, f"only {killer.cut_in_transaction} sessions cut in time"

    # Every answer is a success or a clear, retryable 503: no 500, no broken connection.
    assert set(statuses) <= {200, 201, 503}, (statuses, _samples(orders))
    hit = [o for o in orders.values() if o["answers"][0].status == 503]
    assert hit, "no request was cut: the fault never happened"
    for unavailable in (a for o in orders.values() for a in o["answers"] if a.status == 503):
        assert unavailable.body["code"] == "temporarily_unavailable"
        assert int(unavailable.headers["retry-after"]) >= 1
    unfinished = [no for no, o in orders.items() if not 200 <= o["answers"][-1].status < 300]
    assert unfinished == [], f"{len(unfinished)} orders never succeeded in {RETRIES} attempts"

    # Each order is in the ledger exactly once, as its final answer says.
    assert Purchase.objects.count() == len(orders)
    assert LedgerEntry.objects.count() == len(orders)
    assert IdempotencyRecord.objects.count() == len(orders)
    assert set(IdempotencyRecord.objects.values_list("status_code", flat=True)) == {201}
    purchases = {p.order_no: p for p in Purchase.objects.all()}
    entries = Counter(LedgerEntry.objects.values_list("reference", flat=True))
    lots = Counter(PointsLot.objects.values_list("purchase__order_no", flat=True))
    pending = Counter()
    for order_no, placed in orders.items():
        final = placed["answers"][-1]
        purchase = purchases[order_no]
        assert final.body["id"] == str(purchase.pk)
        assert final.body["points"]["awarded"] == purchase.points_awarded > 0
        assert f"{purchase.amount:.2f}" == placed["body"]["amount"]
        assert entries[order_no] == 1
        assert lots[order_no] == 1
        if len(placed["answers"]) == 1:
            assert final.status == 201  # answered at once: created then, not a replay
        pending[purchase.member_id] += purchase.points_awarded
    for member in members:
        assert PointsAccount.objects.get(member=member).pending == pending[member.pk]
    assert list(ledger_mismatches()) == []


def _samples(orders):
    """A few of the unexpected answers, for the failure message."""
    odd = [a for o in orders.values() for a in o["answers"] if a.status not in {200, 201, 503}]
    return [(a.status, a.body, a.error) for a in odd[:5]]
