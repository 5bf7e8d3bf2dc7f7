#!/usr/bin/env python3
"""Seed a benchmark database for the nightly jobs: members, purchases (some refunded), points lots with their
ledger entries and accounts, growth entries and member tiers, all made by set-based SQL in the database.

    .venv/bin/python bench/seed.py                                # 1,000,000 members, 10,000,000 purchases
    .venv/bin/python bench/seed.py --members 100000 --purchases 1000000
    .venv/bin/python bench/seed.py --keep                         # reuse the database if it is already seeded

It drops and re-creates the database `--db` (default loyalty_bench_jobs; the name must contain "bench") on the
server `--dsn`, runs `manage.py migrate` into it (DATABASE_URL set), then fills it with INSERT ... SELECT over
generate_series. The bulk tables' secondary indexes and foreign keys are dropped for the load and re-created from
their own definitions afterwards (so the schema is exactly what the migrations made), the id sequences are moved
past the explicit ids, and the database is VACUUM ANALYZEd, as a production database would be. No other database
is touched; the server's configuration is not changed (only this session's work_mem and the like).

What the data looks like (business time zone Asia/Shanghai, benchmark date D = --as-of, default 2026-11-22, the
as-of date of the nightly jobs run on 2026-11-23):
- members: ids in join order, joined_at spread over the 3 years up to D; member_no 12 digits, Luhn-valid;
  referral_code 8 characters; phone +86139xxxxxxxx; all unique. --stores stores.
- purchases: --never-share (15 %) of members never bought; the others' purchase counts are exponential (a long
  tail of frequent buyers), proportional to the days they were a member in the 2 years up to D, scaled so the
  total is exactly --purchases. occurred_at uniform in [max(joined_at, D - 730 days), end of D], rows (and ids)
  in time order as a live system writes them; amounts log-uniform in [1, 2000] (median about 45); 30 % online;
  source "bench". 2 % fully refunded and 3 % partly (a Refund row each, refunded_amount set).
- points: 1 point per 1 CNY (floor), no pending period: one lot per purchase (status available, id = purchase
  id) with its earn entry; a refund's claw-back is a reverse entry with a lot movement (both entries carry the
  purchase's store and channel, as points.services writes them); accounts' available =
  sum of the lots' remaining = sum of the entries; balance_after is the running balance. expires_at = earned_at
  + a validity chosen so that --expire-share (15 %) of all lots are due on D (those earned in the oldest 15 % of
  the 2 years): a catch-up or year-end sized expiry, much more than a normal night's 1/365.
- growth: one entry per purchase (floor(amount) + 10, the default policy) plus a negative one per refund (the
  same share of it, as tiers.services does); a MemberTier row for every member with growth (as on_activity
  writes them), her tier chosen by the better of her growth in the last 365 days and in the 365 before (so the
  downgrade job has members to downgrade); for ranks above regular, --due-share (10 %) hold until D (due on D),
  the others until a day in the coming year.

Needs .venv (psycopg) and PostgreSQL. Prints the time of every step and the table sizes.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_DB = "loyalty_bench_jobs"
DEFAULT_AS_OF = date(2026, 11, 22)
TZ = ZoneInfo("Asia/Shanghai")
REFERRAL_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # members.services.membership.REFERRAL_ALPHABET

# Tables loaded in bulk: their secondary indexes, unique constraints and foreign keys are dropped for the load and
# re-created afterwards from their own definitions.
BULK_TABLES = [
    "members_member",
    "members_purchase",
    "members_refund",
    "points_ledgerentry",
    "points_pointslot",
    "points_lotmovement",
    "points_pointsaccount",
    "tiers_growthentry",
    "tiers_membertier",
]
ID_TABLES = [
    "members_member",
    "members_store",
    "members_purchase",
    "members_refund",
    "points_ledgerentry",
    "points_pointslot",
    "points_lotmovement",
    "tiers_growthentry",
]
SESSION = [
    "SET synchronous_commit = off",
    "SET work_mem = '256MB'",
    "SET maintenance_work_mem = '1GB'",
    "SET max_parallel_maintenance_workers = 2",
    "SET statement_timeout = 0",
]


def log(text):
    print(text, flush=True)


class Steps:
    def __init__(self):
        self.started = time.monotonic()
        self.times = []

    def run(self, name, function, *args):
        began = time.monotonic()
        result = function(*args)
        took = time.monotonic() - began
        self.times.append((name, took))
        log(f"  {name:<44} {took:8.1f} s" + (f"  ({result})" if result not in (None, "") else ""))
        return result

    @property
    def total(self):
        return time.monotonic() - self.started


def server_url(dsn, db):
    return f"{dsn.rstrip('/')}/{db}"


def connect(dsn, db, autocommit=True):
    return psycopg.connect(server_url(dsn, db), autocommit=autocommit)


def seed_info(dsn, db):
    """The parameters of the existing seed (a JSON comment on the database), or None."""
    with connect(dsn, "postgres") as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [db]
        ).fetchone()
    if not row or not row[0]:
        return None
    try:
        return json.loads(row[0])
    except ValueError:
        return None


def recreate_database(dsn, db):
    with connect(dsn, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))


def migrate(dsn, db):
    env = dict(
        os.environ,
        ENVIRONMENT="development",  # the settings refuse to start without one; migrate is the same under any
        DATABASE_URL=server_url(dsn, db),
        DJANGO_SETTINGS_MODULE="loyalty.settings",
    )
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO, env=env, check=True)


def sql_params(args):
    """Bound parameters of the seeding statements: the business calendar of the benchmark date."""
    end = datetime.combine(args.as_of + timedelta(days=1), datetime.min.time(), tzinfo=TZ)  # end of D
    purchases_from = end - timedelta(days=730)
    return {
        "members": args.members,
        "purchases": args.purchases,
        "stores": args.stores,
        "end": end,
        "joined_from": end - timedelta(days=3 * 365),
        "purchases_from": purchases_from,
        "never_share": args.never_share,
        "expire_share": args.expire_share,
        "validity": None,
        "growth_window_start": end - timedelta(days=365),
        "growth_previous_start": end - timedelta(days=730),
        "as_of": args.as_of,
        "due_share": args.due_share,
        "tz": "Asia/Shanghai",
        "alphabet": REFERRAL_ALPHABET,
    }


class Seeder:
    def __init__(self, conn, params):
        self.conn, self.p = conn, params
        self.deferred = []  # (kind, table, name, definition) to re-create after the load

    def execute(self, statement, params=None):
        cursor = self.conn.execute(statement, self.p if params is None else params)
        return cursor.rowcount

    def session(self):
        for statement in SESSION:
            self.conn.execute(statement)
        self.conn.execute("SELECT setseed(0.4242)")
        # A 12-digit card number: 11 digits and a Luhn check digit, as members.services.membership makes them.
        self.conn.execute("""
            CREATE FUNCTION pg_temp.luhn(body text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
            SELECT ((10 - SUM(CASE WHEN (length(body) - p) % 2 = 0
                                   THEN (substr(body, p, 1)::int * 2) % 10 + (substr(body, p, 1)::int * 2) / 10
                                   ELSE substr(body, p, 1)::int END) % 10) % 10)::text
            FROM generate_series(1, length(body)) p $$""")

    def defer_indexes(self):
        """Drop the bulk tables' foreign keys, unique constraints and secondary indexes (primary keys stay)."""
        rows = self.conn.execute(
            """
            SELECT c.contype, t.relname, c.conname, pg_get_constraintdef(c.oid)
            FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
            WHERE t.relname = ANY(%s) AND c.contype IN ('f', 'u')
            ORDER BY c.contype, t.relname, c.conname""",
            [BULK_TABLES],
        ).fetchall()
        constraint_names = {name for _, _, name, _ in rows}
        for kind, table, name, definition in rows:  # foreign keys ('f') sort first: drop them first
            self.conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name))
            )
            self.deferred.append((kind, table, name, definition))
        indexes = self.conn.execute(
            """
            SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.contype = 'p')
            ORDER BY i.tablename, i.indexname""",
            [BULK_TABLES],
        ).fetchall()
        for table, name, definition in indexes:
            if name in constraint_names:
                continue
            self.conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            self.deferred.append(("i", table, name, definition))
        return f"{len(self.deferred)} dropped"

    def restore_indexes(self, steps):
        order = {"i": 0, "u": 1, "f": 2}  # indexes and unique keys before the foreign keys that check against them
        for kind, table, name, definition in sorted(self.deferred, key=lambda d: (order[d[0]], d[1], d[2])):
            if kind == "i":
                statement = sql.SQL(definition)
            else:
                statement = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                    sql.Identifier(table), sql.Identifier(name)
                ) + sql.SQL(definition)
            steps.run(
                f"  {'index' if kind == 'i' else 'unique' if kind == 'u' else 'fkey'} {name[:34]}",
                lambda statement=statement: self.conn.execute(statement) and None,
            )

    def stores(self):
        return self.execute("""
            INSERT INTO members_store (code, name, city, is_active, created_at)
            SELECT 'BENCH' || lpad(s::text, 3, '0'), 'Bench store ' || s,
                   (ARRAY['Shanghai', 'Beijing', 'Shenzhen', 'Hangzhou', 'Chengdu'])[1 + mod(s, 5)], true,
                   %(joined_from)s
            FROM generate_series(1, %(stores)s) s""")

    def members(self):
        referral = " || ".join(f"substr(%(alphabet)s, mod(i / {31**k}, 31)::int + 1, 1)" for k in range(6, -1, -1))
        return self.execute(f"""
            INSERT INTO members_member (id, member_no, phone, external_id, name, gender, birthday, email,
                                        home_store_id, channel, referral_code, referrer_id, consent_sms,
                                        consent_wechat, consent_email, status, joined_at, updated_at)
            SELECT i, body || pg_temp.luhn(body), '+86139' || lpad(i::text, 8, '0'), NULL, 'bench ' || i,
                   (ARRAY['female', 'male', 'unknown'])[1 + mod(i * 7919, 3)],
                   date '1960-01-01' + mod(i * 104729, 16000)::int, '',
                   (SELECT min(id) FROM members_store) + mod(i * 31, %(stores)s),
                   (ARRAY['store', 'mini_program', 'app', 'web'])[1 + mod(i * 13, 4)],
                   'B' || {referral}, NULL, mod(i, 3) = 0, mod(i, 2) = 0, mod(i, 5) = 0, 'active',
                   %(joined_from)s + ((i - 1) + random()) * ((%(end)s - %(joined_from)s) / %(members)s),
                   %(end)s
            FROM (SELECT i::bigint AS i, '9' || lpad(i::text, 10, '0') AS body
                  FROM generate_series(1, %(members)s) i) s""")

    def purchase_plan(self):
        # Each buyer's expected count: exponential weight x days she could buy; cumulative flooring makes the
        # counts integers that add up to exactly --purchases (rounding the running sum: the last one is the total).
        self.execute("""
            CREATE UNLOGGED TABLE bench_plan AS
            WITH weights AS (
                SELECT id AS member_id, greatest(joined_at, %(purchases_from)s) AS buy_from,
                       CASE WHEN random() < %(never_share)s THEN 0
                            ELSE -ln(1 - random())
                                 * extract(epoch FROM %(end)s - greatest(joined_at, %(purchases_from)s))
                       END::numeric AS weight
                FROM members_member
            ), expected AS (
                SELECT member_id, buy_from, weight * %(purchases)s / SUM(weight) OVER () AS expected FROM weights
            ), cumulative AS (
                SELECT member_id, buy_from, expected,
                       SUM(expected) OVER (ORDER BY member_id ROWS UNBOUNDED PRECEDING) AS upto FROM expected
            )
            SELECT member_id, buy_from, (round(upto) - round(upto - expected))::int AS n FROM cumulative""")
        return self.conn.execute("SELECT SUM(n), count(*) FILTER (WHERE n = 0), max(n) FROM bench_plan").fetchone()

    def purchases(self):
        return self.execute("""
            INSERT INTO members_purchase (id, member_id, store_id, source, order_no, channel, occurred_at, amount,
                                          refunded_amount, currency, points_awarded, points_reversed, points_used,
                                          points_used_returned, imported, created_at)
            WITH made AS MATERIALIZED (
                SELECT g.member_id, g.occurred_at, g.amount, g.roll, g.store, g.online,
                       CASE WHEN g.roll < 0.02 THEN g.amount
                            WHEN g.roll < 0.05 THEN round(g.amount * (0.1 + 0.8 * g.part)::numeric, 2)
                            ELSE 0 END AS refunded
                FROM (SELECT p.member_id, p.buy_from + random() * (%(end)s - p.buy_from) AS occurred_at,
                             round(exp(random() * ln(2000))::numeric, 2) AS amount, random() AS roll,
                             random() AS part, floor(random() * %(stores)s)::int AS store, random() < 0.3 AS online
                      FROM bench_plan p CROSS JOIN LATERAL generate_series(1, p.n)) g
            ), numbered AS (
                SELECT row_number() OVER (ORDER BY occurred_at) AS id, * FROM made
            )
            SELECT id, member_id, (SELECT min(id) FROM members_store) + store, 'bench',
                   'B' || lpad(id::text, 11, '0'), CASE WHEN online THEN 'online' ELSE 'offline' END, occurred_at,
                   amount, refunded, 'CNY', floor(amount)::bigint,
                   floor(floor(amount) * refunded / amount)::bigint, 0, 0, false, occurred_at
            FROM numbered""")

    def validity(self):
        """How long lots stay valid: chosen so that exactly the oldest --expire-share of them are due on D (lot ids
        are in time order, so the lot at that rank is the newest one due)."""
        cutoff = self.conn.execute(
            "SELECT occurred_at FROM members_purchase WHERE id = greatest(1, floor(%s * %s)::bigint)",
            [self.p["expire_share"], self.p["purchases"]],
        ).fetchone()[0]
        self.p["validity"] = self.p["end"] - cutoff
        return f"{self.p['validity'].total_seconds() / 86400:.1f} days"

    def refunds(self):
        return self.execute("""
            INSERT INTO members_refund (purchase_id, refund_no, amount, lines, points_reversed, points_returned,
                                        occurred_at, created_at)
            SELECT id, 'R' || order_no, refunded_amount, '[]', points_reversed, 0, at, at
            FROM (SELECT id, order_no, refunded_amount, points_reversed,
                         greatest(occurred_at, least(occurred_at + random() * interval '7 days',
                                                     %(end)s - interval '1 second')) AS at
                  FROM members_purchase WHERE refunded_amount > 0) r""")

    def entry_plan(self):
        # Every ledger entry with its final id (time order): the earn of each purchase, the reverse of each refund.
        self.execute("""
            CREATE UNLOGGED TABLE bench_entry AS
            SELECT row_number() OVER (ORDER BY at, kind, purchase_id) AS id, *
            FROM (SELECT id AS purchase_id, member_id, 'earn' AS kind, points_awarded AS points, occurred_at AS at,
                         order_no AS reference, points_awarded AS lot_points,
                         points_awarded - points_reversed AS lot_remaining, store_id, channel
                  FROM members_purchase
                  UNION ALL
                  SELECT r.purchase_id, p.member_id, 'reverse', -r.points_reversed, r.occurred_at,
                         p.order_no || '/' || r.refund_no, NULL, NULL, p.store_id, p.channel
                  FROM members_refund r JOIN members_purchase p ON p.id = r.purchase_id
                  WHERE r.points_reversed > 0) e""")
        return self.conn.execute("SELECT count(*) FROM bench_entry").fetchone()[0]

    def ledger(self):
        return self.execute("""
            INSERT INTO points_ledgerentry (id, member_id, kind, points, available_delta, pending_delta,
                                            balance_after, pending_after, reason, reference, actor, breakdown,
                                            expires_at, created_at, store_id, channel)
            SELECT id, member_id, kind, points, points, 0,
                   SUM(points) OVER (PARTITION BY member_id ORDER BY id ROWS UNBOUNDED PRECEDING), 0,
                   CASE kind WHEN 'earn' THEN 'purchase' ELSE 'refund' END, reference, 'bench',
                   CASE kind WHEN 'earn' THEN jsonb_build_object('base', points) END,
                   CASE kind WHEN 'earn' THEN at + %(validity)s END, at, store_id, channel
            FROM bench_entry ORDER BY id""")

    def lots(self):
        return self.execute("""
            INSERT INTO points_pointslot (id, member_id, entry_id, status, points, remaining, earned_at,
                                          available_at, expires_at, purchase_id)
            SELECT purchase_id, member_id, id, 'available', lot_points, lot_remaining, at, at, at + %(validity)s,
                   purchase_id
            FROM bench_entry WHERE kind = 'earn' ORDER BY purchase_id""")

    def movements(self):
        return self.execute("""
            INSERT INTO points_lotmovement (entry_id, lot_id, points)
            SELECT id, purchase_id, points FROM bench_entry WHERE kind = 'reverse' ORDER BY id""")

    def accounts(self):
        return self.execute("""
            INSERT INTO points_pointsaccount (member_id, available, pending, lifetime_earned, lifetime_spent,
                                              lifetime_expired, cap_date, earned_on_cap_date, last_sign_in,
                                              sign_in_streak, closed, updated_at)
            SELECT m.id, COALESCE(t.points, 0), 0, COALESCE(t.points, 0), 0, 0, NULL, 0, NULL, 0, false, %(end)s
            FROM members_member m
            LEFT JOIN (SELECT member_id, SUM(points) AS points FROM bench_entry GROUP BY member_id) t
                   ON t.member_id = m.id
            ORDER BY m.id""")

    def growth(self):
        policy = self.conn.execute(
            "SELECT id FROM tiers_growthpolicy WHERE tag_id IS NULL ORDER BY valid_from DESC, id DESC LIMIT 1"
        ).fetchone()[0]
        made = self.execute(
            """
            INSERT INTO tiers_growthentry (id, member_id, kind, value, occurred_at, reference, policy_id, created_at)
            SELECT id, member_id, 'purchase', floor(amount)::int + 10, occurred_at, 'purchase:' || id, %(policy)s,
                   occurred_at
            FROM members_purchase ORDER BY id""",
            {"policy": policy},
        )
        reversed_ = self.execute("""
            INSERT INTO tiers_growthentry (id, member_id, kind, value, occurred_at, reference, policy_id, created_at)
            SELECT (SELECT max(id) FROM members_purchase) + row_number() OVER (ORDER BY r.occurred_at, r.id),
                   p.member_id, 'refund', -floor((floor(p.amount) + 10) * r.amount / p.amount)::int, r.occurred_at,
                   'purchase:' || p.id, NULL, r.occurred_at
            FROM members_refund r JOIN members_purchase p ON p.id = r.purchase_id
            WHERE floor((floor(p.amount) + 10) * r.amount / p.amount) > 0
            ORDER BY 1""")
        return f"{made} purchase + {reversed_} refund entries"

    def member_tiers(self):
        self.execute("""
            INSERT INTO tiers_membertier (member_id, tier_id, since, hold_until, window_growth, updated_at)
            WITH growth AS (
                SELECT member_id,
                       COALESCE(SUM(value) FILTER (WHERE occurred_at >= %(growth_window_start)s), 0) AS this_year,
                       COALESCE(SUM(value) FILTER (WHERE occurred_at < %(growth_window_start)s), 0) AS last_year
                FROM tiers_growthentry WHERE occurred_at >= %(growth_previous_start)s AND occurred_at < %(end)s
                GROUP BY member_id
            ), chosen AS (
                SELECT g.member_id, g.this_year, t.id AS tier_id, t.rank, t.hold_days,
                       CASE WHEN t.rank = 0 THEN NULL
                            WHEN random() < %(due_share)s THEN %(as_of)s::date
                            ELSE %(as_of)s::date + 1 + floor(random() * 364)::int END AS hold_until
                FROM growth g
                CROSS JOIN LATERAL (SELECT id, rank, hold_days FROM tiers_tier
                                    WHERE entry_threshold <= greatest(g.this_year, g.last_year)
                                    ORDER BY rank DESC LIMIT 1) t
            )
            SELECT member_id, tier_id,
                   CASE WHEN hold_until IS NULL THEN %(growth_previous_start)s
                        ELSE (hold_until - hold_days)::timestamp AT TIME ZONE %(tz)s END,
                   hold_until, this_year, %(end)s
            FROM chosen ORDER BY member_id""")
        return ", ".join(
            f"{code} {count}" + (f" ({due} due)" if due else "")
            for code, count, due in self.conn.execute(
                """
            SELECT t.code, count(*), count(*) FILTER (WHERE mt.hold_until <= %s)
            FROM tiers_membertier mt JOIN tiers_tier t ON t.id = mt.tier_id GROUP BY t.code, t.rank ORDER BY t.rank""",
                [self.p["as_of"]],
            ).fetchall()
        )

    def drop_staging(self):
        self.conn.execute("DROP TABLE bench_plan, bench_entry")

    def sequences(self):
        for table in ID_TABLES:
            self.conn.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({table_name}, 'id'), (SELECT COALESCE(max(id), 0) + 1 "
                    "FROM {table}), false)"
                ).format(table_name=sql.Literal(table), table=sql.Identifier(table))
            )

    def vacuum(self):
        self.conn.execute("VACUUM (ANALYZE)")


def sizes(conn):
    return conn.execute(
        """
        SELECT c.relname, c.reltuples::bigint, pg_size_pretty(pg_table_size(c.oid)),
               pg_size_pretty(pg_indexes_size(c.oid))
        FROM pg_class c WHERE c.relname = ANY(%s) ORDER BY pg_total_relation_size(c.oid) DESC""",
        [BULK_TABLES],
    ).fetchall()


def seed(args):
    steps = Steps()
    log(f"Seeding {args.db}: {args.members:,} members, {args.purchases:,} purchases, as of {args.as_of}")
    steps.run("drop and create the database", recreate_database, args.dsn, args.db)
    steps.run("manage.py migrate", migrate, args.dsn, args.db)
    with connect(args.dsn, args.db) as conn:
        seeder = Seeder(conn, sql_params(args))
        seeder.session()
        indexes_before = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'").fetchone()[0]
        constraints_before = conn.execute("SELECT count(*) FROM pg_constraint").fetchone()[0]
        steps.run("drop secondary indexes and foreign keys", seeder.defer_indexes)
        steps.run("stores", seeder.stores)
        steps.run("members", seeder.members)
        steps.run("purchase plan (counts per member)", seeder.purchase_plan)
        steps.run("purchases", seeder.purchases)
        steps.run("lot validity for the expiring share", seeder.validity)
        steps.run("refunds", seeder.refunds)
        steps.run("ledger entry plan", seeder.entry_plan)
        steps.run("ledger entries (earn, reverse)", seeder.ledger)
        steps.run("points lots", seeder.lots)
        steps.run("lot movements (refund claw-backs)", seeder.movements)
        steps.run("points accounts", seeder.accounts)
        steps.run("growth entries", seeder.growth)
        steps.run("member tiers", seeder.member_tiers)
        steps.run("drop staging tables", seeder.drop_staging)
        began = time.monotonic()
        log("  re-create indexes, unique keys, foreign keys:")
        seeder.restore_indexes(steps)
        steps.times.append(("indexes and constraints (total)", time.monotonic() - began))
        log(f"  {'indexes and constraints (total)':<44} {time.monotonic() - began:8.1f} s")
        steps.run("sequences past the explicit ids", seeder.sequences)
        steps.run("VACUUM ANALYZE", seeder.vacuum)
        indexes_after = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'").fetchone()[0]
        constraints_after = conn.execute("SELECT count(*) FROM pg_constraint").fetchone()[0]
        if (indexes_before, constraints_before) != (indexes_after, constraints_after):
            sys.exit(
                f"schema changed: indexes {indexes_before} -> {indexes_after}, "
                f"constraints {constraints_before} -> {constraints_after}"
            )
        counts = dict(
            conn.execute(
                """
            SELECT 'members', count(*) FROM members_member UNION ALL SELECT 'purchases', count(*) FROM members_purchase
            UNION ALL SELECT 'refunds', count(*) FROM members_refund
            UNION ALL SELECT 'lots', count(*) FROM points_pointslot
            UNION ALL SELECT 'lots due', count(*) FROM points_pointslot
                      WHERE status = 'available' AND expires_at <= %(end)s
            UNION ALL SELECT 'ledger entries', count(*) FROM points_ledgerentry
            UNION ALL SELECT 'growth entries', count(*) FROM tiers_growthentry
            UNION ALL SELECT 'member tiers', count(*) FROM tiers_membertier
            UNION ALL SELECT 'tiers due', count(*) FROM tiers_membertier mt JOIN tiers_tier t ON t.id = mt.tier_id
                      WHERE t.rank > 0 AND (mt.hold_until IS NULL OR mt.hold_until <= %(as_of)s)""",
                seeder.p,
            ).fetchall()
        )
        database_size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        table_sizes = sizes(conn)
    info = {
        "members": args.members,
        "purchases": args.purchases,
        "as_of": args.as_of.isoformat(),
        "expire_share": args.expire_share,
        "due_share": args.due_share,
        "counts": counts,
        "seconds": round(steps.total, 1),
        "size": database_size,
    }
    with connect(args.dsn, "postgres") as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(args.db), sql.Literal(json.dumps(info)))
        )
    log(f"Done in {steps.total:.1f} s; database {database_size}.")
    log("  " + ", ".join(f"{key} {value:,}" for key, value in counts.items()))
    for name, rows, table, indexes in table_sizes:
        log(f"  {name:<24} {rows:>12,} rows  table {table:>8}  indexes {indexes:>8}")
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=10_000_000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--dsn", default=DEFAULT_DSN, help=f"server URL without the database (default {DEFAULT_DSN})")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database to (re)create (default {DEFAULT_DB})")
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF, help="benchmark business date")
    parser.add_argument("--never-share", type=float, default=0.15, help="members who never bought")
    parser.add_argument("--expire-share", type=float, default=0.15, help="lots due to expire on the date")
    parser.add_argument("--due-share", type=float, default=0.10, help="tiered members whose hold ends on the date")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="do not drop: reuse the database if it was seeded with the same sizes and date",
    )
    args = parser.parse_args()
    if "bench" not in args.db:
        parser.error("--db must contain 'bench' (it is dropped)")
    if args.members > 99_999_999:
        parser.error("--members: at most 99,999,999 (8-digit phone suffix)")
    if args.keep:
        info = seed_info(args.dsn, args.db)
        if info and (info["members"], info["purchases"], info["as_of"]) == (
            args.members,
            args.purchases,
            args.as_of.isoformat(),
        ):
            log(f"{args.db} already seeded: {json.dumps(info)}")
            return
    seed(args)


if __name__ == "__main__":
    main()
