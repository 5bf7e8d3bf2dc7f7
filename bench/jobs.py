#!/usr/bin/env python3
"""Nightly jobs benchmark: wall clock and peak memory of `manage.py run_job` for rfm, expire_points, tiers and
reminders (and `manage.py import_purchases` of a generated CSV) on the database bench/seed.py made, each next to
the same work as one plain SQL statement run by psql with \\timing (what the database alone needs).

    .venv/bin/python bench/seed.py                 # once: loyalty_bench_jobs, 1M members, 10M purchases
    .venv/bin/python bench/jobs.py --keep          # every job twice + its plain SQL; keeps the seed
    .venv/bin/python bench/jobs.py --jobs rfm,tiers --runs 3 --keep
    .venv/bin/python bench/jobs.py                 # ... and drops the seeded database at the end
    .venv/bin/python bench/jobs.py --explain       # also EXPLAIN (ANALYZE, BUFFERS) one chunk of each job
    .venv/bin/python bench/jobs.py --jobs reminders --keep   # the reminders job of the day after the seed's date

The seeded database is never changed: every measurement runs in a copy (CREATE DATABASE ... TEMPLATE ... STRATEGY
FILE_COPY, then `sync`, not timed). rfm, tiers and the import share one copy and put it back between runs (rfm:
the date's snapshot rows deleted; tiers: member tiers restored from a saved table, tier changes deleted; import:
the imported purchases deleted; each followed by VACUUM ANALYZE); expire_points gets a fresh copy per run, as its
changes (lots, accounts, entries, movements) are not cheaply undone, and so does reminders (see REMINDERS_PREPARE:
what it adds to the seed so that about 80,000 members are due; the sends are queued in Redis database 9, no
worker takes them; the copy is first migrated to the code's migrations, untimed). After the first expire_points run,
`manage.py check_ledger` verifies the ledger (timed).

Per measurement:
- seconds: wall clock of the whole command (Python start-up and Django set-up included, about 1 s), and the
  run's own duration from its JobRun row (chunks, and rfm's scoring step, separately);
- peak RSS: "Maximum resident set size" of the command under /usr/bin/time -v (the Python process);
- the PostgreSQL backends serving it, sampled every 0.2 s from /proc: peak private memory (RssAnon: sorts,
  hashes, work_mem; the shared buffers they touch are the server's, not theirs), CPU seconds, the temporary
  file bytes the database wrote (pg_stat_database.temp_bytes: sorts and hashes spilled to disk), and the WAL the
  server wrote meanwhile (pg_current_wal_lsn: the whole server's, so other databases' writes count too).
The plain SQL runs with the server's settings (work_mem etc. as the jobs get them), on the same kind of copy.
Results: a summary table on stdout and JSON in bench/out/jobs-<time>.json. At the end it drops its copies
(loyalty_bench_jobs_work_<pid>...) and the seeded database too, unless --keep (then the next run needs no new
seed). Only one run per seeded database at a time (a PostgreSQL advisory lock): two would
time each other's load.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
OUT = REPO / "bench" / "out"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_DB = "loyalty_bench_jobs"
TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)
TARGETS = {"rfm": 60, "expire_points": 120, "tiers": 60, "import_purchases": 60, "reminders": 60}  # s, 2 cores
MEMORY_TARGET_KB = 1024 * 1024
IMPORT_SOURCE = "bench-import"
# The settings refuse to start without ENVIRONMENT: the jobs run with the development settings, as they always have
# (development and test differ only in the web's database timeouts, which commands do not use).
ENVIRONMENT = "development"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(text=""):
    print(text, file=sys.stderr, flush=True)


def url(dsn, db):
    return f"{dsn.rstrip('/')}/{db}"


def admin(dsn):
    return psycopg.connect(url(dsn, "postgres"), autocommit=True)


# --- databases ------------------------------------------------------------------------------------------------


def copy_database(dsn, template, target):
    """A fresh copy of the seeded database; the written files are flushed (`sync`) before anything is timed."""
    began = time.monotonic()
    with admin(dsn) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(target), sql.Identifier(template)
            )
        )
    os.sync()
    log(f"  copied {template} -> {target} in {time.monotonic() - began:.0f} s (not timed)")


def drop_database(dsn, db):
    with admin(dsn) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def seed_info(dsn, db):
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [db]
        ).fetchone()
    if not row:
        return None
    try:
        return json.loads(row[0] or "")
    except ValueError:
        return {}


def execute(dsn, db, *statements):
    with psycopg.connect(url(dsn, db), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


# --- measuring a command --------------------------------------------------------------------------------------


class BackendSampler(threading.Thread):
    """Samples the server processes (client backends and parallel workers) of one database from /proc."""

    def __init__(self, dsn, db):
        super().__init__(daemon=True)
        self.dsn, self.db = dsn, db
        self.stop = threading.Event()
        self.peak_anon_kb = 0
        self.peak_hwm_kb = 0
        self.cpu = {}  # pid -> last seen utime + stime (seconds)

    def run(self):
        with admin(self.dsn) as conn:
            while not self.stop.is_set():
                pids = [
                    pid
                    for (pid,) in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.db]
                    ).fetchall()
                ]
                for pid in pids:
                    self._sample(pid)
                self.stop.wait(0.2)

    def _sample(self, pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        values = dict(re.findall(r"^(\w+):\s+(\d+)", status, re.MULTILINE))
        self.peak_anon_kb = max(self.peak_anon_kb, int(values.get("RssAnon", 0)))
        self.peak_hwm_kb = max(self.peak_hwm_kb, int(values.get("VmHWM", 0)))
        self.cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def result(self):
        return {
            "pg_peak_private_mb": round(self.peak_anon_kb / 1024),
            "pg_peak_rss_mb": round(self.peak_hwm_kb / 1024),
            "pg_cpu_s": round(sum(self.cpu.values()), 1),
        }


def temp_bytes(dsn, db):
    with admin(dsn) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT temp_bytes FROM pg_stat_database WHERE datname = %s", [db]).fetchone()
        return row[0] if row else 0


def wal_position(dsn):
    with admin(dsn) as conn:
        return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def wal_mb(dsn, since):
    """WAL written since `since`, by the whole server (other databases' work included: approximate)."""
    with admin(dsn) as conn:
        return round(
            conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [since]).fetchone()[0] / 2**20
        )


class CommandFailed(Exception):
    pass


def measure(command, *, dsn, db, env=None):
    """Run `command` under /usr/bin/time -v with DATABASE_URL set to the work database; sample its backends."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        environment = {**os.environ, "ENVIRONMENT": ENVIRONMENT, "DATABASE_URL": url(dsn, db), **(env or {})}
        sampler = BackendSampler(dsn, db)
        temp_before, wal_before = temp_bytes(dsn, db), wal_position(dsn)
        sampler.start()
        began = time.monotonic()
        done = subprocess.run(
            ["/usr/bin/time", "-v", "-o", report.name, *command],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - began
        sampler.stop.set()
        sampler.join()
        text = report.read()
    if done.returncode != 0:
        log(done.stdout + done.stderr[-3000:])
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error" in line]
        raise CommandFailed(errors[-1] if errors else f"exit status {done.returncode}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    system = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(rss_kb / 1024),
        "python_cpu_s": round(user + system, 1),
        **sampler.result(),
        "pg_temp_mb": round((temp_bytes(dsn, db) - temp_before) / 2**20),
        "wal_mb": wal_mb(dsn, wal_before),
        "output": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "",
    }


def run_job(name, as_of, *, dsn, db, env=None):
    try:
        result = measure(
            [str(PYTHON), "manage.py", "run_job", name, "--as-of", as_of.isoformat(), "--force"],
            dsn=dsn,
            db=db,
            env=env,
        )
    except CommandFailed as error:
        return {"seconds": None, "failed": str(error)}
    with psycopg.connect(url(dsn, db)) as conn:
        run_id, started, finished, counts = conn.execute(
            "SELECT id, started_at, finished_at, counts FROM loyalty_jobrun WHERE job = %s AND business_date = %s",
            [name, as_of],
        ).fetchone()
        ends = [
            row[0]
            for row in conn.execute(
                "SELECT finished_at FROM loyalty_jobchunk WHERE run_id = %s ORDER BY finished_at", [run_id]
            )
        ]
    chunk_seconds = [(b - a).total_seconds() for a, b in zip(ends, ends[1:], strict=False)]
    result.update(
        job_seconds=round((finished - started).total_seconds(), 1),
        counts=counts,
        chunks=len(ends),
        chunk_median_s=round(statistics.median(chunk_seconds), 2) if chunk_seconds else None,
        chunk_max_s=round(max(chunk_seconds), 2) if chunk_seconds else None,
        finish_step_s=round((finished - ends[-1]).total_seconds(), 1) if ends else None,
    )
    return result


def psql_timed(dsn, db, script):
    """Run a psql script; returns the milliseconds of the statements run after `\\timing on`, summed."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        file.write(script)
        file.flush()
        sampler = BackendSampler(dsn, db)
        temp_before, wal_before = temp_bytes(dsn, db), wal_position(dsn)
        sampler.start()
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url(dsn, db), "-f", file.name],
            capture_output=True,
            text=True,
        )
        sampler.stop.set()
        sampler.join()
    if done.returncode != 0:
        log(done.stdout + done.stderr)
        raise SystemExit("plain SQL failed")
    times = [float(ms) for ms in re.findall(r"^Time: ([\d.]+) ms", done.stdout, re.MULTILINE)]
    rows = [line for line in done.stdout.splitlines() if line and not line.startswith("Time:")]
    return {
        "seconds": round(sum(times) / 1000, 1),
        "statements_s": [round(t / 1000, 1) for t in times],
        **sampler.result(),
        "pg_temp_mb": round((temp_bytes(dsn, db) - temp_before) / 2**20),
        "wal_mb": wal_mb(dsn, wal_before),
        "output": " | ".join(rows[-3:]),
    }


# --- the business calendar of the benchmark date (as loyalty.clock computes it) --------------------------------


def start_of_day(day):
    return datetime.combine(day, datetime.min.time(), tzinfo=TZ)


def calendar(as_of):
    return {
        "as_of": f"'{as_of.isoformat()}'::date",
        "tz": f"'{TZ_NAME}'",
        "rfm_start": f"'{start_of_day(as_of - timedelta(days=364)).isoformat()}'::timestamptz",
        "end": f"'{start_of_day(as_of + timedelta(days=1)).isoformat()}'::timestamptz",
        "new_since": f"'{start_of_day(as_of - timedelta(days=30)).isoformat()}'::timestamptz",
        "growth_start": f"'{start_of_day(as_of - timedelta(days=364)).isoformat()}'::timestamptz",
        "reference": f"'expiry:{as_of.isoformat()}'",
        "reason": f"'points expired on {as_of.isoformat()}'",
    }


# --- plain SQL: the same work in one statement, no chunks, no Python -------------------------------------------

PLAIN_RFM = """
CREATE TEMP TABLE plain_rfm AS
WITH refunded AS (
    SELECT purchase_id, SUM(amount) AS amount FROM members_refund WHERE occurred_at < {end} GROUP BY purchase_id
), net AS (
    SELECT p.member_id, p.occurred_at, p.amount - COALESCE(r.amount, 0) AS net
    FROM members_purchase p LEFT JOIN refunded r ON r.purchase_id = p.id
    WHERE p.occurred_at < {end}
), agg AS (
    SELECT member_id,
           MAX(occurred_at) FILTER (WHERE net > 0 AND occurred_at >= {rfm_start}) AS last_in_window,
           COUNT(*) FILTER (WHERE net > 0 AND occurred_at >= {rfm_start}) AS frequency,
           COALESCE(SUM(net) FILTER (WHERE net > 0 AND occurred_at >= {rfm_start}), 0) AS monetary,
           MAX(occurred_at) FILTER (WHERE net > 0) AS last_ever,
           COUNT(*) FILTER (WHERE net > 0) AS orders_ever
    FROM net GROUP BY member_id
), values_ AS (
    SELECT m.id AS member_id,
           CASE WHEN agg.frequency > 0 THEN {as_of} - (agg.last_in_window AT TIME ZONE {tz})::date END AS recency_days,
           COALESCE(agg.frequency, 0) AS frequency, COALESCE(agg.monetary, 0) AS monetary,
           CASE WHEN m.joined_at >= {new_since} AND COALESCE(agg.orders_ever, 0) <= 1 THEN 'new'
                WHEN COALESCE(agg.orders_ever, 0) = 0 THEN 'never_purchased'
                WHEN {as_of} - (agg.last_ever AT TIME ZONE {tz})::date <= 90 THEN 'active'
                WHEN {as_of} - (agg.last_ever AT TIME ZONE {tz})::date <= 180 THEN 'dormant'
                ELSE 'lost' END AS lifecycle
    FROM members_member m LEFT JOIN agg ON agg.member_id = m.id
    WHERE m.joined_at < {end}
), basis AS (
    SELECT AVG(recency_days) AS recency, AVG(frequency) AS frequency, AVG(monetary) AS monetary
    FROM values_ WHERE frequency > 0
), scored AS (
    SELECT v.*,
           CEIL(5 * CUME_DIST() OVER (PARTITION BY v.frequency > 0 ORDER BY v.recency_days DESC)) AS r_score,
           CEIL(5 * CUME_DIST() OVER (PARTITION BY v.frequency > 0 ORDER BY v.frequency)) AS f_score,
           CEIL(5 * CUME_DIST() OVER (PARTITION BY v.frequency > 0 ORDER BY v.monetary)) AS m_score,
           v.recency_days < b.recency AS r_high, v.frequency > b.frequency AS f_high,
           v.monetary > b.monetary AS m_high
    FROM values_ v CROSS JOIN basis b
)
SELECT member_id, recency_days, frequency, monetary, lifecycle,
       CASE WHEN frequency > 0 THEN r_score END AS r_score, CASE WHEN frequency > 0 THEN f_score END AS f_score,
       CASE WHEN frequency > 0 THEN m_score END AS m_score,
       CASE WHEN frequency = 0 THEN 'inactive'
            WHEN r_high AND f_high AND m_high THEN 'important_value'
            WHEN r_high AND NOT f_high AND m_high THEN 'important_develop'
            WHEN NOT r_high AND f_high AND m_high THEN 'important_retain'
            WHEN NOT r_high AND NOT f_high AND m_high THEN 'important_winback'
            WHEN r_high AND f_high THEN 'general_value'
            WHEN r_high THEN 'general_develop'
            WHEN f_high THEN 'general_retain'
            ELSE 'general_winback' END AS segment
FROM scored;
"""

PLAIN_RFM_CHECK = """
\\timing off
SELECT 'plain rows ' || count(*) || ', buyers ' || count(*) FILTER (WHERE frequency > 0) FROM plain_rfm;
SELECT 'differences from the job ' || count(*) FROM plain_rfm p
LEFT JOIN members_rfmsnapshot s ON s.member_id = p.member_id AND s.as_of = {as_of}
WHERE s.member_id IS NULL OR (s.recency_days, s.frequency, s.monetary, s.r_score, s.f_score, s.m_score, s.segment,
       s.lifecycle) IS DISTINCT FROM (p.recency_days, p.frequency, p.monetary, p.r_score, p.f_score, p.m_score,
       p.segment, p.lifecycle);
"""

PLAIN_EXPIRE = """
WITH due AS (
    SELECT l.id, l.member_id, l.remaining FROM points_pointslot l
    WHERE l.status = 'available' AND l.expires_at <= {end}
      AND NOT EXISTS (SELECT 1 FROM points_ledgerentry e
                      WHERE e.member_id = l.member_id AND e.kind = 'expire' AND e.reference = {reference})
), totals AS (
    SELECT member_id, SUM(remaining) AS points FROM due GROUP BY member_id HAVING SUM(remaining) > 0
), moved AS (
    UPDATE points_pointsaccount a
    SET available = a.available - t.points, lifetime_expired = a.lifetime_expired + t.points, updated_at = now()
    FROM totals t WHERE a.member_id = t.member_id
    RETURNING a.member_id, a.available, a.pending, t.points
), entries AS (
    INSERT INTO points_ledgerentry (member_id, kind, points, available_delta, pending_delta, balance_after,
                                    pending_after, reason, reference, actor, created_at)
    SELECT member_id, 'expire', -points, -points, 0, available, pending, {reason}, {reference}, 'plain', now()
    FROM moved
    RETURNING id, member_id
), movements AS (
    INSERT INTO points_lotmovement (entry_id, lot_id, points)
    SELECT entries.id, due.id, -due.remaining FROM due JOIN entries USING (member_id) WHERE due.remaining > 0
), expired AS (
    UPDATE points_pointslot l SET status = 'expired', remaining = 0 FROM due WHERE l.id = due.id
)
SELECT 'members ' || count(*) || ', points ' || coalesce(sum(points), 0) FROM moved;
"""

# The minimum an expiry needs (lots and balances, no entries or movements): for the record, not the ratio.
PLAIN_EXPIRE_MINIMAL = """
WITH expired AS (
    UPDATE points_pointslot l SET status = 'expired', remaining = 0
    FROM (SELECT id, remaining FROM points_pointslot WHERE status = 'available' AND expires_at <= {end}) due
    WHERE l.id = due.id
    RETURNING l.member_id, due.remaining
), totals AS (
    SELECT member_id, SUM(remaining) AS points FROM expired GROUP BY member_id
)
UPDATE points_pointsaccount a SET available = a.available - t.points,
       lifetime_expired = a.lifetime_expired + t.points
FROM totals t WHERE a.member_id = t.member_id;
"""

PLAIN_TIERS = """
WITH held AS (
    SELECT mt.member_id, mt.tier_id, t.rank FROM tiers_membertier mt JOIN tiers_tier t ON t.id = mt.tier_id
    WHERE t.rank > 0 AND (mt.hold_until IS NULL OR mt.hold_until <= {as_of})
), growth AS (
    SELECT g.member_id, SUM(g.value) AS value FROM tiers_growthentry g JOIN held USING (member_id)
    WHERE g.occurred_at >= {growth_start} AND g.occurred_at < {end}
    GROUP BY g.member_id
), decided AS (
    SELECT held.member_id, held.tier_id AS from_tier, COALESCE(growth.value, 0) AS value,
           COALESCE((SELECT t.id FROM tiers_tier t
                     WHERE t.rank <= held.rank AND t.retention_threshold <= COALESCE(growth.value, 0)
                     ORDER BY t.rank DESC LIMIT 1),
                    (SELECT t.id FROM tiers_tier t ORDER BY t.rank LIMIT 1)) AS to_tier  -- growth < 0: entry tier
    FROM held LEFT JOIN growth USING (member_id)
), moved AS (
    UPDATE tiers_membertier mt
    SET tier_id = d.to_tier, window_growth = d.value, updated_at = now(),
        since = CASE WHEN d.to_tier <> d.from_tier THEN now() ELSE mt.since END,
        hold_until = {as_of} + (SELECT t.hold_days FROM tiers_tier t WHERE t.id = d.to_tier)
    FROM decided d WHERE mt.member_id = d.member_id
    RETURNING mt.member_id, d.from_tier, d.to_tier, d.value
), history AS (
    INSERT INTO tiers_tierchange (member_id, from_tier_id, to_tier_id, reason, growth_value, business_date, at, actor)
    SELECT member_id, from_tier, to_tier, 'downgrade', value, {as_of}, now(), 'plain'
    FROM moved WHERE to_tier <> from_tier
)
SELECT 'evaluated ' || count(*) || ', downgraded ' || count(*) FILTER (WHERE to_tier <> from_tier) FROM moved;
"""

PLAIN_IMPORT = """
CREATE TEMP TABLE plain_import (member_external_id text, member_phone text, order_no text, occurred_at text,
                                amount text, store text, channel text);
\\timing on
\\copy plain_import FROM '{csv}' WITH (FORMAT csv, HEADER true)
INSERT INTO members_purchase (member_id, store_id, source, order_no, channel, occurred_at, amount, refunded_amount,
                              currency, points_awarded, points_reversed, points_used, points_used_returned, imported,
                              created_at)
SELECT m.id, s.id, 'plain-import', i.order_no, COALESCE(NULLIF(i.channel, ''), 'offline'),
       i.occurred_at::timestamp AT TIME ZONE {tz}, i.amount::numeric, 0, 'CNY', 0, 0, 0, 0, true, now()
FROM plain_import i
JOIN members_member m ON m.phone = i.member_phone
LEFT JOIN members_store s ON s.code = i.store
WHERE i.amount ~ '^[0-9]{{1,12}}(\\.[0-9]{{1,2}})?$' AND i.amount::numeric > 0
ON CONFLICT (source, order_no) DO NOTHING;
"""


def plain(script, as_of, **extra):
    return "\\timing on\n" + script.format(**calendar(as_of), **extra)


# --- resetting the shared work copy ---------------------------------------------------------------------------

RESET = {
    "rfm": [
        "DELETE FROM members_rfmsnapshot",
        "DELETE FROM members_rfmchunkvalues",
        "VACUUM ANALYZE members_rfmsnapshot",
    ],
    "tiers": [
        "BEGIN",
        "DELETE FROM tiers_tierchange",
        "TRUNCATE tiers_membertier",
        "INSERT INTO tiers_membertier SELECT * FROM bench_saved_membertier ORDER BY member_id",
        "COMMIT",
        "VACUUM ANALYZE tiers_membertier",
        "VACUUM ANALYZE tiers_tierchange",
    ],
    "import_purchases": [
        "DELETE FROM members_purchase WHERE source IN ('bench-import', 'plain-import')",
        "VACUUM ANALYZE members_purchase",
    ],
}
SAVE_TIERS = ["CREATE TABLE IF NOT EXISTS bench_saved_membertier AS SELECT * FROM tiers_membertier"]


def reset(job, dsn, db):
    began = time.monotonic()
    execute(dsn, db, *RESET[job])
    log(f"  reset {job} in {time.monotonic() - began:.0f} s (not timed)")


# --- the import file ------------------------------------------------------------------------------------------


def write_import_csv(dsn, db, path, rows, as_of):
    """`rows` purchases of random seeded members (by phone), 0.1 % of them bad (unknown phone, bad amount)."""
    end = start_of_day(as_of + timedelta(days=1))
    query = f"""
        SELECT '' AS member_external_id,
               CASE WHEN i % 2000 = 7 THEN '+8613799999999' ELSE m.phone END AS member_phone,
               'IMP' || lpad(i::text, 9, '0') AS order_no,
               to_char((timestamptz '{end.isoformat()}' - random() * interval '730 days') AT TIME ZONE '{TZ_NAME}',
                       'YYYY-MM-DD HH24:MI:SS') AS occurred_at,
               CASE WHEN i % 2000 = 1999 THEN '12,50'
                    ELSE round(exp(random() * ln(2000))::numeric, 2)::text END AS amount,
               'BENCH' || lpad((1 + i % 50)::text, 3, '0') AS store,
               CASE WHEN i % 10 < 3 THEN 'online' ELSE 'offline' END AS channel
        FROM generate_series(1, {rows}) i
        JOIN members_member m
          ON m.id = 1 + (hashint8(i::bigint) & 2147483647) % (SELECT max(id) FROM members_member)
    """
    copy = f"\\copy ({' '.join(query.split())}) TO '{path}' WITH (FORMAT csv, HEADER true)"
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url(dsn, db), "-c", copy], check=True)


# --- EXPLAIN ANALYZE of one chunk -----------------------------------------------------------------------------

EXPLAIN_SNIPPET = r"""
from datetime import date
from django.db import connection, transaction
from django.utils import timezone
from members import jobs
from points.services import maintenance
from tiers import jobs as tiers
from loyalty.clock import end_of_business_day

as_of = date.fromisoformat("__AS_OF__")
which = "__WHICH__"
low = 1
cases = {
    "rfm_chunk": (jobs.RFM_CHUNK_SQL, jobs._rfm_params(as_of, {}, low, low + 100_000)),
    "rfm_score": (jobs.RFM_SCORE_SQL, {"as_of": as_of, "window_days": 365, "median": False}),
    "expire_chunk": (maintenance.EXPIRE_SQL.format(events=""), {"start": low, "stop": low + maintenance.CHUNK_SIZE,
                     "floor": maintenance.NO_FLOOR, "cutoff": end_of_business_day(as_of), "now": timezone.now(),
                     "reference": f"expiry:{as_of}", "reason": "explain"}),
    "tiers_chunk": (tiers.EVALUATE_SQL, {"start": low, "stop": low + tiers.CHUNK_SIZE, "as_of": as_of,
                    "member_ids": list(range(low, low + tiers.CHUNK_SIZE)), "now": timezone.now(),
                    **dict(zip(("window_start", "window_end"), tiers._evaluation_window(as_of, timezone.now())))}),
}
statement, params = cases[which]
with transaction.atomic():
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        print("\n".join(row[0] for row in cursor.fetchall()))
    transaction.set_rollback(True)
"""


def explain(which, as_of, *, dsn, db):
    snippet = EXPLAIN_SNIPPET.replace("__AS_OF__", as_of.isoformat()).replace("__WHICH__", which)
    done = subprocess.run(
        [str(PYTHON), "manage.py", "shell", "-c", snippet],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, ENVIRONMENT=ENVIRONMENT, DATABASE_URL=url(dsn, db)),
    )
    if done.returncode != 0:
        log(done.stderr)
        return None
    path = OUT / f"explain-{which}.txt"
    path.write_text(done.stdout)
    total = re.search(r"Execution Time: ([\d.]+) ms", done.stdout)
    log(f"  EXPLAIN ANALYZE {which}: {float(total.group(1)) / 1000:.1f} s -> {path.relative_to(REPO)}")
    return path


# --- the benchmark --------------------------------------------------------------------------------------------


def show(label, result):
    if result.get("failed"):
        log(f"  {label:<28} FAILED: {result['failed']}")
        return
    extra = {k: v for k, v in result.items() if k not in ("seconds", "peak_rss_mb", "output")}
    rss = f"{result['peak_rss_mb']:>5} MB RSS" if "peak_rss_mb" in result else " " * 12
    log(f"  {label:<28} {result['seconds']:>7.1f} s {rss}  {result.get('output', '')}")
    log(f"  {'':<28} {json.dumps(extra, default=str)}")


def bench_rfm(args, results):
    for run in range(1, args.runs + 1):
        reset("rfm", args.dsn, args.work)
        results.append(
            {"job": "rfm", "kind": "job", "run": run, **run_job("rfm", args.as_of, dsn=args.dsn, db=args.work)}
        )
        show(f"rfm job run {run}", results[-1])
    if args.explain:  # the scoring step over the last run's rows (rolled back)
        explain("rfm_score", args.as_of, dsn=args.dsn, db=args.work)
    for run in range(1, args.plain_runs + 1):  # compared row by row with the last job run's snapshot
        script = plain(PLAIN_RFM, args.as_of) + PLAIN_RFM_CHECK.format(**calendar(args.as_of))
        results.append({"job": "rfm", "kind": "plain", "run": run, **psql_timed(args.dsn, args.work, script)})
        show(f"rfm plain SQL run {run}", results[-1])
    if args.explain:  # the first chunk as a nightly run meets it: no rows yet for the date
        reset("rfm", args.dsn, args.work)
        explain("rfm_chunk", args.as_of, dsn=args.dsn, db=args.work)


def bench_tiers(args, results):
    execute(args.dsn, args.work, *SAVE_TIERS)
    for run in range(1, args.runs + 1):
        reset("tiers", args.dsn, args.work)
        # The downgrade notices are queued for the workers (a broker: Redis database 9, emptied after), as in
        # production; without one, Celery would send every notice in-process, which is not the job's work.
        subprocess.run(["redis-cli", "-n", "9", "FLUSHDB"], capture_output=True, check=False)
        results.append(
            {
                "job": "tiers",
                "kind": "job",
                "run": run,
                **run_job("tiers", args.as_of, dsn=args.dsn, db=args.work, env={"REDIS_URL": REMINDERS_REDIS}),
            }
        )
        subprocess.run(["redis-cli", "-n", "9", "FLUSHDB"], capture_output=True, check=False)
        show(f"tiers job run {run}", results[-1])
    if args.explain:
        reset("tiers", args.dsn, args.work)
        explain("tiers_chunk", args.as_of, dsn=args.dsn, db=args.work)
    for run in range(1, args.plain_runs + 1):
        reset("tiers", args.dsn, args.work)
        results.append(
            {
                "job": "tiers",
                "kind": "plain",
                "run": run,
                **psql_timed(args.dsn, args.work, plain(PLAIN_TIERS, args.as_of)),
            }
        )
        show(f"tiers plain SQL run {run}", results[-1])
    reset("tiers", args.dsn, args.work)


def bench_import(args, results):
    path = Path(tempfile.gettempdir()) / f"bench-import-{args.import_rows}.csv"
    began = time.monotonic()
    write_import_csv(args.dsn, args.work, path, args.import_rows, args.as_of)
    log(f"  wrote {path} ({path.stat().st_size / 2**20:.0f} MB) in {time.monotonic() - began:.0f} s (not timed)")
    rejects = path.with_suffix(".rejects.csv")
    try:
        for run in range(1, args.runs + 1):
            reset("import_purchases", args.dsn, args.work)
            results.append(
                {
                    "job": "import_purchases",
                    "kind": "job",
                    "run": run,
                    **measure(
                        [
                            str(PYTHON),
                            "manage.py",
                            "import_purchases",
                            str(path),
                            "--source",
                            IMPORT_SOURCE,
                            "--rejects",
                            str(rejects),
                        ],
                        dsn=args.dsn,
                        db=args.work,
                    ),
                }
            )
            show(f"import_purchases run {run}", results[-1])
        for run in range(1, args.plain_runs + 1):
            reset("import_purchases", args.dsn, args.work)
            script = PLAIN_IMPORT.format(csv=path, **calendar(args.as_of))
            results.append(
                {"job": "import_purchases", "kind": "plain", "run": run, **psql_timed(args.dsn, args.work, script)}
            )
            show(f"import plain SQL run {run}", results[-1])
        reset("import_purchases", args.dsn, args.work)
    finally:
        path.unlink(missing_ok=True)
        rejects.unlink(missing_ok=True)


# The reminders job runs on the day after the seed's date D. The seed gives it, as a live system would: the points
# expiring 30 and 7 days later (lots earned at one point of the two years), the birthdays of the day and the
# downgrade warnings of the tiers whose hold ends in 30 days. It lacks what RFM runs leave: two runs are written
# here (D - 30 and D, one row per member of a 5 % sample, all "active" then "dormant" or "lost"), so win-back
# finds about 50,000 members. 60 % of members consent to SMS (the others' marketing messages are skipped, with the
# reason, and written all the same).
REMINDERS_PREPARE = [
    "UPDATE members_member SET consent_sms = (id % 5 < 3)",
    "DELETE FROM members_rfmsnapshot",
    """INSERT INTO members_rfmsnapshot (member_id, as_of, window_days, frequency, monetary, segment, lifecycle)
       SELECT id, d, 365, 0, 0, 'inactive', CASE WHEN d = {as_of} - 30 THEN 'active'
                                                  WHEN id % 40 = 0 THEN 'lost' ELSE 'dormant' END
       FROM members_member, (VALUES ({as_of} - 30), ({as_of})) AS runs(d) WHERE id % 20 = 0""",
    """INSERT INTO loyalty_jobrun (job, business_date, status, params, counts, chunks_total, chunks_done, error,
                                  started_at, finished_at, triggered_by)
       SELECT 'rfm', d, 'done', '{{}}', '{{}}', 0, 0, '', now(), now(), 'bench'
       FROM (VALUES ({as_of} - 30), ({as_of})) AS runs(d)
       ON CONFLICT (job, business_date) DO UPDATE SET status = 'done'""",
    "VACUUM ANALYZE members_member",
    "VACUUM ANALYZE members_rfmsnapshot",
]
# With a broker the job only queues the sends (the workers send); Redis database 9 is the benchmark's own and is
# emptied after each run. Without one, Celery would send every message in-process, which is not the job's work.
REMINDERS_REDIS = "redis://127.0.0.1:6379/9"


def migrate_copy(dsn, db):
    """Bring a copy to the code's migrations (a branch may add some since the seed was made; the seed stays as it
    is). Nothing to do when the seed is current."""
    environment = {**os.environ, "ENVIRONMENT": ENVIRONMENT, "DATABASE_URL": url(dsn, db)}
    subprocess.run(
        [str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO, env=environment, check=True
    )


def bench_reminders(args, results):
    target = args.work + "_reminders"
    day = args.as_of + timedelta(days=1)
    try:
        for run in range(1, args.runs + 1):
            copy_database(args.dsn, args.db, target)
            began = time.monotonic()
            execute(args.dsn, target, *(s.format(**calendar(args.as_of)) for s in REMINDERS_PREPARE))
            migrate_copy(args.dsn, target)
            log(f"  prepared RFM runs and consents, migrated in {time.monotonic() - began:.0f} s (not timed)")
            subprocess.run(["redis-cli", "-n", "9", "FLUSHDB"], capture_output=True, check=False)
            try:
                result = measure(
                    [str(PYTHON), "manage.py", "run_job", "reminders", "--as-of", day.isoformat()],
                    dsn=args.dsn,
                    db=target,
                    env={"REDIS_URL": REMINDERS_REDIS},
                )
            except CommandFailed as error:
                result = {"seconds": None, "failed": str(error)}
            else:
                with psycopg.connect(url(args.dsn, target)) as conn:
                    counts = conn.execute(
                        "SELECT counts, finished_at - started_at FROM loyalty_jobrun "
                        "WHERE job = 'reminders' AND business_date = %s",
                        [day],
                    ).fetchone()
                    by_status = dict(
                        conn.execute("SELECT status, count(*) FROM loyalty_message GROUP BY status").fetchall()
                    )
                result.update(counts=counts[0], job_seconds=round(counts[1].total_seconds(), 1), messages=by_status)
                queued = subprocess.run(["redis-cli", "-n", "9", "LLEN", "celery"], capture_output=True, text=True)
                result["celery_tasks_queued"] = queued.stdout.strip()
            subprocess.run(["redis-cli", "-n", "9", "FLUSHDB"], capture_output=True, check=False)
            results.append({"job": "reminders", "kind": "job", "run": run, **result})
            show(f"reminders job run {run}", results[-1])
    finally:
        drop_database(args.dsn, target)


# What an expiry run leaves, to compare two runs (two versions of the code) row for row: lots by status (count,
# remaining, a hash of id:status:remaining), the expiry entries (count, points, an md5 of each entry's member,
# points, balances, reference, reason and actor in member order), the expiry movements (count, points, an md5 of
# member, lot and points in lot order) and the accounts (sums and a hash). Not the times written (created_at).
EXPIRE_DIGEST = [
    """SELECT 'lots ' || status, count(*), sum(remaining)::text,
              sum(hashtext(id || ':' || status || ':' || remaining)::bigint)::text
       FROM points_pointslot GROUP BY status ORDER BY status""",
    """SELECT 'expire entries', count(*), sum(points)::text,
              md5(string_agg(concat_ws(':', member_id, points, balance_after, pending_after, reference, reason, actor),
                             ',' ORDER BY member_id, id))
       FROM points_ledgerentry WHERE kind = 'expire'""",
    """SELECT 'expiry movements', count(*), sum(m.points)::text,
              md5(string_agg(concat_ws(':', e.member_id, m.lot_id, m.points), ',' ORDER BY m.lot_id, m.id))
       FROM points_lotmovement m JOIN points_ledgerentry e ON e.id = m.entry_id WHERE e.kind = 'expire'""",
    """SELECT 'accounts', count(*), concat_ws('/', sum(available), sum(pending), sum(lifetime_expired)),
              sum(hashtext(concat_ws(':', member_id, available, pending, lifetime_expired))::bigint)::text
       FROM points_pointsaccount""",
]


def lot_updates(dsn, db):
    """The copy's lot updates and how many were HOT (in place, no new index entries), from its statistics."""
    time.sleep(1)  # the backends report their counters when their transactions end
    with psycopg.connect(url(dsn, db)) as conn:
        row = conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'points_pointslot'"
        ).fetchone()
    return list(row)


def expire_digest(dsn, db):
    with psycopg.connect(url(dsn, db)) as conn:
        return [list(row) for statement in EXPIRE_DIGEST for row in conn.execute(statement).fetchall()]


def prepare_expire_copy(dsn, seed, target):
    """Bring the copy to the code's migrations (untimed). A seed made before points 0013 has its lot pages packed
    full: the copy's lot table is then rewritten once (README's operator step after 0013), so that the pages have
    the room fillfactor 80 keeps, as a seed made at 0013 has."""
    with psycopg.connect(url(dsn, seed)) as conn:
        (options,) = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'points_pointslot'").fetchone()
    began = time.monotonic()
    migrate_copy(dsn, target)
    with psycopg.connect(url(dsn, target)) as conn:
        (now_options,) = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'points_pointslot'").fetchone()
    if now_options and not options:
        execute(dsn, target, "VACUUM FULL points_pointslot", "ANALYZE points_pointslot")
        log(f"  migrated and rewrote the copy's lots in {time.monotonic() - began:.0f} s (not timed)")


def bench_expire(args, results):
    target = args.work + "_expire"
    if args.explain:  # in the shared work copy, whose lots the other jobs leave as seeded
        if not args.work_exists:
            copy_database(args.dsn, args.db, args.work)
            args.work_exists = True
        explain("expire_chunk", args.as_of, dsn=args.dsn, db=args.work)
    try:
        for run in range(1, args.runs + 1):
            copy_database(args.dsn, args.db, target)
            prepare_expire_copy(args.dsn, args.db, target)
            results.append(
                {
                    "job": "expire_points",
                    "kind": "job",
                    "run": run,
                    **run_job("expire_points", args.as_of, dsn=args.dsn, db=target),
                }
            )
            show(f"expire_points job run {run}", results[-1])
            results[-1]["digest"] = expire_digest(args.dsn, target)
            for row in results[-1]["digest"]:
                log(f"    digest: {row}")
            results[-1]["lot_updates"] = lot_updates(args.dsn, target)
            log(f"    lot updates (all, HOT): {results[-1]['lot_updates']}")
            if run == 1:
                check = measure([str(PYTHON), "manage.py", "check_ledger"], dsn=args.dsn, db=target)
                results.append({"job": "check_ledger", "kind": "check", "run": run, **check})
                show("check_ledger after expiry", check)
        for run in range(1, args.plain_runs + 1):
            copy_database(args.dsn, args.db, target)
            results.append(
                {
                    "job": "expire_points",
                    "kind": "plain",
                    "run": run,
                    **psql_timed(args.dsn, target, plain(PLAIN_EXPIRE, args.as_of)),
                }
            )
            show(f"expire plain SQL run {run}", results[-1])
        if args.minimal:
            copy_database(args.dsn, args.db, target)
            results.append(
                {
                    "job": "expire_points",
                    "kind": "plain-minimal",
                    "run": 1,
                    **psql_timed(args.dsn, target, plain(PLAIN_EXPIRE_MINIMAL, args.as_of)),
                }
            )
            show("expire minimal SQL", results[-1])
    finally:
        drop_database(args.dsn, target)


def summary(results):
    lines = [
        "| job | run | seconds (job's own) | peak RSS | PG backend CPU / private peak / temp | plain SQL s "
        "| ratio | target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for job in ("rfm", "expire_points", "tiers", "import_purchases", "reminders"):
        plains = [r["seconds"] for r in results if r["job"] == job and r["kind"] == "plain"]
        best_plain = min(plains) if plains else None
        for r in (r for r in results if r["job"] == job and r["kind"] == "job"):
            if r.get("failed"):
                lines.append(
                    f"| {job} | {r['run']} | FAILED: {r['failed'][:120]} | | | "
                    f"{' / '.join(str(p) for p in plains) or '-'} | - | NO |"
                )
                continue
            ratio = f"{r['seconds'] / best_plain:.1f}" if best_plain else "-"
            met = r["seconds"] <= TARGETS[job] and r["peak_rss_mb"] * 1024 <= MEMORY_TARGET_KB
            own = f" ({r['job_seconds']})" if "job_seconds" in r else ""
            lines.append(
                f"| {job} | {r['run']} | {r['seconds']}{own} | {r['peak_rss_mb']} MB | {r['pg_cpu_s']} s / "
                f"{r['pg_peak_private_mb']} MB / {r['pg_temp_mb']} MB | "
                f"{' / '.join(str(p) for p in plains) or '-'} | {ratio} | "
                f"{'yes' if met else 'NO'} (≤ {TARGETS[job]} s) |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"server URL without the database (default {DEFAULT_DSN})")
    parser.add_argument("--db", default=DEFAULT_DB, help="the seeded database (never changed)")
    parser.add_argument("--jobs", default="rfm,tiers,import_purchases,expire_points")
    parser.add_argument("--runs", type=int, default=2, help="runs of each job (default 2)")
    parser.add_argument("--plain-runs", type=int, default=1, help="runs of each plain SQL statement (default 1)")
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--as-of", type=date.fromisoformat, help="business date (default: the seed's)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS) one chunk per job")
    parser.add_argument("--minimal", action="store_true", help="also time the minimal expiry (lots + accounts)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the seeded database at the end (default: drop it, and always the work copies)",
    )
    args = parser.parse_args()
    if "bench" not in args.db:
        parser.error("--db must contain 'bench'")
    info = seed_info(args.dsn, args.db)
    if info is None:
        parser.error(f"{args.db} does not exist: run bench/seed.py first")
    args.as_of = args.as_of or date.fromisoformat(info["as_of"])
    args.work = f"{args.db}_work_{os.getpid()}"  # its own copies: a second run never drops this one's
    lock = admin(args.dsn)  # held until the end: two runs at once would time each other's load
    if not lock.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [f"bench/jobs.py {args.db}"]).fetchone()[0]:
        parser.error(f"another bench/jobs.py run on {args.db} is in progress (it holds an advisory lock)")
    jobs = args.jobs.split(",")
    unknown = set(jobs) - set(TARGETS)
    if unknown:
        parser.error(f"unknown job(s): {', '.join(sorted(unknown))}")
    if "import_purchases" in jobs and not (REPO / "members/management/commands/import_purchases.py").exists():
        log("import_purchases: no such command yet, skipped")
        jobs.remove("import_purchases")
    OUT.mkdir(exist_ok=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    log(f"Jobs benchmark on {args.db} ({info.get('counts')}), as of {args.as_of}, commit {commit}")
    results = []
    started = datetime.now().astimezone()
    try:
        args.work_exists = bool(set(jobs) - {"expire_points", "reminders"})
        if args.work_exists:
            copy_database(args.dsn, args.db, args.work)
        for job in jobs:
            log(f"{job}:")
            {
                "rfm": bench_rfm,
                "tiers": bench_tiers,
                "import_purchases": bench_import,
                "expire_points": bench_expire,
                "reminders": bench_reminders,
            }[job](args, results)
    finally:
        drop_database(args.dsn, args.work)
        if not args.keep:
            drop_database(args.dsn, args.db)
            log(f"dropped {args.db} (--keep keeps it for the next run)")
        path = OUT / f"jobs-{started:%Y%m%d-%H%M%S}.json"
        path.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "commit": commit,
                    "seed": info,
                    "as_of": args.as_of.isoformat(),
                    "results": results,
                },
                indent=1,
                default=str,
            )
        )
        log(f"results: {path.relative_to(REPO)}")
    print(summary(results))


if __name__ == "__main__":
    main()
