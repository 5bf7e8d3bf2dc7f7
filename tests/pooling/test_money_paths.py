"""The money paths through PgBouncer in transaction mode, as production runs them behind it: a gunicorn of the
test's own (one worker, eight threads, persistent connections, CONN_HEALTH_CHECKS) whose DATABASE_URL is the
session's pooler (two server sessions) with DATABASE_POOL_MODE=transaction, and eight client threads at once:
purchases (the pipelined fast path), a refund, sign-ins, redemptions and the points summaries, with replays of the
same keys. The balances, the ledger and the idempotency records come out exact; check_ledger, run through the
pooler too, is clean. Then the pooler drops every client connection (KILL/RESUME) and the next requests still
answer: the health check at the start of a request finds the dead persistent connection and opens another."""

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from loyalty import batch
from loyalty.credentials import create_api_client
from members.services import issue_member_tokens
from points import services
from points.models import IdempotencyRecord, LedgerEntry, PointsAccount, Purchase, Redemption, Reward
from tests.conftest import ALL_SCOPES
from tests.factories import MemberFactory
from tests.faults.conftest import call
from tests.pooling.conftest import POOL_SIZE, manage, together

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.pgbouncer,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

THREADS = 8
PURCHASES_PER_THREAD = 6
SIGN_IN_ATTEMPTS = 4  # per member, each with its own Idempotency-Key: one wins, the others are already_signed_in
REDEMPTION_ATTEMPTS = 5
REWARD_STOCK = 3
REWARD_COST = 100
SIGN_IN_POINTS = 5  # the default rule of the migrations


def amount_of(thread, number):
    return Decimal(10 + 3 * thread + number)  # whole yuan: 1 point each under the rule in force


def test_money_paths_through_the_pooler(pooled_server, pgbouncer, migration_defaults, store_a):
    assert batch.FAST_PATH  # the server takes the pipelined forms on PostgreSQL (loyalty/batch.py)
    services.create_earning_rule(
        actor="staff:setup",
        values={
            "channel": "purchase",
            "name": "Purchase: 1 point per 1 CNY, at once",
            "points_per_unit": Decimal("1"),
            "pending_days": 0,
            "valid_from": timezone.now() - timedelta(days=1),  # newer than the migration's rule: in force
        },
    )
    reward = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=REWARD_COST, stock=REWARD_STOCK)
    members = MemberFactory.create_batch(2, home_store=store_a)
    ids = [str(member.pk) for member in members]
    key = create_api_client(name="POS", all_stores=True, scopes=ALL_SCOPES)[1]
    pos = {"Authorization": f"Api-Key {key}"}
    own = [{"Authorization": f"Bearer {issue_member_tokens(member)['access']}"} for member in members]
    server = pooled_server(workers=1, threads=THREADS)
    port = server.port

    def post(path, body, **headers):
        answer = call(port, "POST", path, body, {**pos, **headers})
        assert answer.status, answer.error
        return answer

    # 1. Purchases: 8 threads x 6 orders on 2 members, each order sent twice (the replay answers 200 with the
    #    same body), with the members' summaries read between them.
    def purchases(thread):
        done = []
        for number in range(PURCHASES_PER_THREAD):
            body = {
                "member": ids[(thread + number) % 2],
                "order_no": f"T{thread}-{number}",
                "amount": f"{amount_of(thread, number)}.00",
                "store": "A001",
            }
            first = post("/api/v1/purchases/", body)
            again = post("/api/v1/purchases/", body)
            read = call(port, "GET", f"/api/v1/members/{body['member']}/points/", headers=pos)
            mine = call(port, "GET", "/api/v1/me/points/", headers=own[(thread + number) % 2])
            done.append((body, first, again, read, mine))
        return done

    placed = [item for items in together(THREADS, purchases) for item in items]
    earned = Counter()
    for body, first, again, read, mine in placed:
        assert first.status == 201, (first.status, first.body)
        points = int(Decimal(body["amount"]))
        assert first.body["points"]["awarded"] == points
        assert first.body["points"]["status"] == "available"
        assert (again.status, again.body) == (200, first.body)  # the replay: the original answer
        assert read.status == 200 and mine.status == 200, (read.body, mine.body)
        assert read.body["available"] >= points  # at least this purchase (others may have landed too)
        earned[body["member"]] += points
    orders = THREADS * PURCHASES_PER_THREAD
    assert Purchase.objects.count() == orders
    assert LedgerEntry.objects.count() == orders

    # 2. At once: a full refund of one of member 0's orders (sent twice by two threads with the same refund_no),
    #    sign-ins of both members (4 keys each), and member 1 redeeming a reward of stock 3 five times.
    refunded_body, refunded = next((body, first) for body, first, *_ in placed if body["member"] == ids[0])
    refund_path = f"/api/v1/purchases/{refunded.body['id']}/refunds/"
    refund = {"amount": refunded_body["amount"], "refund_no": "R-1"}
    jobs = [("refund", 0), ("refund", 1)]
    jobs += [("sign_in", (member, attempt)) for member in range(2) for attempt in range(SIGN_IN_ATTEMPTS)]
    jobs += [("redeem", attempt) for attempt in range(REDEMPTION_ATTEMPTS)]

    def mixed(index):
        kind, which = jobs[index]
        if kind == "refund":
            return kind, which, post(refund_path, refund)
        if kind == "sign_in":
            member, attempt = which
            body = {"member": ids[member], "type": "sign_in"}
            return kind, which, post("/api/v1/events/", body, **{"Idempotency-Key": f"S{member}-{attempt}"})
        body = {"member": ids[1], "reward": str(reward.pk), "quantity": 1}
        return kind, which, post("/api/v1/redemptions/", body, **{"Idempotency-Key": f"D{which}"})

    answers = together(len(jobs), mixed)
    refunds = [answer for kind, _, answer in answers if kind == "refund"]
    # One records the refund, the other (waiting on the same lock) answers it again.
    assert sorted(a.status for a in refunds) == [200, 201], [(a.status, a.body) for a in refunds]
    assert refunds[0].body == refunds[1].body
    assert refunds[0].body["points_reversed"] == int(Decimal(refund["amount"]))

    signed = {}
    for member in range(2):
        outcomes = [a for kind, which, a in answers if kind == "sign_in" and which[0] == member]
        statuses = Counter(a.status if a.status < 400 else a.body["code"] for a in outcomes)
        assert statuses == {201: 1, "already_signed_in": SIGN_IN_ATTEMPTS - 1}, statuses
        winner = next(a for a in outcomes if a.status == 201)
        assert winner.body["points"]["awarded"] == SIGN_IN_POINTS
        signed[member] = (next(w for k, w, a in answers if a is winner)[1], winner.body)

    redemptions = [(which, a) for kind, which, a in answers if kind == "redeem"]
    statuses = Counter(a.status if a.status < 400 else a.body["code"] for _, a in redemptions)
    assert statuses == {201: REWARD_STOCK, "out_of_stock": REDEMPTION_ATTEMPTS - REWARD_STOCK}, statuses
    redeemed = [(which, a.body) for which, a in redemptions if a.status == 201]
    assert all(body["points_spent"] == REWARD_COST for _, body in redeemed)

    # 3. Replays of the same keys, through the pooler on other server sessions: the same body, nothing new.
    for member, (attempt, body) in signed.items():
        again = post(
            "/api/v1/events/", {"member": ids[member], "type": "sign_in"}, **{"Idempotency-Key": f"S{member}-{attempt}"}
        )
        assert again.body == body
    for which, body in redeemed:
        again = post(
            "/api/v1/redemptions/",
            {"member": ids[1], "reward": str(reward.pk), "quantity": 1},
            **{"Idempotency-Key": f"D{which}"},
        )
        assert again.body == body
    again = post(refund_path, refund)
    assert (again.status, again.body) == (200, refunds[0].body)

    # 4. Exact balances, read through the pooler by both summaries, and in the database.
    expected = {
        ids[0]: earned[ids[0]] - int(Decimal(refund["amount"])) + SIGN_IN_POINTS,
        ids[1]: earned[ids[1]] + SIGN_IN_POINTS - REWARD_STOCK * REWARD_COST,
    }
    for index, member_id in enumerate(ids):
        summary = call(port, "GET", f"/api/v1/members/{member_id}/points/", headers=pos)
        mine = call(port, "GET", "/api/v1/me/points/", headers=own[index])
        assert summary.status == mine.status == 200
        assert summary.body["available"] == mine.body["available"] == expected[member_id]
        assert summary.body["pending"] == 0
        assert PointsAccount.objects.get(member_id=member_id).available == expected[member_id]
    kinds = Counter(LedgerEntry.objects.values_list("kind", flat=True))
    assert kinds == {"earn": orders + 2, "reverse": 1, "redeem": REWARD_STOCK}, kinds
    assert Redemption.objects.count() == REWARD_STOCK
    Reward.objects.filter(pk=reward.pk, stock=0).get()
    assert IdempotencyRecord.objects.count() == orders + 1 + 2 + REWARD_STOCK

    # 5. The transactions of all these clients shared the pooler's two server sessions.
    clients = pgbouncer.clients()
    servers = pgbouncer.servers()
    assert len(servers) <= POOL_SIZE, servers
    assert len(clients) > POOL_SIZE, clients  # the server's persistent connections, one per thread that served

    # 6. check_ledger, through the pooler with the same settings.
    checked = manage(pgbouncer, "check_ledger")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Ledger consistent" in checked.stdout

    # 7. The pooler drops every client (as a restarted PgBouncer would): the server's persistent connections are
    #    dead, and the health check at the next request of each thread replaces them: no 503.
    pgbouncer.admin(f"KILL {pgbouncer.database}")
    pgbouncer.admin(f"RESUME {pgbouncer.database}")
    assert pgbouncer.clients() == []
    reads = together(THREADS, lambda i: call(port, "GET", f"/api/v1/members/{ids[i % 2]}/points/", headers=pos))
    assert [r.status for r in reads] == [200] * THREADS, [(r.status, r.body) for r in reads]
    assert {r.body["available"] for r in reads} == set(expected.values())
    late = post("/api/v1/purchases/", {"member": ids[0], "order_no": "LATE", "amount": "7.00", "store": "A001"})
    assert late.status == 201 and late.body["points"]["awarded"] == 7
    assert PointsAccount.objects.get(member_id=ids[0]).available == expected[ids[0]] + 7
    assert "Traceback" not in server.log(), server.log()[-4000:]
