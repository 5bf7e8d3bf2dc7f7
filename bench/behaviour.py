#!/usr/bin/env python3
"""Behaviour reports benchmark: the `report_results` job and each behaviour endpoint on a database bench/seed.py made.

    .venv/bin/python bench/seed.py --db loyalty_bench_jobs           # once (1,000,000 members, 10,000,000 purchases)
    .venv/bin/python bench/behaviour.py --db loyalty_bench_jobs      # adds order lines if none, then times
    .venv/bin/python bench/behaviour.py --db loyalty_bench_jobs --runs 50 --live-runs 5

What it does, in order:
1. reads the seed's benchmark date D from the database's comment (bench/seed.py writes it; --as-of overrides) and
   runs `manage.py migrate` (the reports tables may be newer than the seed).
2. order lines: the seed has none. When members_purchaseline is empty, it adds lines to every purchase of the 180
   days up to D with one INSERT ... SELECT: 1-5 lines per order (mostly 1-2), each in one of 30 categories. An
   order has a "theme" (one of 5 groups of 6 categories); a line takes a category of its order's theme with
   probability 0.7 (skewed to the theme's first categories) and otherwise one of all 30 (skewed to the first),
   so some pairs are bought together far more often than chance (lift > 1) and categories differ in size. SKUs
   are 40 per category (skewed), quantities 1-4 (mostly 1), unit prices splitting the order's amount; a fully
   refunded order's lines are wholly returned. Then VACUUM ANALYZE on the table. Lines that already exist are
   kept (the step is skipped), so a second run measures the same data.
3. times `manage.py run_job report_results --as-of D --force` (wall clock of the command, Django start-up
   included) and shows each stored set's own seconds (reports_reportresult.seconds: the computation alone).
4. times each behaviour endpoint through Django's test Client in one process (the full middleware and DRF
   stack, no HTTP server), as a marketer: the standard ranges answered from the stored results (`--runs` times
   each, after one warm-up) and live variants (`--live-runs` times each: another store or channel, a narrower
   range, top lists with a channel or of 7 days, top rewards and the campaigns). The web's statement timeout
   applies (WEB_DB_STATEMENT_TIMEOUT_SECONDS, 15 s by default): a live report slower than that answers 503, which
   the summary shows.

Settings: ENVIRONMENT=production (DEBUG off, a random SECRET_KEY), REDIS_URL unset. The database is changed only by
the order lines of step 2, the migrations, the stored results and a marketer `bench-marketer` with a token.
Results: a summary on stdout and JSON in bench/out/behaviour-<time>.json. Targets (issue 12): each stored set of
the job ≤ 60 s; every endpoint ≤ 300 ms p95 when answered from stored results. The top lists have no `source`
field: the summary calls a top answer "stored" when its request read no purchase, order line or redemption row.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
OUT = REPO / "bench" / "out"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_DB = "loyalty_bench_jobs"
TZ = ZoneInfo("Asia/Shanghai")
LINE_DAYS = 180
JOB_TARGET_SECONDS = 60
ENDPOINT_TARGET_MS = 300
CATEGORIES = [
    "tea", "coffee", "juice", "milk", "water", "soda",
    "bread", "cake", "cookies", "chocolate", "candy", "nuts",
    "shampoo", "soap", "toothpaste", "lotion", "razor", "tissue",
    "shirt", "socks", "scarf", "hat", "gloves", "belt",
    "pen", "notebook", "battery", "charger", "cable", "bag",
]  # fmt: skip
THEMES, PER_THEME = 5, 6

LINES_SQL = """
INSERT INTO members_purchaseline (purchase_id, sku, category, quantity, unit_price, refunded_quantity)
WITH orders AS MATERIALIZED (
    SELECT id, amount, refunded_amount >= amount AS returned,
           1 + LEAST(4, floor(-ln(1 - random()) * 1.6))::int AS lines,
           floor(random() * %(themes)s)::int AS theme
    FROM members_purchase
    WHERE occurred_at >= %(lines_from)s AND occurred_at < %(end)s
), drawn AS (
    SELECT o.id, o.amount, o.returned, o.lines,
           CASE WHEN random() < 0.8
                THEN o.theme * %(per_theme)s + floor(%(per_theme)s * power(random(), 1.5))::int
                ELSE floor(%(categories)s * power(random(), 2))::int END AS category,
           1 + floor(power(random(), 4) * 4)::int AS quantity,
           floor(power(random(), 2) * 40)::int AS sku
    FROM orders o CROSS JOIN LATERAL generate_series(1, o.lines) g
)
SELECT id, (%(names)s::text[])[category + 1] || '-' || lpad(sku::text, 3, '0'), (%(names)s::text[])[category + 1],
       quantity, round(amount / lines / quantity, 2), CASE WHEN returned THEN quantity ELSE 0 END
FROM drawn ORDER BY id
"""

# Runs in `manage.py shell -c` on the bench database: a marketer and her token, then every endpoint timed.
ENDPOINTS_SNIPPET = r"""
import json, re, statistics, time
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from loyalty.credentials import issue_staff_token
from members.models import StaffUser, Store

requests, runs, live_runs = __REQUESTS__, __RUNS__, __LIVE_RUNS__
RAW = re.compile(r"\b(members_purchase|members_purchaseline|points_redemption)\b")
user, _ = StaffUser.objects.get_or_create(username="bench-marketer", defaults={"is_staff": True})
user.groups.add(Group.objects.get_or_create(name="marketer")[0])
token, _ = issue_staff_token(user=user)
client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")
store = Store.objects.order_by("id").values_list("code", flat=True).first()
results = []
for name, path, query, live in requests:
    query = {key: (store if value == "__STORE__" else value) for key, value in query.items()}
    times, statuses, source = [], {}, None
    for attempt in range((live_runs if live else runs) + 1):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(path, query)
            took = (time.perf_counter() - started) * 1000
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 200:
            # The top lists have no source field: one that read no purchase or redemption row was a stored list.
            raw = any(RAW.search(q["sql"]) for q in captured.captured_queries)
            source = response.json().get("source") or ("stored" if path.endswith("/top/") and not raw else "live")
        if attempt:  # the first is a warm-up
            times.append(took)
    times.sort()
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    results.append({"name": name, "path": path, "query": query, "source": source, "statuses": statuses,
                    "runs": len(times), "p50_ms": statistics.median(times), "p95_ms": p95, "max_ms": times[-1]})
print("BENCH_ENDPOINTS " + json.dumps(results))
"""


def log(text=""):
    print(text, file=sys.stderr, flush=True)


def url(dsn, db):
    return f"{dsn.rstrip('/')}/{db}"


def seed_as_of(dsn, db):
    with psycopg.connect(url(dsn, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [db]
        ).fetchone()
    if row is None:
        sys.exit(f"{db} does not exist: run bench/seed.py --db {db} first")
    try:
        return date.fromisoformat(json.loads(row[0] or "")["as_of"])
    except (ValueError, KeyError, TypeError):
        sys.exit(f"{db} has no seed information (bench/seed.py writes it): give --as-of")


def service_env(dsn, db):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        {
            "DATABASE_URL": url(dsn, db),
            "ENVIRONMENT": "production",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SMS_BACKEND": "loyalty.messaging.HttpSmsBackend",  # production refuses the outbox; nothing is sent
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env, *args, timeout=3600):
    done = subprocess.run(
        [str(PYTHON), "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode:
        sys.exit(
            f"manage.py {' '.join(args)} failed (rc {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return done.stdout


def add_lines(dsn, db, as_of):
    """Order lines for the purchases of the LINE_DAYS days up to as_of, unless the table has rows already."""
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=TZ)
    with psycopg.connect(url(dsn, db), autocommit=True) as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM members_purchaseline)").fetchone()[0]:
            count = conn.execute("SELECT count(*) FROM members_purchaseline").fetchone()[0]
            log(f"  order lines: {count:,} already there, kept")
            return {"added": 0, "lines": count, "seconds": 0.0}
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SELECT setseed(0.2026)")
        began = time.monotonic()
        added = conn.execute(
            LINES_SQL,
            {
                "lines_from": end - timedelta(days=LINE_DAYS),
                "end": end,
                "themes": THEMES,
                "per_theme": PER_THEME,
                "categories": len(CATEGORIES),
                "names": CATEGORIES,
            },
        ).rowcount
        insert_seconds = time.monotonic() - began
        conn.execute("VACUUM (ANALYZE) members_purchaseline")
        orders = conn.execute("SELECT count(DISTINCT purchase_id) FROM members_purchaseline").fetchone()[0]
    log(f"  order lines: {added:,} added to {orders:,} orders in {insert_seconds:.1f} s (+ VACUUM ANALYZE)")
    return {"added": added, "orders": orders, "lines": added, "seconds": round(insert_seconds, 1)}


def run_job(env, dsn, db, as_of):
    began = time.monotonic()
    output = manage(env, "run_job", "report_results", "--as-of", as_of.isoformat(), "--force")
    wall = time.monotonic() - began
    with psycopg.connect(url(dsn, db), autocommit=True) as conn:
        sets = conn.execute(
            "SELECT report, params_key, seconds FROM reports_reportresult WHERE as_of = %s ORDER BY id", [as_of]
        ).fetchall()
    log(f"  report_results: {wall:.1f} s ({output.strip()})")
    for report, key, seconds in sets:
        flag = "" if seconds <= JOB_TARGET_SECONDS else "  OVER TARGET"
        log(f"    {report:<11} {key:<100} {seconds:7.2f} s{flag}")
    return {
        "wall_seconds": round(wall, 1),
        "sets": [{"report": r, "params": json.loads(k), "seconds": s} for r, k, s in sets],
    }


def endpoint_requests(as_of):
    d = as_of.isoformat()
    last_30, last_90 = (as_of - timedelta(days=29)).isoformat(), (as_of - timedelta(days=89)).isoformat()
    month = as_of.year * 12 + as_of.month - 1 - 11
    retention_from = date(month // 12, month % 12 + 1, 1).isoformat()
    week = (as_of - timedelta(days=6)).isoformat()
    base, store = "/api/v1/reports/", "__STORE__"
    previous = []  # the dashboard's comparisons: the period of the same length before each
    for days in (7, 30, 90):
        previous_to = as_of - timedelta(days=days)
        span = {"from": (previous_to - timedelta(days=days - 1)).isoformat(), "to": previous_to.isoformat()}
        previous.append((f"repurchase {days} d before", base + "repurchase/", span, False))
    tops = [
        (f"top {kind} {days} d by {order_by}", base + "top/", {"from": first, "to": d, "kind": kind, **extra}, False)
        for kind in ("categories", "skus")
        for days, first in ((30, last_30), (90, last_90))
        for order_by, extra in (("amount", {}), ("quantity", {"order_by": "quantity", "limit": "100"}))
    ]
    return [
        ("repurchase 7 d", base + "repurchase/", {"from": week, "to": d}, False),
        ("repurchase 30 d", base + "repurchase/", {"from": last_30, "to": d}, False),
        ("repurchase 90 d", base + "repurchase/", {"from": last_90, "to": d}, False),
        *previous,
        ("retention 12 months", base + "retention/", {"from": retention_from, "to": d}, False),
        ("basket 90 d", base + "basket/", {"from": last_90, "to": d}, False),
        ("basket 90 d min_support 0.05", base + "basket/", {"from": last_90, "to": d, "min_support": "0.05"}, False),
        ("behaviour 30 d", base + "behaviour/", {"from": last_30, "to": d}, False),
        ("behaviour 90 d", base + "behaviour/", {"from": last_90, "to": d}, False),
        *tops,
        ("top skus 90 d, 500 rows", base + "top/", {"from": last_90, "to": d, "kind": "skus", "limit": "500"}, False),
        (
            "live: repurchase 30 d, a store",
            base + "repurchase/",
            {"from": last_30, "to": d, "store": "__STORE__"},
            True,
        ),
        ("live: behaviour 90 d, online", base + "behaviour/", {"from": last_90, "to": d, "channel": "online"}, True),
        ("live: basket 7 d", base + "basket/", {"from": week, "to": d}, True),
        ("live: basket 90 d, a store", base + "basket/", {"from": last_90, "to": d, "store": store}, True),
        (
            "live: retention 12 months, a store",
            base + "retention/",
            {"from": retention_from, "to": d, "store": store},
            True,
        ),
        (
            "live: top categories 90 d, online",
            base + "top/",
            {"from": last_90, "to": d, "kind": "categories", "channel": "online"},
            True,
        ),
        ("live: top skus 7 d", base + "top/", {"from": week, "to": d, "kind": "skus"}, True),
        ("live: top rewards 90 d", base + "top/", {"from": last_90, "to": d, "kind": "rewards"}, True),
        ("live: campaigns 90 d", base + "campaigns/", {"from": last_90, "to": d}, True),
    ]


def time_endpoints(env, as_of, runs, live_runs):
    snippet = (
        ENDPOINTS_SNIPPET.replace("__REQUESTS__", repr(endpoint_requests(as_of)))
        .replace("__RUNS__", str(runs))
        .replace("__LIVE_RUNS__", str(live_runs))
    )
    output = manage(env, "shell", "--no-imports", "-c", snippet)
    for line in output.splitlines():
        if line.startswith("BENCH_ENDPOINTS "):
            results = json.loads(line[len("BENCH_ENDPOINTS ") :])
            break
    else:
        sys.exit(f"no endpoint results:\n{output[-2000:]}")
    for row in results:
        stored = row["source"] == "stored"
        flag = "  OVER TARGET" if stored and row["p95_ms"] > ENDPOINT_TARGET_MS else ""
        statuses = ",".join(f"{code}×{n}" for code, n in sorted(row["statuses"].items()))
        log(
            f"    {row['name']:<36} {row['source'] or '-':<6} p50 {row['p50_ms']:9.1f} ms  p95 {row['p95_ms']:9.1f} ms"
            f"  max {row['max_ms']:9.1f} ms  [{statuses}]{flag}"
        )
    return results


def sizes(dsn, db):
    with psycopg.connect(url(dsn, db), autocommit=True) as conn:
        return dict(
            conn.execute(
                """
            SELECT 'members', count(*) FROM members_member UNION ALL
            SELECT 'purchases', count(*) FROM members_purchase UNION ALL
            SELECT 'purchase lines', count(*) FROM members_purchaseline"""
            ).fetchall()
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"server URL without the database (default {DEFAULT_DSN})")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"a database bench/seed.py made (default {DEFAULT_DB})")
    parser.add_argument("--as-of", type=date.fromisoformat, help="benchmark business date (default: the seed's)")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per stored-result endpoint")
    parser.add_argument("--live-runs", type=int, default=3, help="timed requests per live endpoint")
    args = parser.parse_args()
    if "bench" not in args.db:
        parser.error("--db must contain 'bench' (this benchmark writes to it)")
    as_of = args.as_of or seed_as_of(args.dsn, args.db)
    env = service_env(args.dsn, args.db)
    log(f"Behaviour reports on {args.db}, as of {as_of}")
    manage(env, "migrate", "--no-input", "-v", "0")
    result = {"db": args.db, "as_of": as_of.isoformat(), "started": datetime.now(TZ).isoformat(timespec="seconds")}
    result["lines"] = add_lines(args.dsn, args.db, as_of)
    result["sizes"] = sizes(args.dsn, args.db)
    log("  " + ", ".join(f"{name} {count:,}" for name, count in result["sizes"].items()))
    result["job"] = run_job(env, args.dsn, args.db, as_of)
    log("  endpoints (test Client, one process):")
    result["endpoints"] = time_endpoints(env, as_of, args.runs, args.live_runs)
    OUT.mkdir(exist_ok=True)
    path = OUT / f"behaviour-{datetime.now(TZ):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    log(f"  written to {path.relative_to(REPO)}")
    print(json.dumps({"job_seconds": result["job"]["wall_seconds"], "sets": result["job"]["sets"]}, default=str))


if __name__ == "__main__":
    main()
