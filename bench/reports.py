#!/usr/bin/env python3
"""Reports benchmark: the `snapshot` job for one business date, and the report endpoints' p95 over 90-day ranges
answered from snapshots, on the database bench/seed.py made (1,000,000 members, 10,000,000 purchases by default).

    .venv/bin/python bench/seed.py --keep                  # once: loyalty_bench_jobs
    .venv/bin/python bench/reports.py                      # in a copy of it, dropped at the end
    .venv/bin/python bench/reports.py --requests 50 --json
    .venv/bin/python bench/reports.py --db loyalty_bench_rcore --keep-copy

The seeded database is never changed: everything runs in a copy (CREATE DATABASE ... TEMPLATE, not timed), which
is dropped at the end unless --keep-copy. In the copy, in order:
1. `manage.py migrate` (a seed made before the snapshot tables gets them; timed, for information);
2. entries of the last --days + --requests days that carry no store or channel (a seed older than the ledger's
   attribution) get their purchase's, so the points report has its real number of rows per day (not timed;
   the append-only trigger is disabled for that statement only, in the copy);
3. unless --no-rfm: the `rfm` job for D (the seed's date; timed, for information), and the RFM rows of D−89 made
   from D's with every segment moved one place (not timed), so that the members snapshot has its segments and the
   segment moves a real matrix;
4. the `snapshot` job for D, --runs times (--force after the first): wall clock in-process, the run's chunks and
   finishing step, and the slowest statements (Django's execute_wrapper);
5. the other days the report ranges need (D−1 back to D−(days+requests−2)): copies of D's snapshot rows shifted
   by whole days (--fill copy, default: the same rows per day as D, in seconds), or the job itself for each
   date (--fill run: as many job runs);
6. the report endpoints through Django's test client, in this process, with a staff token (the full Django and
   DRF stack: middleware, authentication, role check, JSON or CSV rendering; no HTTP server, no network): after
   --warmup requests, --requests requests per case, each over another 90-day window [D−89−k, D−k], and p50/p95/max.
   The segment-moves case asks for the pair the job prepared; its first request with nothing stored (counting the
   moves from 2 × the members' RFM rows) is reported apart.

Targets (issue 12, 2-core machine): the snapshot job ≤ 120 s, every report ≤ 300 ms p95. Results: a table on
stdout (progress on stderr) and JSON in bench/out/reports-<time>.json (git-ignored). Exit code 0 even when a
target is missed (the table says so); 1 when a request failed.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
OUT = REPO / "bench" / "out"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_DB = "loyalty_bench_jobs"
DEFAULT_AS_OF = date(2026, 11, 22)
SNAPSHOT_TARGET_S, REPORT_TARGET_MS = 120.0, 300.0
RANGE_DAYS = 90

sys.path.insert(0, str(REPO))


def log(text=""):
    print(text, file=sys.stderr, flush=True)


def url(dsn, db):
    return f"{dsn.rstrip('/')}/{db}"


def admin(dsn):
    return psycopg.connect(url(dsn, "postgres"), autocommit=True)


def seed_info(dsn, db):
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [db]
        ).fetchone()
    if row is None:
        sys.exit(f"No database {db}: seed it first (bench/seed.py --db {db}).")
    try:
        return json.loads(row[0] or "{}")
    except ValueError:
        return {}


def copy_database(dsn, template, target):
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


def timed(label, function, *args, **kwargs):
    began = time.monotonic()
    result = function(*args, **kwargs)
    seconds = time.monotonic() - began
    log(f"  {label:<52} {seconds:8.1f} s")
    return result, seconds


# --- steps on the copy (before Django) ------------------------------------------------------------------------


def migrate(database_url):
    env = dict(
        os.environ, ENVIRONMENT="development", DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="loyalty.settings"
    )
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO, env=env, check=True)


ATTRIBUTE_SQL = """
UPDATE points_ledgerentry e SET store_id = p.store_id, channel = p.channel
FROM members_purchase p
WHERE e.kind IN ('earn', 'reverse') AND e.store_id IS NULL AND e.channel IS NULL
  AND e.created_at >= %(since)s AND e.actor = 'bench'
  AND p.source = 'bench' AND p.order_no = split_part(e.reference, '/', 1)
"""


def attribute_old_seed(database_url, since):
    """Entries of a seed made before the ledger's attribution get their purchase's store and channel (the copy
    only: the append-only trigger is off for this one statement)."""
    with psycopg.connect(database_url, autocommit=False) as conn:
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the foreign keys checked now: no pending trigger events
        conn.execute("ALTER TABLE points_ledgerentry DISABLE TRIGGER points_ledgerentry_append_only")
        updated = conn.execute(ATTRIBUTE_SQL, {"since": since}).rowcount
        conn.execute("ALTER TABLE points_ledgerentry ENABLE TRIGGER points_ledgerentry_append_only")
        conn.commit()
        conn.execute("ANALYZE points_ledgerentry")
    return updated


# --- in Django ------------------------------------------------------------------------------------------------


def setup_django(database_url):
    os.environ.update(
        ENVIRONMENT="development",
        DEBUG="false",  # no query log in connection.queries
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="loyalty.settings",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)  # eager Celery, in-memory cache: no broker needed
    import django

    django.setup()


class StatementTimes:
    """Django execute_wrapper: the time of every statement, to show the slowest."""

    def __init__(self):
        self.times = []

    def __call__(self, execute, statement, params, many, context):
        began = time.monotonic()
        try:
            return execute(statement, params, many, context)
        finally:
            self.times.append((time.monotonic() - began, " ".join(statement.split())[:110]))

    def slowest(self, n=8):
        merged = {}
        for seconds, statement in self.times:
            total, count = merged.get(statement, (0.0, 0))
            merged[statement] = (total + seconds, count + 1)
        return sorted(((total, count, text) for text, (total, count) in merged.items()), reverse=True)[:n]


def run_rfm(as_of):
    from loyalty.scheduling import run_inline

    run = run_inline("rfm", as_of, force=True, triggered_by="bench")
    return run.counts


MOVE_ONE_PLACE = """
INSERT INTO members_rfmsnapshot (member_id, as_of, window_days, recency_days, frequency, monetary, r_score, f_score,
                                 m_score, segment, lifecycle)
SELECT member_id, %(earlier)s, window_days, recency_days, frequency, monetary, r_score, f_score, m_score,
       (ARRAY['important_value', 'important_develop', 'important_retain', 'important_winback', 'general_value',
              'general_develop', 'general_retain', 'general_winback', 'inactive'])[1 + mod(member_id, 9)],
       lifecycle
FROM members_rfmsnapshot WHERE as_of = %(as_of)s
ON CONFLICT (as_of, member_id) DO NOTHING
"""


def fake_earlier_rfm(as_of, earlier):
    """RFM rows for `earlier` (D's, each member's segment set by her id), and a finished rfm run for that date."""
    from django.db import connection
    from django.utils import timezone

    from loyalty.models import JobRun, JobStatus

    with connection.cursor() as cursor:
        cursor.execute(MOVE_ONE_PLACE, {"as_of": as_of, "earlier": earlier})
        rows = cursor.rowcount
    JobRun.objects.update_or_create(
        job="rfm",
        business_date=earlier,
        defaults={"status": JobStatus.DONE, "started_at": timezone.now(), "finished_at": timezone.now()},
    )
    return rows


def run_snapshot(as_of, force):
    """The snapshot job for `as_of` in this process: wall clock, its prepare / chunks / finish phases (the job's
    functions wrapped for the run), and the slowest statements."""
    from django.db import connection

    from loyalty import scheduling

    definition = scheduling.job("snapshot")
    phases = {"prepare": 0.0, "chunks": 0.0, "finish": 0.0}

    def phase(name, function):
        def timed_function(*args):
            began = time.monotonic()
            try:
                return function(*args)
            finally:
                phases[name] += time.monotonic() - began

        return timed_function

    scheduling._jobs["snapshot"] = dataclasses.replace(
        definition,
        prepare=phase("prepare", definition.prepare),
        run_chunk=phase("chunks", definition.run_chunk),
        finish=phase("finish", definition.finish),
    )
    times = StatementTimes()
    began = time.monotonic()
    try:
        with connection.execute_wrapper(times):
            run = scheduling.run_inline("snapshot", as_of, force=force, triggered_by="bench")
    finally:
        scheduling._jobs["snapshot"] = definition
    return {
        "seconds": round(time.monotonic() - began, 2),
        "status": run.status,
        "chunks": run.chunks_total,
        "phases": {name: round(seconds, 2) for name, seconds in phases.items()},
        "counts": run.counts,
        "slowest": [
            {"seconds": round(total, 2), "times": count, "statement": text} for total, count, text in times.slowest()
        ],
    }


COPY_DAY = [
    """INSERT INTO reports_snapshotday (business_date, points_available, points_pending, members,
                                       cash_points_per_unit, rfm_as_of, created_at)
       SELECT business_date - %(k)s, points_available, points_pending, members, cash_points_per_unit, rfm_as_of,
              created_at FROM reports_snapshotday WHERE business_date = %(as_of)s""",
    """INSERT INTO reports_pointsflowsnapshot (business_date, store_id, channel, kind, entries, points,
                                              available_delta, pending_delta)
       SELECT business_date - %(k)s, store_id, channel, kind, entries, points, available_delta, pending_delta
       FROM reports_pointsflowsnapshot WHERE business_date = %(as_of)s""",
    """INSERT INTO reports_membersnapshot (business_date, home_store_id, tier, segment, lifecycle, members,
                                          new_members, active_members, partial)
       SELECT business_date - %(k)s, home_store_id, tier, segment, lifecycle, members, new_members, active_members,
              partial FROM reports_membersnapshot WHERE business_date = %(as_of)s""",
    """INSERT INTO reports_memberdaysnapshot (business_date, home_store_id, members, new_members, active_members)
       SELECT business_date - %(k)s, home_store_id, members, new_members, active_members
       FROM reports_memberdaysnapshot WHERE business_date = %(as_of)s""",
    """INSERT INTO reports_memberrecencysnapshot (business_date, home_store_id, last_purchase_date, members,
                                                 partial)
       SELECT business_date - %(k)s, home_store_id, last_purchase_date - %(k)s, members, partial
       FROM reports_memberrecencysnapshot WHERE business_date = %(as_of)s""",
    """INSERT INTO reports_expiryforecastsnapshot (business_date, month, points)
       SELECT business_date - %(k)s, month, points
       FROM reports_expiryforecastsnapshot WHERE business_date = %(as_of)s""",
]


def fill_days(as_of, days, how):
    """Snapshots for the `days` dates before `as_of`: copies of its rows shifted by whole days, or the job."""
    from django.db import connection, transaction

    from reports.models import SnapshotDay

    earlier = [as_of - timedelta(days=k) for k in range(1, days + 1)]
    SnapshotDay.objects.filter(business_date__in=earlier).delete()
    if how == "run":
        for day in earlier:
            run_snapshot(day, force=True)
        return len(earlier)
    from reports.snapshots import snapshot_prepare

    with transaction.atomic():
        for day in earlier:
            snapshot_prepare(day, {})
        with connection.cursor() as cursor:
            for k in range(1, days + 1):
                for statement in COPY_DAY:
                    cursor.execute(statement, {"as_of": as_of, "k": k})
            cursor.execute("ANALYZE")
    return len(earlier)


def staff_client():
    from django.contrib.auth.models import Group
    from rest_framework.test import APIClient

    from loyalty.credentials import issue_staff_token
    from members.models import StaffUser

    user, _ = StaffUser.objects.get_or_create(username="bench-reports", defaults={"is_staff": True})
    user.groups.add(Group.objects.get_or_create(name="marketer")[0])
    token, _ = issue_staff_token(user=user)
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def measure(client, path, params_for, requests, warmup):
    """Milliseconds per request of `requests` requests (after `warmup` uncounted ones); params_for(k) → query."""
    failures, times = [], []
    for k in range(-warmup, requests):
        params = params_for(max(k, 0))
        began = time.perf_counter()
        response = client.get(path, params)
        streamed = hasattr(response, "streaming_content")
        body = b"".join(response.streaming_content) if streamed else response.content
        elapsed = (time.perf_counter() - began) * 1000
        if response.status_code != 200:
            failures.append(f"{response.status_code} {path} {params}: {body[:200]!r}")
        elif k >= 0:
            times.append(elapsed)
    return times, failures


def report_cases(as_of, store_code):
    def window(k):
        last = as_of - timedelta(days=k)
        return {"from": (last - timedelta(days=RANGE_DAYS - 1)).isoformat(), "to": last.isoformat()}

    moves = {"from": (as_of - timedelta(days=RANGE_DAYS - 1)).isoformat(), "to": as_of.isoformat()}
    points, members = "/api/v1/reports/points/", "/api/v1/reports/members/"
    return [
        ("points, day", points, window),
        ("points, week", points, lambda k: {**window(k), "interval": "week"}),
        ("points, month, one store", points, lambda k: {**window(k), "interval": "month", "store": store_code}),
        ("points, day, channel online", points, lambda k: {**window(k), "channel": "online"}),
        ("points, day, CSV", points, lambda k: {**window(k), "format": "csv"}),
        ("members, day", members, window),
        ("members, week, one home store", members, lambda k: {**window(k), "interval": "week", "store": store_code}),
        ("members, month", members, lambda k: {**window(k), "interval": "month"}),
        ("liability (snapshot day)", "/api/v1/reports/liability/", lambda k: {"as_of": str(as_of - timedelta(k))}),
        ("segment-moves (prepared pair)", "/api/v1/reports/segment-moves/", lambda k: moves),
    ]


def cold_segment_moves(client, as_of):
    """One segment-moves request with nothing stored for its pair: the moves counted from the RFM rows."""
    from reports.models import SegmentMoveSnapshot

    first = as_of - timedelta(days=RANGE_DAYS - 1)
    SegmentMoveSnapshot.objects.all().delete()
    began = time.perf_counter()
    response = client.get("/api/v1/reports/segment-moves/", {"from": first.isoformat(), "to": as_of.isoformat()})
    elapsed = (time.perf_counter() - began) * 1000
    return elapsed, response.status_code, len(response.json().get("moves", [])) if response.status_code == 200 else 0


def liability_today(client):
    from loyalty.clock import business_date

    today = business_date().isoformat()
    return measure(client, "/api/v1/reports/liability/", lambda k: {"as_of": today}, 3, 1)


# --- main -----------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"server URL without the database (default {DEFAULT_DSN})")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"the seeded database, copied (default {DEFAULT_DB})")
    parser.add_argument("--as-of", type=date.fromisoformat, help="the date D (default: the seed's date)")
    parser.add_argument("--runs", type=int, default=1, help="snapshot job runs for D (default 1)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per report case (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted requests per case first (default 3)")
    parser.add_argument("--fill", choices=["copy", "run"], default="copy", help="how the other days get snapshots")
    parser.add_argument("--no-rfm", action="store_true", help="no rfm run (segments stay empty, no moves)")
    parser.add_argument("--keep-copy", action="store_true", help="do not drop the copy at the end")
    parser.add_argument("--json", action="store_true", help="print the JSON result instead of the table")
    args = parser.parse_args()
    if "bench" not in args.db:
        parser.error("--db must name a bench database (it contains 'bench')")

    info = seed_info(args.dsn, args.db)
    as_of = args.as_of or date.fromisoformat(info.get("as_of", DEFAULT_AS_OF.isoformat()))
    work = f"{args.db}_reports_{os.getpid()}"
    database_url = url(args.dsn, work)
    result = {"seed": {key: info.get(key) for key in ("members", "purchases", "as_of")}, "as_of": as_of.isoformat()}
    log(f"Reports benchmark on a copy of {args.db} ({info.get('members')} members), D = {as_of}")
    copy_database(args.dsn, args.db, work)
    try:
        _, result["migrate_seconds"] = timed("manage.py migrate", migrate, database_url)
        days = RANGE_DAYS + args.requests - 1
        since = datetime.combine(as_of - timedelta(days=days), datetime.min.time())
        attributed, _ = timed("attribute an older seed's entries (not timed)", attribute_old_seed, database_url, since)
        result["entries_attributed"] = attributed
        setup_django(database_url)
        from members.models import Store

        if not args.no_rfm:
            result["rfm"], result["rfm_seconds"] = timed("rfm job for D (for information)", run_rfm, as_of)
            earlier = as_of - timedelta(days=RANGE_DAYS - 1)
            rows, _ = timed(f"RFM rows for {earlier} from D's (not timed)", fake_earlier_rfm, as_of, earlier)
            result["rfm_rows_copied"] = rows
        result["snapshot"] = []
        for n in range(args.runs):
            run, _ = timed(f"snapshot job for D, run {n + 1}", run_snapshot, as_of, force=True)
            result["snapshot"].append(run)
        _, result["fill_seconds"] = timed(
            f"snapshots of {days - 1} earlier days ({args.fill}, not timed)", fill_days, as_of, days - 1, args.fill
        )
        client = staff_client()
        store_code = Store.objects.order_by("code").values_list("code", flat=True).first()
        cases, failures = [], []
        for label, path, params_for in report_cases(as_of, store_code):
            times, failed = measure(client, path, params_for, args.requests, args.warmup)
            failures += failed
            cases.append(
                {
                    "case": label,
                    "requests": len(times),
                    "p50_ms": round(statistics.median(times), 1) if times else None,
                    "p95_ms": round(percentile(times, 0.95), 1) if times else None,
                    "max_ms": round(max(times), 1) if times else None,
                }
            )
            log(f"  {label:<40} p95 {cases[-1]['p95_ms']} ms")
        result["reports"] = cases
        cold_ms, status, moves = cold_segment_moves(client, as_of)
        result["segment_moves_cold"] = {"ms": round(cold_ms, 1), "status": status, "moves": moves}
        today_times, today_failures = liability_today(client)
        result["liability_today_ms"] = [round(t, 1) for t in today_times]
        failures += today_failures
        result["failures"] = failures
    finally:
        if not args.keep_copy:
            drop_database(args.dsn, work)
        else:
            log(f"  kept the copy {work}")
    OUT.mkdir(exist_ok=True)
    out = OUT / f"reports-{datetime.now():%Y%m%d-%H%M%S}.json"  # noqa: DTZ005 - a file name
    out.write_text(json.dumps(result, indent=2, default=str))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_table(result)
    log(f"JSON: {out}")
    return 1 if result["failures"] else 0


def print_table(result):
    seed = result["seed"]
    print(f"Reports benchmark: {seed['members']} members, {seed['purchases']} purchases, D = {result['as_of']}")
    for n, run in enumerate(result["snapshot"], 1):
        mark = "ok" if run["seconds"] <= SNAPSHOT_TARGET_S else "MISSED"
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run["phases"].items())
        print(
            f"snapshot job run {n}: {run['seconds']:.1f} s ({run['chunks']} chunks: {phases}; "
            f"target {SNAPSHOT_TARGET_S:.0f} s: {mark})"
        )
        for slow in run["slowest"][:6]:
            print(f"    {slow['seconds']:7.2f} s  ×{slow['times']:<4} {slow['statement']}")
    print(f"{'report (90-day ranges, test client in-process)':<48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for case in result["reports"]:
        mark = "" if case["p95_ms"] is not None and case["p95_ms"] <= REPORT_TARGET_MS else "  MISSED"
        print(f"  {case['case']:<46} {case['p50_ms']:>8} {case['p95_ms']:>8} {case['max_ms']:>8}{mark}")
    cold = result["segment_moves_cold"]
    print(f"segment-moves with nothing stored (counted from the RFM rows): {cold['ms']} ms, {cold['moves']} moves")
    print(f"liability as of today (accounts and lots, no snapshot): {result['liability_today_ms']} ms")
    if result["failures"]:
        print("FAILED requests:")
        for failure in result["failures"][:10]:
            print("  " + failure)


if __name__ == "__main__":
    sys.exit(main())
