#!/usr/bin/env python3
"""PostgreSQL CPU per purchase, in process: steadier than earn.py's HTTP runs on a shared machine.

    .venv/bin/python bench/pgcpu.py --db loyalty_bench_pgcpu --prepare      # once: create, migrate, members
    .venv/bin/python bench/pgcpu.py --db loyalty_bench_pgcpu --runs 3 --purchases 800

`--prepare` drops and creates the database (its name must contain `bench`), migrates it and inserts `--members`
members with their accounts, the store and an API client, as earn.py does (its PREP_SNIPPET). A run sends
purchases through Django's test Client in one `manage.py shell` (full middleware and DRF stack, one connection,
production settings as earn.py's gunicorn has them) and reads, around each batch of `--purchases`, the CPU time of
that connection's PostgreSQL backend (`/proc/<pg_backend_pid()>/stat`) and of the shell process itself, the
statements sent, and the deltas of pg_stat_user_tables (rows inserted, updated, updated HOT). From those it prints
the index entries written per purchase: each inserted row and each non-HOT update adds one entry to every
non-partial index of its table (partial indexes are listed apart, not counted). Standard library only; it
starts only `manage.py` subprocesses and waits for them. The database is left in place for the next run.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import earn  # noqa: E402  (the bench's own helpers: environment, database reset, member preparation)

SNIPPET = r"""
import json, random, time
from pathlib import Path
from django.db import connection
from django.test import Client

prepared = json.loads(Path("__PREPARED__").read_text())
key, ids, n, runs = prepared["key"], prepared["member_ids"], __N__, __RUNS__
TABLES = ("members_purchase", "points_pointslot", "points_ledgerentry", "tiers_growthentry",
          "points_idempotencyrecord", "points_pointsaccount", "tiers_membertier", "loyalty_outboxevent",
          "members_member")
rng = random.Random(__SEED__)
client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Api-Key {key}")
tag = f"PG{time.time_ns()}"
seq = [0]

def purchase():
    seq[0] += 1
    body = {"member": str(rng.choice(ids)), "order_no": f"{tag}-{seq[0]}",
            "amount": f"{rng.randint(100, 50000) / 100:.2f}", "store": "__STORE__", "channel": "offline"}
    response = client.post("/api/v1/purchases/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, (response.status_code, response.content[:300])

def query(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()

def backend_cpu(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / 100

def table_stats():
    query("SELECT pg_stat_force_next_flush()")
    query("SELECT 1")  # the backend flushed its pending counters when it went idle after the previous statement
    rows = query("SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                 [list(TABLES)])
    return {name: (ins, upd, hot) for name, ins, upd, hot in rows}

def indexes():
    rows = query("SELECT c.relname, i.relname, x.indpred IS NOT NULL FROM pg_index x "
                 "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
                 "WHERE c.relname = ANY(%s) ORDER BY 1, 2", [list(TABLES)])
    found = {}
    for table, index, partial in rows:
        found.setdefault(table, {"full": [], "partial": []})["partial" if partial else "full"].append(index)
    return found

class Counter:
    def __init__(self):
        self.count = 0
    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)

for _ in range(50):  # warm-up: imports, the connection, caches
    purchase()
pid = query("SELECT pg_backend_pid()")[0][0]
shape = indexes()
results = []
for _ in range(runs):
    before = table_stats()
    counter = Counter()
    pg0, py0 = backend_cpu(pid), time.process_time()
    with connection.execute_wrapper(counter):
        for _ in range(n):
            purchase()
    pg1, py1 = backend_cpu(pid), time.process_time()
    after = table_stats()
    tables, entries = {}, 0.0
    for name in TABLES:
        ins, upd, hot = (a - b for a, b in zip(after.get(name, (0, 0, 0)), before.get(name, (0, 0, 0))))
        full = len(shape.get(name, {}).get("full", []))
        written = (ins + upd - hot) * full / n
        entries += written
        if ins or upd:
            tables[name] = {"ins": ins / n, "upd": upd / n, "hot_upd": hot / n, "index_entries": round(written, 2)}
    results.append({"pg_ms": round((pg1 - pg0) * 1000 / n, 3), "web_ms": round((py1 - py0) * 1000 / n, 3),
                    "statements": counter.count / n, "index_entries": round(entries, 2), "tables": tables})
print("PGCPU " + json.dumps({"runs": results, "indexes": shape}))
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="bench database (its name must contain 'bench')")
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--prepare", action="store_true", help="drop, create, migrate and fill the database")
    parser.add_argument("--members", type=int, default=10_000, help="members to insert with --prepare [10000]")
    parser.add_argument("--purchases", type=int, default=800, help="purchases per measured run [800]")
    parser.add_argument("--runs", type=int, default=3, help="measured runs in one process [3]")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the members and amounts [7]")
    parser.add_argument("--redis-url", default=None, help="Redis as cache and broker, as earn.py's --redis-url")
    args = parser.parse_args(argv)
    if "bench" not in args.db:
        parser.error("--db must contain 'bench' (it may be dropped)")
    env = earn.service_env(f"{args.server_url}/{args.db}", args.redis_url)
    prepared_file = earn.OUT / f"pgcpu-{args.db}.json"
    if args.prepare:
        earn.reset_database(args.server_url, args.db)
        done = earn.manage(env, "migrate", "--noinput")
        if done.returncode != 0:
            raise SystemExit(f"migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        earn.OUT.mkdir(exist_ok=True)
        prepared_file.write_text(json.dumps(earn.prepare(env, args.members)))
    snippet = (
        SNIPPET.replace("__PREPARED__", str(prepared_file))
        .replace("__N__", str(args.purchases))
        .replace("__RUNS__", str(args.runs))
        .replace("__SEED__", str(args.seed))
        .replace("__STORE__", earn.STORE_CODE)
    )
    result = earn.shell_json(env, snippet, "PGCPU")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
