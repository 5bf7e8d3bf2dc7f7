#!/usr/bin/env python3
"""Coupon bulk-issue benchmark: a coupon batch (POST /coupon-templates/{id}/issue/ with {"tag"}) to 1,000,000
tagged members, then the nightly expire_coupons job over the 1,000,000 coupons it made.

    .venv/bin/python bench/coupons.py                  # 1,000,000 members, drops its database at the end
    .venv/bin/python bench/coupons.py --members 100000 --keep

It drops and re-creates the database `--db` (default loyalty_bench_coupons; the name must contain "bench"),
runs `manage.py migrate` into it, fills members_member by one INSERT ... SELECT over generate_series (ids 1..N,
all active) and tags every member with `bench-all` (members_membertag), VACUUM ANALYZE. Then, in one Django
process (ENVIRONMENT=development, DATABASE_URL set), it creates a template (amount_off 20 above 100, valid 30
days, per-member limit 1) and a batch for the tag, exactly as campaigns.services.coupons.start_batch records it,
and times campaigns.jobs.run_coupon_batch (every chunk, as the Celery task runs them, in-process). It checks
the outcome: one coupon per member, distinct codes, issued_count = N. Then it moves every coupon's validity into
the past (untimed) and times `run_inline("expire_coupons", yesterday)`.

With `--list`, instead of the tag and the expiry: a batch to an uploaded list of every member's phone (written
`139…` as a till exports them, one column `phone`), written to a file on disk, checked as an upload is
(coupon_lists.read_member_list, COUPON_LIST_MAX_ROWS/BYTES raised for the run), its lines COPYed in as start_batch
does (stage_lines, each key written plainly stored), then run by run_coupon_batch: the other keys read and the
duplicates marked, then 50,000 lines a chunk judged and issued. Times the upload's two steps and the job, with
this process's CPU time and peak RSS and its PostgreSQL backend's CPU time (/proc), so a figure on a loaded machine
can be read. Checks one coupon per member, no reject and no staged line left. Members are not tagged.

    .venv/bin/python bench/coupons.py --list

Prints seconds per step and a JSON line; record the figures in bench/RESULTS.md.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432"

MEMBERS_SQL = """
    INSERT INTO members_member (id, member_no, phone, external_id, name, gender, birthday, email, home_store_id,
                                channel, referral_code, referrer_id, consent_sms, consent_wechat, consent_email,
                                status, joined_at, updated_at)
    SELECT i, '8' || lpad(i::text, 11, '0'), '+86139' || lpad(i::text, 8, '0'), NULL, 'bench ' || i, 'unknown',
           NULL, '', %(store)s, 'store', 'C' || lpad(i::text, 7, '0'), NULL, false, false, false, 'active', now(),
           now()
    FROM generate_series(1, %(members)s) i
"""

DJANGO_RUN = r"""
import json, os, sys, time
from datetime import timedelta
from decimal import Decimal
import django
django.setup()
from django.db import connection
from campaigns.jobs import run_coupon_batch
from campaigns.models_coupons import Coupon, CouponBatch, CouponTemplate
from loyalty.clock import business_date
from loyalty.scheduling import run_inline

members = int(sys.argv[1])
if sys.argv[2] == "list":
    import resource, tempfile
    from django.core.files import File
    from django.db import transaction
    from campaigns import coupon_lists

    def backend_cpu():  # this session's PostgreSQL backend: utime + stime, seconds
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            fields = open(f"/proc/{cursor.fetchone()[0]}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def own_cpu():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    template = CouponTemplate.objects.create(
        name="bench list 20 off 100", kind="amount_off", amount_off=Decimal(20), threshold=Decimal(100),
        valid_days=30, per_member_limit=1,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as out:
        out.write("phone\n")
        for start in range(1, members + 1, 100_000):
            out.write("".join(f"139{i:08d}\n" for i in range(start, min(start + 100_000, members + 1))))
    marks = {"python_rss_before_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
    cpu0, pg0 = own_cpu(), backend_cpu()
    started = time.perf_counter()
    with open(out.name, "rb") as handle:  # what the upload hands start_batch: a file on disk
        member_list = coupon_lists.read_member_list(File(handle, name="bench.csv"))
        checked = time.perf_counter()
        with transaction.atomic():  # as start_batch records an upload (idempotency and the task left aside)
            batch = CouponBatch.objects.create(
                template=template, list_name=member_list.name, list_key=member_list.key_column, next_member_id=2,
                last_member_id=member_list.last_line, created_by="bench",
            )
            coupon_lists.stage_lines(batch, member_list)
    staged = time.perf_counter()
    cpu1, pg1 = own_cpu(), backend_cpu()
    result = run_coupon_batch(batch.pk)
    finished = time.perf_counter()
    cpu2, pg2 = own_cpu(), backend_cpu()
    os.unlink(out.name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT code), count(DISTINCT member_id) FROM campaigns_coupon")
        coupons, codes, holders = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM campaigns_couponbatchline")
        lines_left = cursor.fetchone()[0]
    template.refresh_from_db()
    assert result["status"] == "done" and result["issued"] == members and result["rejected"] == 0, result
    assert coupons == codes == holders == template.issued_count == members, (coupons, codes, holders)
    assert lines_left == 0, lines_left
    print(json.dumps({
        "members": members,
        "upload_check_seconds": round(checked - started, 1),
        "upload_stage_seconds": round(staged - checked, 1),
        "job_seconds": round(finished - staged, 1),
        "total_seconds": round(finished - started, 1),
        "upload_cpu_python_s": round(cpu1 - cpu0, 1), "upload_cpu_postgres_s": round(pg1 - pg0, 1),
        "job_cpu_python_s": round(cpu2 - cpu1, 1), "job_cpu_postgres_s": round(pg2 - pg1, 1),
        "python_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        **marks,
        "batch": result,
    }))
    sys.exit(0)
template = CouponTemplate.objects.create(
    name="bench 20 off 100", kind="amount_off", amount_off=Decimal(20), threshold=Decimal(100), valid_days=30,
    per_member_limit=1,
)
batch = CouponBatch.objects.create(template=template, tag="bench-all", next_member_id=1, last_member_id=members,
                                   created_by="bench")
started = time.perf_counter()
result = run_coupon_batch(batch.pk)
issue_seconds = time.perf_counter() - started
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*), count(DISTINCT code), count(DISTINCT member_id) FROM campaigns_coupon")
    coupons, codes, holders = cursor.fetchone()
template.refresh_from_db()
assert result["status"] == "done" and result["issued"] == members, result
assert coupons == codes == holders == template.issued_count == members, (coupons, codes, holders)

yesterday = business_date() - timedelta(days=1)
with connection.cursor() as cursor:
    cursor.execute("UPDATE campaigns_coupon SET valid_from = %s, valid_until = %s",
                   [yesterday - timedelta(days=1), yesterday])
    cursor.execute("VACUUM ANALYZE campaigns_coupon")
started = time.perf_counter()
run = run_inline("expire_coupons", yesterday, triggered_by="bench")
expire_seconds = time.perf_counter() - started
assert run.counts == {"expired": members}, run.counts
print(json.dumps({"members": members, "issue_seconds": round(issue_seconds, 1), "batch": result,
                  "expire_seconds": round(expire_seconds, 1), "expire_chunks": run.chunks_total}))
"""


def log(text):
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--db", default="loyalty_bench_coupons")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--list", action="store_true", help="issue to an uploaded list instead of the tag")
    args = parser.parse_args()
    if "bench" not in args.db:
        sys.exit("The database name must contain 'bench' (it is dropped and re-created).")
    url = f"{args.dsn.rstrip('/')}/{args.db}"
    with psycopg.connect(f"{args.dsn.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db)))
    env = dict(os.environ, ENVIRONMENT="development", DATABASE_URL=url, DJANGO_SETTINGS_MODULE="loyalty.settings")
    env.pop("REDIS_URL", None)
    log("migrate")
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO, env=env, check=True)
    log(f"seed {args.members:,} members" + ("" if args.list else ", all tagged bench-all"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        store = conn.execute(
            "INSERT INTO members_store (code, name, city, is_active, created_at) "
            "VALUES ('BENCH001', 'Bench store', 'Shanghai', true, now()) RETURNING id"
        ).fetchone()[0]
        conn.execute(MEMBERS_SQL, {"members": args.members, "store": store})
        conn.execute("SELECT setval(pg_get_serial_sequence('members_member', 'id'), %s)", [args.members])
        if not args.list:
            tag = conn.execute(
                "INSERT INTO members_tag (code, name, kind, rule, description, is_active, created_at) "
                "VALUES ('bench-all', 'Bench all', 'manual', NULL, '', true, now()) RETURNING id"
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO members_membertag (member_id, tag_id, added_at, added_by) "
                "SELECT id, %s, now(), 'bench' FROM members_member",
                [tag],
            )
        conn.execute("VACUUM ANALYZE")
    log("issue to the list" if args.list else "issue to the tag, then expire")
    env.update(COUPON_LIST_MAX_ROWS=str(args.members), COUPON_LIST_MAX_BYTES=str(64 * 2**20))
    try:
        output = subprocess.run(
            [str(PYTHON), "-c", DJANGO_RUN, str(args.members), "list" if args.list else "tag"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        print(output.strip().splitlines()[-1])
    finally:
        if not args.keep:
            with psycopg.connect(f"{args.dsn.rstrip('/')}/postgres", autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
    log("done")


if __name__ == "__main__":
    main()
