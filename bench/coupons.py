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
`139…` as a till exports them, one column `phone`), recorded as start_batch records an upload (the request's
size limit left aside: the job is what is timed), run by run_coupon_batch: the file read and its keys normalised
once, then 50,000 lines a chunk joined to the members by unnest. Checks one coupon per member and no reject.

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
import json, sys, time
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
    template = CouponTemplate.objects.create(
        name="bench list 20 off 100", kind="amount_off", amount_off=Decimal(20), threshold=Decimal(100),
        valid_days=30, per_member_limit=1,
    )
    text = "phone\n" + "".join(f"139{i:08d}\n" for i in range(1, members + 1))
    batch = CouponBatch.objects.create(template=template, list_name="bench.csv", list_key="phone",
                                       member_list=text, next_member_id=0, last_member_id=members - 1,
                                       created_by="bench")
    started = time.perf_counter()
    result = run_coupon_batch(batch.pk)
    list_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT code), count(DISTINCT member_id) FROM campaigns_coupon")
        coupons, codes, holders = cursor.fetchone()
    template.refresh_from_db()
    assert result["status"] == "done" and result["issued"] == members and result["rejected"] == 0, result
    assert coupons == codes == holders == template.issued_count == members, (coupons, codes, holders)
    print(json.dumps({"members": members, "list_seconds": round(list_seconds, 1), "batch": result}))
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
    log(f"seed {args.members:,} members, all tagged bench-all")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        store = conn.execute(
            "INSERT INTO members_store (code, name, city, is_active, created_at) "
            "VALUES ('BENCH001', 'Bench store', 'Shanghai', true, now()) RETURNING id"
        ).fetchone()[0]
        conn.execute(MEMBERS_SQL, {"members": args.members, "store": store})
        conn.execute("SELECT setval(pg_get_serial_sequence('members_member', 'id'), %s)", [args.members])
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
    log("issue to the tag, then expire")
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
