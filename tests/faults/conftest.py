"""Processes and database sessions of the fault tests' own.

- `gunicorn`: start_gunicorn(workers=..., threads=..., **env) starts a gunicorn of this test's own on a free port
  against the test database pytest-django made (so tests using it are `transaction=True`: the server sees only
  committed rows), waits until it answers, and stops it by its process group at the end, even when the test fails.
  Its database sessions carry an application_name of their own, so a test can find (and terminate) exactly them.
- `RowLock`: a transaction on a psycopg connection of the test's own that holds row locks until released.
- `sessions()`: what the test database's other sessions are doing (pg_stat_activity), to wait on instead of
  sleeping.

Nothing here touches the machine's PostgreSQL or Redis servers: only sessions of the test database and processes
started here.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

from tests.jobs.conftest import database_url, free_port, wait_for


@dataclass
class Answer:
    """One HTTP exchange: the status (0: no answer, the connection broke), headers and JSON body."""

    status: int
    headers: dict = field(default_factory=dict)
    body: object = None
    error: str = ""


def call(port, method, path, body=None, headers=None, timeout=60):
    """One request on a fresh connection. A connection that breaks is an Answer with status 0, not an exception."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            method,
            path,
            body=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        raw = response.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed)
    except (OSError, http.client.HTTPException) as error:
        return Answer(0, error=f"{type(error).__name__}: {error}")
    finally:
        connection.close()


def assert_temporarily_unavailable(response):
    """A Django test client's response is the API's 503 for a database outage, in the error shape of API.md."""
    assert response.status_code == 503, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "detail"}
    assert body["code"] == "temporarily_unavailable"
    assert isinstance(body["detail"], str) and body["detail"]
    assert int(response["Retry-After"]) >= 1


def observer():
    """A connection of our own to the test database (autocommit), for pg_stat_activity and pg_terminate_backend."""
    return psycopg.connect(database_url(), autocommit=True)


def sessions(conn, application_name=None):
    """The test database's other client sessions: [{pid, state, wait_event_type, xact, application_name}]."""
    rows = conn.execute(
        "SELECT pid, state, wait_event_type, xact_start IS NOT NULL, application_name FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "AND (%(name)s::text IS NULL OR application_name = %(name)s)",
        {"name": application_name},
    ).fetchall()
    return [{"pid": r[0], "state": r[1], "wait_event_type": r[2], "xact": r[3], "application_name": r[4]} for r in rows]


def terminate(conn, pids):
    """pg_terminate_backend on these sessions of the test database; returns how many were terminated."""
    if not pids:
        return 0
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE pid = ANY(%s) AND datname = current_database() AND pid <> pg_backend_pid()",
        [list(pids)],
    ).fetchall()
    return sum(1 for (done,) in rows if done)


def tables_written_by(conn, pid):
    """The tables a session holds RowExclusiveLock on: the ones its open transaction has written."""
    rows = conn.execute(
        "SELECT DISTINCT relation::regclass::text FROM pg_locks "
        "WHERE pid = %s AND mode = 'RowExclusiveLock' AND locktype = 'relation'",
        [pid],
    ).fetchall()
    return {name for (name,) in rows}


class RowLock:
    """A transaction of the test's own that holds `SELECT ... FOR UPDATE` locks until release() (a rollback)."""

    def __init__(self, sql, params=()):
        self.conn = psycopg.connect(database_url(), autocommit=False)
        self.conn.execute(sql, params)
        self.pid = self.conn.info.backend_pid

    def release(self):
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


@pytest.fixture
def row_lock(transactional_db):
    """row_lock(sql, params) holds the rows' locks until the test releases them, or ends (before the test database
    is flushed, which would wait for them)."""
    locks = []

    def take(sql, params=()):
        lock = RowLock(sql, params)
        locks.append(lock)
        return lock

    yield take
    for lock in locks:
        lock.release()


@pytest.fixture
def db_observer(transactional_db):
    conn = observer()
    yield conn
    conn.close()


class Gunicorn:
    """`gunicorn loyalty.wsgi` (gthread) in a process group of its own; stop() and kill_worker() signal only it."""

    def __init__(self, *, log_path, workers, threads, env):
        self.port = free_port()
        self.log_path = log_path
        self.application_name = f"faults-{uuid.uuid4().hex[:10]}"
        environment = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
        environment.update(
            {
                "DJANGO_SETTINGS_MODULE": "loyalty.settings",
                "ENVIRONMENT": "test",
                "DEBUG": "false",
                "ALLOWED_HOSTS": "127.0.0.1",
                "LANGUAGE_CODE": "en",
                "DATABASE_URL": f"{database_url()}?application_name={self.application_name}",
                "CONN_MAX_AGE": "60",  # persistent connections, as in production
                "CONFIG_CACHE_SECONDS": "0",  # the tables are emptied between transactional tests
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                **{key: str(value) for key, value in env.items()},
            }
        )
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "loyalty.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                    "--worker-class",
                    "gthread",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "5",
                    "--log-level",
                    "warning",
                    "--error-logfile",
                    "-",
                ],
                cwd=settings.BASE_DIR,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def wait_ready(self, timeout=90):
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return call(self.port, "GET", "/healthz", timeout=5).status == 200

        wait_for(ready, timeout, interval=0.1, message="gunicorn to answer /healthz")
        return self

    def worker_pids(self):
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children]

    def kill_worker(self, pid):
        """SIGKILL one of this server's workers (the master starts another)."""
        assert pid in self.worker_pids(), f"{pid} is not a worker of this gunicorn"
        os.kill(pid, signal.SIGKILL)

    def stop(self):
        if self.process.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)  # our group: start_new_session made pgid == pid
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def start_gunicorn(transactional_db, tmp_path):
    """start_gunicorn(workers=1, threads=4, **env) -> a ready Gunicorn on the test database; every server started
    is stopped at the end of the test (before the database is flushed)."""
    servers = []

    def start(*, workers=1, threads=4, **env):
        server = Gunicorn(
            log_path=tmp_path / f"gunicorn-{len(servers) + 1}.log", workers=workers, threads=threads, env=env
        )
        servers.append(server)
        return server.wait_ready()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
