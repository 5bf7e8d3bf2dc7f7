"""Deterministic interleavings for concurrency tests on PostgreSQL.

A plain race between threads passes or fails by luck. These tools fix the order instead: run each party in a
thread with its own connection (`Session`); keep a transaction open with its locks held until the test says
commit (`OpenTransaction`), or stop a service at one of its hooks (`Checkpoint`); wait until a party either waits
for a lock that another holds or has finished (`settle`); and read the order in which transactions committed
(`commit_order`).
"""

import threading
import time
from contextlib import contextmanager

from django.db import connection, transaction

WAIT_SECONDS = 30  # a party that neither waits nor finishes within this has hung: fail instead of hanging


class Session:
    """`work()` in a thread of its own, with its own database connection. After `join()`, `outcome` is what
    `work()` returned or the exception it raised; `pid` is its PostgreSQL backend, for `settle`."""

    def __init__(self, work, name=""):
        self.work, self.name = work, name
        self.pid = self.outcome = None
        self.finished = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name or None, daemon=True)

    def start(self):
        self._thread.start()
        assert self._connected.wait(WAIT_SECONDS), f"{self.name} did not connect"
        return self

    def _run(self):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self._connected.set()
            self.outcome = self.work()
        except Exception as error:  # the test asserts on it
            self.outcome = error
        finally:
            connection.close()
            self._connected.set()
            self.finished.set()

    def join(self):
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), f"{self.name} did not finish"
        return self.outcome


class OpenTransaction(Session):
    """Runs `work()` inside a transaction and keeps it open, with every lock it took, until `commit()`.
    `start()` returns once `work()` is done (or failed)."""

    def __init__(self, work, name=""):
        self._did_work, self._commit = threading.Event(), threading.Event()

        self._failure = None

        def hold():
            try:
                with transaction.atomic(durable=True):
                    result = work()
                    self._did_work.set()
                    self._commit.wait(WAIT_SECONDS)
                return result
            except Exception as error:
                self._failure = error
                raise
            finally:
                self._did_work.set()

        super().__init__(hold, name)

    def start(self):
        super().start()
        assert self._did_work.wait(WAIT_SECONDS), f"{self.name} did not do its work"
        if self._failure is not None:
            raise self._failure
        return self

    def commit(self):
        self._commit.set()
        return self.join()


@contextmanager
def held_open(work, name="holder"):
    """`OpenTransaction` that commits at the latest when the block ends (so a failing test never hangs)."""
    session = OpenTransaction(work, name).start()
    try:
        yield session
    finally:
        session.commit()


def waits_for_a_lock(session, rows_of=None):
    """Whether the session waits for a lock another transaction holds; with `rows_of` (a table), only a wait
    for one of that table's rows counts (a waiter for a row holds or awaits that row's tuple lock), so a
    short wait on something else on the way there is not mistaken for it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT cardinality(pg_blocking_pids(%s)) > 0 AND (%s::regclass IS NULL OR EXISTS ("
            "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'tuple' AND relation = %s::regclass))",
            [session.pid, rows_of, session.pid, rows_of],
        )
        return cursor.fetchone()[0]


def settle(*sessions, rows_of=None):
    """Return when each session either waits for a lock that another transaction holds (on a row of `rows_of`,
    if given) or has finished."""
    deadline = time.monotonic() + WAIT_SECONDS
    pending = list(sessions)
    while pending:
        pending = [s for s in pending if not s.finished.is_set() and not waits_for_a_lock(s, rows_of)]
        if pending:
            assert time.monotonic() < deadline, f"{[s.name for s in pending]} neither wait nor finish"
            time.sleep(0.005)


def start_settled(*sessions, rows_of=None):
    """Start the sessions one after the other, each settled before the next starts (so they queue for a lock
    in this order)."""
    for session in sessions:
        session.start()
        settle(session, rows_of=rows_of)
    return list(sessions)


class Checkpoint:
    """A callable that stops the thread that calls it until `release()`: register it as a hook to hold a
    service's transaction open at a known point. `reached` is set when a thread arrives."""

    def __init__(self):
        self.reached, self._release = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.reached.set()
        self._release.wait(WAIT_SECONDS)

    def wait(self):
        assert self.reached.wait(WAIT_SECONDS), "nobody reached the checkpoint"

    def release(self):
        self._release.set()


@contextmanager
def commit_order(*tables):
    """While the block runs, log each row inserted into `tables` at the moment its transaction commits (a
    deferred constraint trigger fires at COMMIT, while the transaction still holds its locks), so positions
    follow the commit order of transactions that wait for one another's locks. Yields a function that returns
    [(table, row id)] in commit order. Rows of transactions that roll back never appear."""

    def drop():
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"DROP TRIGGER IF EXISTS test_log_commit ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS test_log_commit()")
            cursor.execute("DROP TABLE IF EXISTS test_commit_log")

    try:  # a table that cannot take the trigger leaves none behind on the others
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS test_commit_log")
            cursor.execute(
                "CREATE TABLE test_commit_log (position bigserial PRIMARY KEY, table_name text NOT NULL, "
                "row_id bigint NOT NULL)"
            )
            cursor.execute(
                "CREATE OR REPLACE FUNCTION test_log_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN INSERT INTO test_commit_log (table_name, row_id) VALUES (TG_TABLE_NAME, NEW.id); "
                "RETURN NULL; END $$"
            )
            for table in tables:
                cursor.execute(
                    f"CREATE CONSTRAINT TRIGGER test_log_commit AFTER INSERT ON {table} "  # noqa: S608
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_log_commit()"
                )
    except Exception:
        drop()
        raise

    def logged():
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name, row_id FROM test_commit_log ORDER BY position")
            return cursor.fetchall()

    try:
        yield logged
    finally:
        drop()
