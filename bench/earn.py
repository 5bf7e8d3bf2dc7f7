#!/usr/bin/env python3
"""Earn benchmark: the API's purchase throughput against the raw-SQL ceiling of ../shared/bench/earn_baseline.

One run: drop and create the bench database, migrate it, bulk-insert members (with their points accounts), a
store and an API client, start gunicorn (production settings) on a free 127.0.0.1 port, drive
`POST /api/v1/purchases/` with N keep-alive clients, then `GET /api/v1/members/{id}/points/`, sign-in events
(`POST /api/v1/events/`) and redemptions (`POST /api/v1/redemptions/`), stop gunicorn, run
the baseline with the same number of clients in the same database, and finally `manage.py check_ledger`.

    .venv/bin/python bench/earn.py                        # 16 clients, 20 s, summary block
    .venv/bin/python bench/earn.py --workers 3 --threads 4 --json
    .venv/bin/python bench/earn.py --breakdown 300        # no HTTP load: queries and cProfile of one purchase
    .venv/bin/python bench/earn.py --campaigns 50         # the same with 50 running campaigns, 5 applying
    .venv/bin/python bench/earn.py --redis-url redis://127.0.0.1:6379/9   # Redis cache and broker, as in production

Standard library only (the manage.py and gunicorn subprocesses use .venv). Everything it starts it stops: the
gunicorn process group it started, never anything else. See bench/README.md.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from random import Random

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
DEFAULT_BASELINE = REPO.parent / "shared" / "bench" / "earn_baseline"
OUT = REPO / "bench" / "out"  # git-ignored: gunicorn log, profiles
PURCHASE_PATH = "/api/v1/purchases/"
SUMMARY_PATH = "/api/v1/members/{}/points/"
EVENT_PATH = "/api/v1/events/"
REDEMPTION_PATH = "/api/v1/redemptions/"
STORE_CODE = "BENCH01"
TARGET_RATIO, TARGET_P99_MS, TARGET_READS = 0.20, 100.0, 1000.0

# Runs in `manage.py shell -c` against the bench database. Members are inserted in bulk (register_member does one
# transaction and an audit row per member, far too slow for 10,000); card numbers, phones and referral codes are
# derived from the row number, so they are unique. Each member gets her points account up front, as the
# baseline's bl_accounts rows exist up front.
PREP_SNIPPET = r"""
import json
from members.models import Member, Store
from loyalty.access import CLIENT_SCOPES
from loyalty.credentials import create_api_client
from members.services.membership import REFERRAL_ALPHABET, _luhn_check_digit
from points.models import PointsAccount, Reward

count = __MEMBERS__
store = Store.objects.create(code="__STORE__", name="Bench store", city="Shanghai")

def referral_code(i):
    chars = []
    for _ in range(7):
        i, r = divmod(i, len(REFERRAL_ALPHABET))
        chars.append(REFERRAL_ALPHABET[r])
    return "Z" + "".join(reversed(chars))

def member_no(i):
    body = f"9{i:010d}"
    return body + _luhn_check_digit(body)

batch = 5000
for start in range(0, count, batch):
    Member.objects.bulk_create([
        Member(member_no=member_no(i), referral_code=referral_code(i), phone=f"+86139{i:08d}", name=f"bench {i}",
               home_store=store, channel="import")
        for i in range(start, min(start + batch, count))
    ])
ids = list(Member.objects.order_by("id").values_list("id", flat=True))
PointsAccount.objects.bulk_create([PointsAccount(member_id=i) for i in ids], batch_size=batch)
# For all stores, as keys bound to no store were before `all_stores` (the figures stay comparable).
client, key = create_api_client(name="bench client", all_stores=True, scopes=sorted(CLIENT_SCOPES))
# The redemption phase's reward: 1 point, unlimited stock, no per-member limit (a sign-in's 5 points pay for five).
reward = Reward.objects.create(code="bench-gift", name="Bench gift", kind="gift", cost_points=1)
print("BENCH_PREP " + json.dumps({"key": key, "member_ids": ids, "reward": reward.pk}))
"""

# --webhook: an active subscription to points.earned (made directly: its URL is never called, so it skips the
# service's DNS check), so that every purchase writes its event into the outbox, as in production.
WEBHOOK_SNIPPET = r"""
import json
from loyalty.models import WebhookSubscription
made = WebhookSubscription.objects.create(url="https://hooks.bench.invalid/", events=["points.earned"], secret="b" * 32)
print("BENCH_WEBHOOK " + json.dumps({"subscription": made.pk}))
"""

# Runs in `manage.py shell -c`: one purchase and one summary read through Django's test Client (the full
# middleware and DRF stack, no gunicorn), their SQL, then N purchases timed plainly and N more under cProfile.
# --campaigns N: N running campaigns, of which `applying` apply to every bench purchase (three stacked multipliers,
# one "best" multiplier and one with a budget far larger than the run needs); the others are purchase campaigns
# that fail their targeting or conditions (two thirds for other stores, one third for another weekday), so that
# each is evaluated on every purchase. Created through the marketers' service, as a marketer would.
CAMPAIGNS_SNIPPET = r"""
import json
from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from campaigns import services
from loyalty.clock import business_tz
from members.models import Store

total, applying = __TOTAL__, __APPLYING__
start = timezone.now() - timedelta(hours=1)
other_day = timezone.now().astimezone(business_tz()).isoweekday() % 7 + 1
others = [Store.objects.create(code=f"OTHER{i:02d}", name=f"Other store {i}") for i in range(10)]
shapes = [
    {"multiplier": Decimal("1.5")},
    {"multiplier": Decimal("1.2")},
    {"multiplier": Decimal("1.1")},
    {"multiplier": Decimal("2"), "stacking": "best"},
    {"multiplier": Decimal("1.3"), "budget_points": 2_000_000_000},
]
made = 0
for i in range(total):
    if i < applying:
        values = dict(shapes[i % len(shapes)], target={"stores": ["__STORE__"]})
    elif i % 3:
        values = {"multiplier": Decimal("2"), "target": {"stores": [others[i % 10].code]}}
    else:
        values = {"multiplier": Decimal("2"), "conditions": {"weekdays": [other_day]}}
    campaign = services.create_campaign(
        actor="bench", values={"name": f"bench {i}", "kind": "multiplier", "starts_at": start, **values}
    )
    services.activate_campaign(actor="bench", campaign_id=campaign.pk)
    made += 1
print("BENCH_CAMPAIGNS " + json.dumps({"campaigns": made, "applying": min(applying, total)}))
"""

BREAKDOWN_SNIPPET = r"""
import cProfile, json, pstats, random, time
from django.db import connection
from django.test import Client

key, ids, n, reward = "__KEY__", __IDS__, __N__, __REWARD__
rng = random.Random(7)
client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Api-Key {key}")
seq, signed_in = [0], []

def purchase():
    seq[0] += 1
    body = {"member": str(rng.choice(ids)), "order_no": f"BD-{seq[0]}",
            "amount": f"{rng.randint(100, 50000) / 100:.2f}", "store": "__STORE__", "channel": "offline"}
    response = client.post("/api/v1/purchases/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, (response.status_code, response.content[:300])

def summary():
    response = client.get(f"/api/v1/members/{rng.choice(ids)}/points/")
    assert response.status_code == 200, (response.status_code, response.content[:300])

def sign_in():
    # Each member once (one sign-in a business day): the members in order; each gets the rule's 5 points.
    member = ids[len(signed_in)]
    seq[0] += 1
    response = client.post("/api/v1/events/", json.dumps({"member": str(member), "type": "sign_in"}),
                           content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"BD-E-{seq[0]}")
    assert response.status_code == 201, (response.status_code, response.content[:300])
    signed_in.append(member)

def redeem():
    # The 1-point reward, from the members who signed in, in turn (5 points each: at most 5 redemptions each).
    seq[0] += 1
    member = signed_in[seq[0] % len(signed_in)]
    response = client.post("/api/v1/redemptions/", json.dumps({"member": str(member), "reward": reward, "quantity": 1}),
                           content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"BD-R-{seq[0]}")
    assert response.status_code == 201, (response.status_code, response.content[:300])

for _ in range(50):  # warm-up: imports, connection, caches
    purchase(); summary()

class QueryTimer:
    # Times every execute on the client side (send, server work, receive) with perf_counter; the times Django
    # captures itself are rounded to the millisecond.

    def __init__(self):
        self.calls = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.calls.append((sql, (time.perf_counter() - started) * 1000))

def capture(fn):
    timer = QueryTimer()
    with connection.execute_wrapper(timer):
        started = time.perf_counter(); fn(); wall = time.perf_counter() - started
    return {"wall_ms": wall * 1000, "queries": [{"sql": sql[:150], "ms": ms} for sql, ms in timer.calls]}

def timed(fn, count):
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) * 1000 / count

def cpu_timed(fn, count):
    # This process's CPU time (Django, DRF, the ORM, psycopg), not PostgreSQL's: steadier than wall time on a
    # machine that other work shares.
    started = time.process_time()
    for _ in range(count):
        fn()
    return (time.process_time() - started) * 1000 / count

def sql_per_call(fn, count):
    timer = QueryTimer()
    with connection.execute_wrapper(timer):
        for _ in range(count):
            fn()
    return len(timer.calls) / count, sum(ms for _sql, ms in timer.calls) / count

def healthz():
    assert client.get("/healthz").status_code == 200

result = {"purchase_one": capture(purchase), "summary_one": capture(summary),
          "purchase_ms": timed(purchase, n), "summary_ms": timed(summary, n), "healthz_ms": timed(healthz, n)}
result["purchase_cpu_ms"], result["summary_cpu_ms"] = cpu_timed(purchase, n), cpu_timed(summary, n)
result["purchase_queries"], result["purchase_sql_ms"] = sql_per_call(purchase, n)
result["summary_queries"], result["summary_sql_ms"] = sql_per_call(summary, n)
result["event_one"] = capture(sign_in)
result["event_ms"], result["event_cpu_ms"] = timed(sign_in, n), cpu_timed(sign_in, n)
result["event_queries"], result["event_sql_ms"] = sql_per_call(sign_in, n)
result["redemption_one"] = capture(redeem)
result["redemption_ms"], result["redemption_cpu_ms"] = timed(redeem, n), cpu_timed(redeem, n)
result["redemption_queries"], result["redemption_sql_ms"] = sql_per_call(redeem, n)

BUCKETS = [
    ("request total (handler + middleware)", "django/core/handlers/base.py", "get_response"),
    ("DRF dispatch (view + auth + render)", "rest_framework/views.py", "dispatch"),
    ("authentication (Api-Key)", "members/authentication.py", "authenticate"),
    ("  authenticate_api_key (lookup + hash)", "members/services/access.py", "authenticate_api_key"),
    ("permission check", "rest_framework/views.py", "check_permissions"),
    ("input serializer is_valid", "rest_framework/serializers.py", "is_valid"),
    ("existing_member", "points/views.py", "existing_member"),
    ("fingerprint (request hash)", "points/views.py", "fingerprint"),
    ("record_purchase (service, 1 transaction)", "points/services/purchases.py", "record_purchase"),
    ("  idempotency.claim", "points/services/idempotency.py", "claim"),
    ("  lock_accounts", "points/services/ledger.py", "lock_accounts"),
    ("  current_policy", "points/services/ledger.py", "current_policy"),
    ("  _purchase_award (rule_for + cap)", "points/services/purchases.py", "_purchase_award"),
    ("    rule_for", "points/services/earning.py", "rule_for"),
    ("  _earlier_deduction", "points/services/purchases.py", "_earlier_deduction"),
    ("  earn (entry + lot)", "points/services/ledger.py", "earn"),
    ("  hook: tier multiplier (tiers)", "tiers/services.py", "tier_multiplier_lines"),
    ("  hook: growth value + upgrade (tiers)", "tiers/services.py", "on_activity"),
    ("  hook: campaigns (campaign_lines)", "campaigns/services/engine.py", "campaign_lines"),
    ("  save_account", "points/services/ledger.py", "save_account"),
    ("  idempotency.complete", "points/services/idempotency.py", "complete"),
    ("  COMMIT (Atomic.__exit__)", "django/db/transaction.py", "__exit__"),
    ("response render (JSONRenderer)", "rest_framework/renderers.py", "render"),
    ("SQL compile (ORM, all)", "django/db/models/sql/compiler.py", "as_sql"),
    ("SQL execute (cursor.execute, all)", "django/db/backends/utils.py", "execute"),
    ("model __init__ (ORM rows)", "django/db/models/base.py", "__init__"),
]
READ_BUCKETS = [
    ("request total (handler + middleware)", "django/core/handlers/base.py", "get_response"),
    ("DRF dispatch (view + auth + render)", "rest_framework/views.py", "dispatch"),
    ("authentication (Api-Key)", "members/authentication.py", "authenticate"),
    ("get_visible_member_or_404", "members/views.py", "get_visible_member_or_404"),
    ("  prepare_member_queryset (member fields)", "members/extensions.py", "prepare_member_queryset"),
    ("  prefetch_related (tags)", "django/db/models/query.py", "prefetch_related_objects"),
    ("points_summary", "points/selectors.py", "points_summary"),
    ("response render (JSONRenderer)", "rest_framework/renderers.py", "render"),
    ("SQL compile (ORM, all)", "django/db/models/sql/compiler.py", "as_sql"),
    ("SQL execute (cursor.execute, all)", "django/db/backends/utils.py", "execute"),
]

def profile(fn, buckets):
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    parts = []
    for label, suffix, name in buckets:
        total = sum(v[3] for (f, _l, fn_), v in stats.items() if fn_ == name and f.endswith(suffix))
        parts.append({"part": label, "ms": total * 1000 / n})
    top = sorted(((v[3], f"{f.split('site-packages/')[-1]}:{l}({fn_})") for (f, l, fn_), v in stats.items()),
                 reverse=True)[:60]
    return parts, [{"ms": t * 1000 / n, "function": name} for t, name in top]

result["profiled_purchase"], result["profiled_purchase_top"] = profile(purchase, BUCKETS)
result["profiled_summary"], result["profiled_summary_top"] = profile(summary, READ_BUCKETS)
print("BENCH_BREAKDOWN " + json.dumps(result))
"""

# What a py-spy profile of the gunicorn workers is summed into: inclusive share of the samples in which a thread
# held the GIL (py-spy --gil), i.e. of the Python CPU time of the workers, per frame found anywhere in the stack.
PYSPY_BUCKETS = [
    ("gunicorn worker, request thread (parse, handle, respond)", "handle (gunicorn/workers/"),
    ("Django handler (middleware + view)", "get_response (django/core/handlers/base.py"),
    ("DRF dispatch (auth + permission + view + render)", "dispatch (rest_framework/views.py"),
    ("authentication (Api-Key)", "authenticate (members/authentication.py"),
    ("input serializer is_valid", "is_valid (rest_framework/serializers.py"),
    ("existing_member", "existing_member (points/views.py"),
    ("get_visible_member_or_404", "get_visible_member_or_404 (members/views.py"),
    ("  prepare_member_queryset (member fields)", "prepare_member_queryset (members/extensions.py"),
    ("points_summary", "points_summary (points/selectors.py"),
    ("record_purchase", "record_purchase (points/services/purchases.py"),
    ("  idempotency.claim", "claim (points/services/idempotency.py"),
    ("  lock_accounts", "lock_accounts (points/services/ledger.py"),
    ("  current_policy", "current_policy (points/services/ledger.py"),
    ("  rule_for", "rule_for (points/services/earning.py"),
    ("  _earlier_deduction", "_earlier_deduction (points/services/purchases.py"),
    ("  earn", "earn (points/services/ledger.py"),
    ("  hook: tier multiplier (tiers)", "tier_multiplier_lines (tiers/services.py"),
    ("  hook: growth value + upgrade (tiers)", "on_activity (tiers/services.py"),
    ("  idempotency.complete", "complete (points/services/idempotency.py"),
    ("response render", "render (rest_framework/renderers.py"),
    ("ORM: building querysets (filter/get/_clone)", "_filter_or_exclude (django/db/models/query.py"),
    ("ORM: SQL compile (as_sql)", "as_sql (django/db/models/sql/compiler.py"),
    ("psycopg cursor.execute (Python side)", "execute (psycopg/cursor.py"),
    ("connection health check (SELECT 1)", "is_usable (django/db/backends/postgresql/base.py"),
    ("connection health check (socket poll first)", "close_if_health_check_failed (loyalty/backends/postgresql/"),
    ("COMMIT", "commit (psycopg/connection.py"),
]


def log(message):
    print(f"[earn {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Purchases/s of POST /api/v1/purchases/ under gunicorn + PostgreSQL, as a ratio to "
        "../shared/bench/earn_baseline, and the points summary read rate."
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients, API and baseline [16]")
    parser.add_argument("--seconds", type=float, default=20, help="purchase load and baseline duration [20]")
    parser.add_argument("--warmup", type=float, default=3, help="uncounted purchase warm-up seconds [3]")
    parser.add_argument("--read-seconds", type=float, default=10, help="summary read load duration [10]")
    parser.add_argument("--read-clients", type=int, default=None, help="clients for the reads [--clients]")
    parser.add_argument(
        "--event-seconds",
        type=float,
        default=10,
        help="sign-in events (POST /api/v1/events/, each member once) for this long, then as long redemptions of a "
        "1-point reward by those members (POST /api/v1/redemptions/); 0 skips both [10]",
    )
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=5,
        help="seconds of GET /healthz (no database, no DRF): the framework's ceiling on this "
        "machine, for comparison; 0 skips it [5]",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis as cache and Celery broker, as in production, e.g. redis://127.0.0.1:6379/9: the messages a "
        "redemption sends are queued there (no worker takes them; they stay) instead of being sent inside the "
        "request, as they are without it [unset: eager tasks, in-process cache, as the earlier figures]",
    )
    parser.add_argument(
        "--pgbouncer",
        metavar="BIN",
        help="put PgBouncer (this binary, e.g. /usr/sbin/pgbouncer from Debian's pgbouncer package) between gunicorn "
        "and PostgreSQL: started on a free port in transaction pooling mode with --pool-size server sessions, the "
        "server run with DATABASE_POOL_MODE=transaction (docs/SCALING.md); migrate, the data and check_ledger "
        "connect directly [off]",
    )
    parser.add_argument("--pool-size", type=int, default=4, help="PgBouncer's default_pool_size [4]")
    parser.add_argument("--members", type=int, default=10_000, help="members to insert [10000]")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker [4]")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class [gthread]")
    parser.add_argument(
        "--server-url",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server, without a database name [postgresql://postgres@127.0.0.1:5432]",
    )
    parser.add_argument("--db", default="loyalty_bench", help="bench database, dropped and created [loyalty_bench]")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=DEFAULT_BASELINE,
        help="earn_baseline script [../shared/bench/earn_baseline from the repo root]",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline (no ratio)")
    parser.add_argument(
        "--py-spy",
        metavar="BIN",
        help="record the gunicorn workers with this py-spy binary during "
        "the purchase load (bench/out/pyspy-*.txt); slows the run, do not report its numbers",
    )
    parser.add_argument(
        "--breakdown",
        type=int,
        metavar="N",
        default=0,
        help="no HTTP load: count the SQL of one purchase and one read, time N of each in-process "
        "(Django test Client) and profile N purchases with cProfile",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        metavar="PCT",
        default=0,
        help="before starting, wait (up to --wait-max s) until the machine is less than PCT%% busy "
        "(other sessions' test runs skew the numbers) [off]",
    )
    parser.add_argument("--wait-max", type=float, default=600, help="longest wait for --wait-quiet [600]")
    parser.add_argument(
        "--campaigns",
        type=int,
        metavar="N",
        default=0,
        help="run with N active campaigns, of which --campaigns-applying apply to every purchase [0]",
    )
    parser.add_argument(
        "--campaigns-applying", type=int, default=None, metavar="K", help="campaigns that apply [N // 10, at least 1]"
    )
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="with an active webhook subscription to points.earned: every purchase writes its outbox event (the "
        "delivery itself is a worker's, so nothing is sent here)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the load [1]")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the summary")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*bench[a-z0-9_]*", args.db):
        parser.error("--db must be a plain lower-case name containing 'bench' (it is dropped and re-created)")
    if args.clients < 1 or args.members < 1 or args.workers < 1 or args.threads < 1:
        parser.error("--clients, --members, --workers and --threads must be positive")
    args.read_clients = args.read_clients or args.clients
    if args.campaigns_applying is None:
        args.campaigns_applying = max(args.campaigns // 10, 1) if args.campaigns else 0
    return args


# --- Environment, database and data ---------------------------------------------------------------------------


def service_env(dsn, redis_url=None):
    """The environment of every manage.py and gunicorn subprocess: production settings on the bench database;
    with `redis_url`, Redis as cache and Celery broker as in production (tasks queued, not run), else none (tasks
    run eagerly in the request, the cache is in-process)."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(
        {
            "DATABASE_URL": dsn,
            "ENVIRONMENT": "production",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SMS_BACKEND": "loyalty.messaging.HttpSmsBackend",  # production refuses the outbox; no SMS is sent here
            "CONN_MAX_AGE": "60",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            # No broker here: the nudge after commit would deliver inside the request. Production's workers deliver.
            "WEBHOOKS_KICK_ON_COMMIT": "false",
        }
    )
    return env


def psql(server_url, sql, database="postgres"):
    return subprocess.run(
        ["psql", f"{server_url}/{database}", "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def reset_database(server_url, name):
    psql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(server_url, f'CREATE DATABASE "{name}"')


def manage(env, *args, timeout=900):
    return subprocess.run(
        [str(VENV_BIN / "python"), "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shell_json(env, snippet, marker):
    done = manage(env, "shell", "--no-imports", "-c", snippet)
    for line in done.stdout.splitlines():
        if line.startswith(marker + " "):
            return json.loads(line[len(marker) + 1 :])
    raise RuntimeError(f"manage.py shell failed (rc {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def prepare(env, members):
    snippet = PREP_SNIPPET.replace("__MEMBERS__", str(members)).replace("__STORE__", STORE_CODE)
    return shell_json(env, snippet, "BENCH_PREP")


def machine_info(server_url, database):
    def git(*args):
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "+changes"
    settings = {}
    for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers", "max_connections"):
        try:
            settings[name] = psql(server_url, f"SHOW {name}", database)
        except subprocess.CalledProcessError:
            settings[name] = "unknown"
    return {
        "date": datetime.datetime.now().astimezone().date().isoformat(),
        "commit": commit,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "postgres": settings,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


# --- gunicorn ---------------------------------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    """The one gunicorn this run starts, in its own process group, and stops (TERM, then KILL) by that group."""

    def __init__(self, env, *, workers, threads, worker_class, log_path):
        self.port = free_port()
        self.log_path = log_path
        self.command = [
            str(VENV_BIN / "gunicorn"),
            "loyalty.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            worker_class,
            "--timeout",
            "60",
            "--keep-alive",
            "10",
            "--log-level",
            "warning",
            "--error-logfile",
            "-",
        ]
        self.env = env
        self.process = None

    def start(self, timeout=60):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    connection.close()
                    return
                connection.close()
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz within {timeout} s:\n{self.log_tail()}")

    def worker_pids(self):
        try:
            return [
                int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            ]
        except OSError:
            return []

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # our own group: start_new_session=True made pgid == pid
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass
        finally:
            self._log.close()

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- CPU accounting ---------------------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


class PgBouncer:
    """A PgBouncer of this run's own: its config in a temporary directory, a free port, transaction pooling, trust
    authentication towards the local server as the URL's user; stopped by its own process id."""

    def __init__(self, binary, server_url, database, pool_size):
        match = re.fullmatch(r"postgresql://(?P<user>[^@/:]+)@(?P<host>[^:/]+):(?P<port>\d+)", server_url)
        if not match:
            raise SystemExit("--pgbouncer needs --server-url of the form postgresql://USER@HOST:PORT")
        self.binary, self.database, self.pool_size = binary, database, pool_size
        self.user, self.host, self.server_port = match["user"], match["host"], match["port"]
        self.port = free_port()
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
        self.directory = Path(tempfile.mkdtemp(prefix="earn-pgbouncer-"))
        self.process = None

    def start(self, timeout=20):
        self.directory.chmod(0o755)  # started as root, PgBouncer drops to the server's user (-u), who reads these
        (self.directory / "users.txt").write_text(f'"{self.user}" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{self.database} = host={self.host} port={self.server_port} dbname={self.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.directory / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\nmax_client_conn = 500\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        for path in self.directory.iterdir():
            path.chmod(0o644)
        (self.directory / "pgbouncer.log").touch(mode=0o666)
        (self.directory / "pgbouncer.log").chmod(0o666)
        command = [self.binary, str(config)]
        if os.geteuid() == 0:
            command[1:1] = ["-u", self.user]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"PgBouncer exited: {self.process.stderr.read()[-2000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError("PgBouncer did not listen in time")

    def stop(self):
        """Stops it (TERM, then KILL); returns the warning and error lines of its log."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log_path = self.directory / "pgbouncer.log"
        lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
        shutil.rmtree(self.directory, ignore_errors=True)
        return [line for line in lines if " WARNING " in line or " ERROR " in line][:20]


def machine_cpu():
    """(busy, total, irq) jiffies over all cores, from /proc/stat (irq: hard and soft interrupts, where much of
    the loopback TCP work is accounted)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8]), fields[5] + fields[6]


def process_cpu(pid):
    """utime + stime of one process (all its threads), in seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_processes(database):
    """({pid: cpu} of the backends serving the bench database, {pid: cpu} of every PostgreSQL process)."""
    mine, every = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"postgres") or cmdline.startswith(b"/usr/lib/postgresql/"):
                pid = int(entry.name)
                every[pid] = process_cpu(pid)
                if f" {database} ".encode() in cmdline:
                    mine[pid] = every[pid]
    return mine, every


class CpuMeter:
    """CPU seconds used during a phase by gunicorn (master and workers), the bench database's PostgreSQL
    backends, PostgreSQL's other processes (WAL writer, checkpointer, and any other database's backends),
    interrupts, this load generator, and the whole machine, so what everything else used shows too."""

    def __init__(self, gunicorn, database):
        self.gunicorn, self.database = gunicorn, database

    def _sample(self):
        guni = [self.gunicorn.process.pid, *self.gunicorn.worker_pids()]
        mine, every = postgres_processes(self.database)
        return {
            "gunicorn": {p: process_cpu(p) for p in guni},
            "postgres": mine,
            "pg_all": every,
            "loadgen": sum(os.times()[:2]),
            "machine": machine_cpu(),
            "wall": time.perf_counter(),
        }

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        self.end = self._sample()

    def report(self, completed):
        start, end = self.start, self.end
        wall = end["wall"] - start["wall"]

        def delta(kind):
            return sum(end[kind][p] - start[kind].get(p, 0.0) for p in end[kind])

        busy, total, irq = ((end["machine"][i] - start["machine"][i]) / TICKS for i in range(3))
        used = {
            "gunicorn": delta("gunicorn"),
            "postgres": delta("postgres"),
            "postgres_aux": max(delta("pg_all") - delta("postgres"), 0.0),
            "irq": irq,
            "loadgen": end["loadgen"] - start["loadgen"],
        }
        used["other"] = max(busy - sum(used.values()), 0.0)
        per = max(completed, 1)
        return {
            "wall_s": round(wall, 2),
            "machine_busy_pct": round(100 * busy / total, 1) if total else None,
            "cpu_s": {k: round(v, 2) for k, v in used.items()},
            "cpu_ms_per_request": {k: round(1000 * v / per, 2) for k, v in used.items()},
        }


def background_cpu(seconds=2.0):
    """Share of the machine busy before this run starts anything (other sessions' tests, builds)."""
    b0, t0, _ = machine_cpu()
    time.sleep(seconds)
    b1, t1, _ = machine_cpu()
    return round(100 * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else None


# --- Load -------------------------------------------------------------------------------------------------------


def percentile(ordered, fraction):
    """Nearest-rank percentile of a sorted list."""
    if not ordered:
        return None
    index = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def drive(port, clients, seconds, make_request, headers, seed):
    """`clients` threads, one keep-alive connection each, sending make_request(rng, client, n) -> (method, path,
    body[, extra headers]) until the deadline. Returns throughput (2xx per second of the window), latency
    percentiles and non-2xx counts."""
    barrier = threading.Barrier(clients + 1)
    per_client = [None] * clients

    def run(index):
        rng = Random(seed * 1000 + index)
        latencies, statuses, samples = [], Counter(), {}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = 0
        barrier.wait()
        deadline = start_at[0] + seconds
        last_end = time.perf_counter()
        while time.perf_counter() < deadline:
            method, path, body, *extra = make_request(rng, index, n)
            n += 1
            started = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers={**headers, **extra[0]} if extra else headers)
                response = connection.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status, data = f"exception {type(exc).__name__}", str(exc).encode()
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            last_end = time.perf_counter()
            statuses[status] += 1
            if isinstance(status, int) and 200 <= status < 300:
                latencies.append(last_end - started)
            elif status not in samples:
                samples[status] = data[:300].decode("utf-8", "replace")
        connection.close()
        per_client[index] = (latencies, statuses, samples, last_end)

    start_at = [0.0]
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_at[0] = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join(seconds + 120)
    latencies, statuses, samples, ends = [], Counter(), {}, []
    for entry in per_client:
        if entry is None:
            statuses["client thread did not finish"] += 1
            continue
        latencies += entry[0]
        statuses.update(entry[1])
        for key, value in entry[2].items():
            samples.setdefault(key, value)
        ends.append(entry[3])
    elapsed = max(ends, default=start_at[0] + seconds) - start_at[0]
    latencies.sort()
    ok = len(latencies)
    errors = {str(k): v for k, v in statuses.items() if not (isinstance(k, int) and 200 <= k < 300)}
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "ok": ok,
        "per_second": round(ok / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1) if ok else None,
        "p90_ms": round(percentile(latencies, 0.90) * 1000, 1) if ok else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if ok else None,
        "max_ms": round(latencies[-1] * 1000, 1) if ok else None,
        "errors": sum(errors.values()),
        "error_counts": errors,
        "error_samples": {str(k): v for k, v in samples.items()},
    }


def purchase_maker(member_ids, run_tag):
    def make(rng, client, n):
        cents = rng.randint(1_000, 50_000)
        body = {
            "member": str(rng.choice(member_ids)),
            "order_no": f"{run_tag}-{client}-{n}",
            "amount": f"{cents // 100}.{cents % 100:02d}",
            "store": STORE_CODE,
            "channel": "offline",
        }
        return "POST", PURCHASE_PATH, json.dumps(body).encode()

    return make


def summary_maker(member_ids):
    def make(rng, client, n):
        return "GET", SUMMARY_PATH.format(rng.choice(member_ids)), None

    return make


def sign_in_maker(member_ids, run_tag, used):
    """Sign-in events of members in turn, each once (one a business day); `used` collects the members asked."""
    turn = iter(member_ids)  # next() on a shared iterator: one member per request, across the client threads

    def make(rng, client, n):
        member = next(turn)  # StopIteration (more requests than members) ends the client's thread loudly
        used.append(member)
        body = {"member": str(member), "type": "sign_in"}
        return "POST", EVENT_PATH, json.dumps(body).encode(), {"Idempotency-Key": f"{run_tag}-e-{client}-{n}"}

    return make


def redemption_maker(member_ids, reward, run_tag):
    """Redemptions of the 1-point reward by the members who signed in (5 points each), in turn."""
    counter = iter(range(10**9))

    def make(rng, client, n):
        member = member_ids[next(counter) % len(member_ids)]
        body = {"member": str(member), "reward": reward, "quantity": 1}
        return "POST", REDEMPTION_PATH, json.dumps(body).encode(), {"Idempotency-Key": f"{run_tag}-r-{client}-{n}"}

    return make


# --- Baseline, ledger check, profiles ---------------------------------------------------------------------------


def run_baseline(path, clients, seconds, dsn):
    path = Path(path)
    if not path.is_file():
        return {"tps": None, "error": f"no baseline script at {path}"}
    done = subprocess.run(
        [str(path), "--clients", str(clients), "--seconds", str(int(seconds)), "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=seconds + 600,
    )
    match = re.search(r"earn_baseline_tps=([0-9.]+)", done.stdout)
    if done.returncode != 0 or not match:
        return {"tps": None, "error": f"rc {done.returncode}: {(done.stdout + done.stderr).strip()[-500:]}"}
    return {"tps": float(match.group(1)), "line": done.stdout.strip()}


def check_ledger(env):
    done = manage(env, "check_ledger")
    output = (done.stdout + done.stderr).strip()
    return {"passed": done.returncode == 0, "returncode": done.returncode, "output": output[-1500:]}


def database_counts(server_url, database):
    sql = (
        "SELECT (SELECT count(*) FROM members_purchase), (SELECT count(*) FROM points_ledgerentry), "
        "(SELECT count(*) FROM points_pointslot), (SELECT count(*) FROM points_idempotencyrecord)"
    )
    purchases, entries, lots, idempotency = psql(server_url, sql, database).split("|")
    return {
        "purchases": int(purchases),
        "ledger_entries": int(entries),
        "lots": int(lots),
        "idempotency_records": int(idempotency),
    }


def start_py_spy(binary, gunicorn, seconds, name):
    path = OUT / f"pyspy-{name}.txt"
    command = [
        binary,
        "record",
        "--pid",
        str(gunicorn.process.pid),
        "--subprocesses",
        "--gil",
        "--nonblocking",
        "--rate",
        "200",
        "--duration",
        str(int(seconds)),
        "--format",
        "raw",
        "--output",
        str(path),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    time.sleep(1.0)  # let it attach before the load starts
    return process, path


def summarise_py_spy(path):
    """Inclusive share of all samples (GIL held) per bucket, from py-spy's collapsed stacks."""
    totals, total = Counter(), 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for label, needle in PYSPY_BUCKETS:
            if needle in stack:
                totals[label] += int(count)
    return {
        "samples": total,
        "share": {label: round(totals[label] / total, 3) if total else None for label, _ in PYSPY_BUCKETS},
    }


# --- Main -------------------------------------------------------------------------------------------------------


def run(args):
    dsn = f"{args.server_url}/{args.db}"
    env = service_env(dsn, args.redis_url)
    result = {
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "read_seconds": args.read_seconds,
            "read_clients": args.read_clients,
            "event_seconds": args.event_seconds,
            "redis_url": args.redis_url,
            "pgbouncer": bool(args.pgbouncer),
            "pool_size": args.pool_size if args.pgbouncer else None,
            "members": args.members,
            "workers": args.workers,
            "threads": args.threads,
            "worker_class": args.worker_class,
            "database": dsn,
            "campaigns": args.campaigns,
            "campaigns_applying": args.campaigns_applying,
            "webhook": args.webhook,
        }
    }
    background, waited = background_cpu(), 0.0
    while args.wait_quiet and background >= args.wait_quiet and waited < args.wait_max:
        log(f"machine {background}% busy; waiting for < {args.wait_quiet:g}%")
        time.sleep(8)
        waited += 10
        background = background_cpu()
    log(f"resetting database {args.db} (machine {background}% busy before the run)")
    reset_database(args.server_url, args.db)
    result["machine"] = machine_info(args.server_url, args.db)
    result["machine"]["busy_pct_before_run"] = background
    log("migrating")
    done = manage(env, "migrate", "--noinput")
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    log(f"inserting {args.members} members, their accounts, a store and an API client")
    started = time.perf_counter()
    prepared = prepare(env, args.members)
    member_ids = prepared["member_ids"]
    result["prepare_seconds"] = round(time.perf_counter() - started, 1)
    if args.campaigns:
        log(f"creating {args.campaigns} campaigns, {args.campaigns_applying} of them applying to every purchase")
        snippet = (
            CAMPAIGNS_SNIPPET.replace("__TOTAL__", str(args.campaigns))
            .replace("__APPLYING__", str(args.campaigns_applying))
            .replace("__STORE__", STORE_CODE)
        )
        result["campaigns"] = shell_json(env, snippet, "BENCH_CAMPAIGNS")
    if args.webhook:
        log("subscribing a webhook to points.earned")
        shell_json(env, WEBHOOK_SNIPPET, "BENCH_WEBHOOK")

    if args.breakdown:
        log(f"in-process breakdown over {args.breakdown} purchases and reads")
        snippet = (
            BREAKDOWN_SNIPPET.replace("__KEY__", prepared["key"])
            .replace("__N__", str(args.breakdown))
            .replace("__IDS__", json.dumps(member_ids))
            .replace("__STORE__", STORE_CODE)
            .replace("__REWARD__", str(prepared["reward"]))
        )
        result["breakdown"] = shell_json(env, snippet, "BENCH_BREAKDOWN")
        result["check_ledger"] = check_ledger(env)
        return result

    headers = {
        "Authorization": f"Api-Key {prepared['key']}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Host": "127.0.0.1",
    }
    pooler, server_env = None, env
    if args.pgbouncer:
        pooler = PgBouncer(args.pgbouncer, args.server_url, args.db, args.pool_size)
        log(f"starting PgBouncer (transaction pooling, {args.pool_size} server sessions) on port {pooler.port}")
        pooler.start()
        server_env = {**env, "DATABASE_URL": pooler.url, "DATABASE_POOL_MODE": "transaction"}
    gunicorn = Gunicorn(
        server_env,
        workers=args.workers,
        threads=args.threads,
        worker_class=args.worker_class,
        log_path=OUT / "gunicorn.log",
    )
    run_tag = f"B{int(time.time())}"
    try:
        log(f"starting gunicorn ({args.worker_class}, {args.workers} workers x {args.threads} threads)")
        gunicorn.start()
        result["config"]["gunicorn"] = " ".join(gunicorn.command[1:])
        if args.warmup:
            log(f"warm-up {args.warmup:g} s")
            warm = drive(
                gunicorn.port,
                args.clients,
                args.warmup,
                purchase_maker(member_ids, run_tag + "w"),
                headers,
                args.seed + 99,
            )
            result["warmup"] = {"ok": warm["ok"], "errors": warm["errors"]}
        spy = None
        if args.py_spy:
            spy = start_py_spy(args.py_spy, gunicorn, args.seconds, "purchases")
        log(f"purchases: {args.clients} clients for {args.seconds:g} s")
        with CpuMeter(gunicorn, args.db) as meter:
            result["purchases"] = drive(
                gunicorn.port, args.clients, args.seconds, purchase_maker(member_ids, run_tag), headers, args.seed
            )
        result["purchases"]["cpu"] = meter.report(result["purchases"]["ok"])
        if spy:
            spy[0].wait(timeout=60)
            result["py_spy_purchases"] = {"file": str(spy[1]), **summarise_py_spy(spy[1])}
        log(f"summary reads: {args.read_clients} clients for {args.read_seconds:g} s")
        spy = start_py_spy(args.py_spy, gunicorn, args.read_seconds, "reads") if args.py_spy else None
        with CpuMeter(gunicorn, args.db) as meter:
            result["reads"] = drive(
                gunicorn.port, args.read_clients, args.read_seconds, summary_maker(member_ids), headers, args.seed + 1
            )
        result["reads"]["cpu"] = meter.report(result["reads"]["ok"])
        if spy:
            spy[0].wait(timeout=60)
            result["py_spy_reads"] = {"file": str(spy[1]), **summarise_py_spy(spy[1])}
        if args.event_seconds:
            signed_in = []
            log(f"sign-in events: {args.clients} clients for {args.event_seconds:g} s")
            with CpuMeter(gunicorn, args.db) as meter:
                result["events"] = drive(
                    gunicorn.port,
                    args.clients,
                    args.event_seconds,
                    sign_in_maker(member_ids, run_tag, signed_in),
                    headers,
                    args.seed + 3,
                )
            result["events"]["cpu"] = meter.report(result["events"]["ok"])
            log(f"redemptions: {args.clients} clients for {args.event_seconds:g} s")
            with CpuMeter(gunicorn, args.db) as meter:
                result["redemptions"] = drive(
                    gunicorn.port,
                    args.clients,
                    args.event_seconds,
                    redemption_maker(signed_in, prepared["reward"], run_tag),
                    headers,
                    args.seed + 4,
                )
            result["redemptions"]["cpu"] = meter.report(result["redemptions"]["ok"])
        if args.floor_seconds:
            log(f"floor: GET /healthz, {args.read_clients} clients for {args.floor_seconds:g} s")
            with CpuMeter(gunicorn, args.db) as meter:
                result["floor"] = drive(
                    gunicorn.port,
                    args.read_clients,
                    args.floor_seconds,
                    lambda rng, client, n: ("GET", "/healthz", None),
                    headers,
                    args.seed + 2,
                )
            result["floor"]["cpu"] = meter.report(result["floor"]["ok"])
        warnings = [line for line in gunicorn.log_tail(200).splitlines() if "Traceback" in line or "ERROR" in line]
        result["gunicorn_log_errors"] = warnings[:10]
    finally:
        log("stopping gunicorn")
        gunicorn.stop()
        if pooler:
            result["pgbouncer_log_errors"] = pooler.stop()

    result["db_counts"] = database_counts(args.server_url, args.db)
    if args.no_baseline:
        result["baseline"] = {"tps": None, "error": "skipped (--no-baseline)"}
    else:
        log(f"baseline: {args.baseline} --clients {args.clients} --seconds {int(args.seconds)} (bench database)")
        before = machine_cpu()
        result["baseline"] = run_baseline(args.baseline, args.clients, args.seconds, dsn)
        after = machine_cpu()
        result["baseline"]["machine_busy_pct"] = round(100 * (after[0] - before[0]) / max(after[1] - before[1], 1), 1)
    tps = result["baseline"]["tps"]
    result["ratio"] = round(result["purchases"]["per_second"] / tps, 3) if tps else None
    log("manage.py check_ledger")
    result["check_ledger"] = check_ledger(env)
    result["targets"] = {
        "ratio": None if result["ratio"] is None else result["ratio"] >= TARGET_RATIO,
        "purchase_p99": result["purchases"]["p99_ms"] is not None and result["purchases"]["p99_ms"] <= TARGET_P99_MS,
        "reads_per_second": result["reads"]["per_second"] >= TARGET_READS,
    }
    return result


def verdict(flag):
    return "n/a" if flag is None else "PASS" if flag else "MISS"


def summary_text(result):
    config, machine = result["config"], result["machine"]
    lines = [
        f"== earn benchmark {machine['date']}  commit {machine['commit']}  {machine['cores']} cores  "
        f"PostgreSQL {machine['postgres']['server_version']} ==",
        f"machine     {machine.get('busy_pct_before_run')}% busy before the run "
        f"(load {machine['loadavg_1m_at_start']})"
        f"; synchronous_commit {machine['postgres']['synchronous_commit']}, fsync {machine['postgres']['fsync']}",
        f"settings    gunicorn {config['worker_class']} {config['workers']} workers x {config['threads']} "
        f"threads; {config['clients']} clients; {config['members']} members; db {config['database']}"
        + (
            f"; {config['campaigns']} campaigns running, {config['campaigns_applying']} applying"
            if config.get("campaigns")
            else ""
        )
        + ("; a webhook subscribed to points.earned" if config.get("webhook") else "")
        + (
            f"; Redis {config['redis_url']} (cache, broker: tasks queued)"
            if config.get("redis_url")
            else "; no Redis (tasks run in the request: a redemption's confirmation message is sent in it)"
        )
        + (
            f"; through PgBouncer, transaction pooling, {config['pool_size']} server sessions"
            if config.get("pgbouncer")
            else ""
        ),
    ]
    if "breakdown" in result:
        b = result["breakdown"]
        lines += [
            f"in-process  purchase {b['purchase_ms']:.2f} ms, {b['purchase_cpu_ms']:.2f} ms CPU of the process "
            f"({b['purchase_queries']:.1f} queries, "
            f"{b['purchase_sql_ms']:.2f} ms in SQL); summary read {b['summary_ms']:.2f} ms, "
            f"{b['summary_cpu_ms']:.2f} ms CPU "
            f"({b['summary_queries']:.1f} queries, {b['summary_sql_ms']:.2f} ms in SQL); "
            f"GET /healthz {b['healthz_ms']:.2f} ms (test Client, one thread, no gunicorn)",
            "queries of one purchase (client-side ms):",
            *[f"  {q['ms']:6.3f}  {q['sql']}" for q in b["purchase_one"]["queries"]],
            "queries of one summary read:",
            *[f"  {q['ms']:6.3f}  {q['sql']}" for q in b["summary_one"]["queries"]],
            *[
                line
                for name, label in (("event", "sign-in event (POST /events/)"), ("redemption", "redemption"))
                if f"{name}_ms" in b
                for line in (
                    f"{label}: {b[f'{name}_ms']:.2f} ms, {b[f'{name}_cpu_ms']:.2f} ms CPU "
                    f"({b[f'{name}_queries']:.1f} queries, {b[f'{name}_sql_ms']:.2f} ms in SQL); its queries:",
                    *[f"  {q['ms']:6.3f}  {q['sql']}" for q in b[f"{name}_one"]["queries"]],
                )
            ],
            "cProfile, inclusive ms per purchase (profiler overhead included, compare shares):",
            *[f"  {p['ms']:7.2f}  {p['part']}" for p in b["profiled_purchase"]],
            "cProfile, inclusive ms per summary read:",
            *[f"  {p['ms']:7.2f}  {p['part']}" for p in b["profiled_summary"]],
        ]
    else:
        p, r, base = result["purchases"], result["reads"], result["baseline"]
        lines += [
            f"purchases   {p['per_second']:8.1f} /s   p50 {p['p50_ms']} ms  p99 {p['p99_ms']} ms  max {p['max_ms']} ms"
            f"  ({p['ok']} ok in {p['seconds']} s, {p['errors']} errors)",
            f"reads       {r['per_second']:8.1f} /s   p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms"
            f"  ({r['ok']} ok in {r['seconds']} s, {r['errors']} errors)  GET /api/v1/members/{{id}}/points/",
            *(
                [
                    f"floor       {result['floor']['per_second']:8.1f} /s   p50 {result['floor']['p50_ms']} ms  "
                    f"p99 {result['floor']['p99_ms']} ms  GET /healthz (gunicorn + Django middleware, no DB, no DRF)"
                ]
                if "floor" in result
                else []
            ),
            *[
                f"{name:11.11} {result[name]['per_second']:8.1f} /s   p50 {result[name]['p50_ms']} ms  "
                f"p99 {result[name]['p99_ms']} ms  max {result[name]['max_ms']} ms  ({result[name]['ok']} ok in "
                f"{result[name]['seconds']} s, {result[name]['errors']} errors)  {path}"
                for name, path in (("events", f"POST {EVENT_PATH} sign_in"), ("redemptions", f"POST {REDEMPTION_PATH}"))
                if name in result
            ],
            *[
                f"cpu         {name}: machine {result[name]['cpu']['machine_busy_pct']}% busy; CPU ms per request: "
                + ", ".join(f"{k} {v}" for k, v in result[name]["cpu"]["cpu_ms_per_request"].items())
                for name in ("purchases", "reads", "events", "redemptions", "floor")
                if name in result
            ],
            f"baseline    {base['tps']} tps (pgbench, machine {base.get('machine_busy_pct')}% busy)"
            if base["tps"]
            else f"baseline    unavailable: {base.get('error')}",
            f"ratio       {result['ratio']}  (target >= {TARGET_RATIO}: {verdict(result['targets']['ratio'])}); "
            f"p99 <= {TARGET_P99_MS:g} ms: {verdict(result['targets']['purchase_p99'])}; "
            f"reads >= {TARGET_READS:g}/s: {verdict(result['targets']['reads_per_second'])}",
        ]
        for name in ("purchases", "reads", "events", "redemptions"):
            for status, count in result.get(name, {}).get("error_counts", {}).items():
                lines.append(f"errors      {name}: {count} x {status}: {result[name]['error_samples'].get(status, '')}")
        counts = result["db_counts"]
        expected = p["ok"] + result.get("warmup", {}).get("ok", 0)
        lines.append(
            f"database    {counts['purchases']} purchases (2xx answers incl. warm-up: {expected}), "
            f"{counts['ledger_entries']} ledger entries, {counts['lots']} lots"
        )
        for key in ("py_spy_purchases", "py_spy_reads"):
            if key in result:
                lines.append(
                    f"py-spy      {key[7:]}: {result[key]['samples']} samples with the GIL held, "
                    f"inclusive share ({result[key]['file']}):"
                )
                lines += [f"              {v:6.1%}  {k}" for k, v in result[key]["share"].items() if v]
        lines += [f"gunicorn    {line}" for line in result.get("gunicorn_log_errors", [])]
        lines += [f"pgbouncer   {line}" for line in result.get("pgbouncer_log_errors", [])]
    ledger = result["check_ledger"]
    last = ledger["output"].splitlines()[-1] if ledger["output"] else ""
    lines.append(f"check_ledger {'pass' if ledger['passed'] else 'FAIL'} (rc {ledger['returncode']}): {last}")
    lines.append("note        the load generator, gunicorn and PostgreSQL share the same cores")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    for tool in ("psql",):
        if shutil.which(tool) is None:
            sys.exit(f"earn: {tool} not found")
    if not (VENV_BIN / "gunicorn").exists():
        sys.exit(f"earn: {VENV_BIN / 'gunicorn'} not found (make install)")
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(summary_text(result))
    failed = not result["check_ledger"]["passed"] or any(
        result.get(name, {}).get("errors") for name in ("purchases", "reads", "events", "redemptions")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
