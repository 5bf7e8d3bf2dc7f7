"""A PgBouncer of the test session's own, in transaction pooling mode, in front of the test database, and what runs
through it with the settings production uses behind it (DATABASE_POOL_MODE=transaction, docs/SCALING.md §3).

- `pgbouncer` (session): Debian's /usr/sbin/pgbouncer (`make pgbouncer`) on a free port of its own, its ini and
  userlist in a temporary folder, trust authentication towards the local server, `default_pool_size = 2` so the
  clients of a test share two server sessions. Stopped by its own process id at the end of the session, before
  pytest-django drops the test database. Without the binary the tests skip, saying why; in CI (CI=true) they fail.
- `pooled_server`: pooled_server(workers=..., threads=...) starts a gunicorn of the test's own (tests/faults'
  Gunicorn) whose DATABASE_URL is the pooler, with DATABASE_POOL_MODE=transaction and persistent connections.
- `pooled_settings`: the DATABASES["default"] that loyalty/settings.py makes with DATABASE_POOL_MODE=transaction
  and the pooler's URL (computed by the settings module itself, in a subprocess), to open Django connections of
  the test's own through the pooler (`django_connection`).
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper

from tests.faults.conftest import Gunicorn
from tests.jobs.conftest import free_port

# Debian's package (`make pgbouncer`): /usr/sbin is not on every user's PATH. PGBOUNCER=/path/to/pgbouncer for another.
PGBOUNCER = os.environ.get("PGBOUNCER") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 2


def pgbouncer_missing():
    """Why the pooling tests cannot run here, or "" when they can."""
    if shutil.which(PGBOUNCER):
        return ""
    return f"needs PgBouncer ({PGBOUNCER} is missing): run `make pgbouncer` (as root) to install Debian's with apt"


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


class PgBouncer:
    """pgbouncer in transaction pooling mode on a free port, for one database of the local server; its files in a
    temporary folder of its own; stop() ends only this process (by its id) and removes the folder."""

    def __init__(self, *, database, user, host, port, pool_size=POOL_SIZE):
        self.database, self.user, self.pool_size = database, user, pool_size
        self.port = free_port()
        # Not pytest's tmp_path: as root PgBouncer drops to another user (-u), who must read the files.
        self.directory = Path(tempfile.mkdtemp(prefix="pooling-pgbouncer-"))
        self.directory.chmod(0o755)
        self.log_path = self.directory / "pgbouncer.log"
        (self.directory / "users.txt").write_text(f'"{user}" ""\n')
        self.config = self.directory / "pgbouncer.ini"
        self.config.write_text(
            "[databases]\n"
            f"{database} = host={host} port={port} dbname={database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.directory / 'users.txt'}\nadmin_users = {user}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            # LIFO: a client alone gets the server session it just released
            "max_client_conn = 200\nserver_round_robin = 0\n"
            # A client that waits longer than this for a server session gets an error, not a hang.
            "query_wait_timeout = 60\n"
        )
        for path in self.directory.iterdir():
            path.chmod(0o644)
        self.process = None
        self._log = None

    @property
    def url(self):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout=20):
        command = [PGBOUNCER, str(self.config)]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            user = next((name for name in ("postgres", "nobody") if _os_user_exists(name)), None)
            command[1:1] = ["-u", user]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
            command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not listen on {self.port} within {timeout} s:\n{self.log()[-3000:]}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin(self, command):
        """A command on PgBouncer's admin console (SHOW POOLS, SHOW SERVERS, ...): its rows as dicts."""
        with psycopg.connect(
            f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer",
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,
        ) as admin:
            cursor = admin.execute(command)
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def servers(self):
        """The server sessions PgBouncer holds to our database: [{remote_pid, state, ...}]."""
        return [row for row in self.admin("SHOW SERVERS") if row["database"] == self.database]

    def clients(self):
        return [row for row in self.admin("SHOW CLIENTS") if row["database"] == self.database]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM to this process only: it closes its client and server sessions
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _os_user_exists(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def pgbouncer(django_db_setup):
    """The session's PgBouncer in front of the test database (made by django_db_setup, which outlives it)."""
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    missing = pgbouncer_missing()
    if missing:
        if in_ci():
            pytest.fail(f"CI=true and {missing}: .ci/run runs `make pgbouncer` first", pytrace=False)
        pytest.skip(missing)
    db = connection.settings_dict  # the test database's, once django_db_setup made it
    pooler = PgBouncer(
        database=db["NAME"],
        user=db["USER"] or "postgres",
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
    )
    try:
        yield pooler.start()
    finally:
        pooler.stop()


def server_env(pooler):
    """The environment of every process of the service behind the pooler (the web, manage.py)."""
    return {"DATABASE_URL": pooler.url, "DATABASE_POOL_MODE": "transaction", "CONN_MAX_AGE": "60"}


@pytest.fixture
def pooled_server(pgbouncer, transactional_db, tmp_path):
    """pooled_server(workers=1, threads=8) -> a ready gunicorn behind the pooler; stopped at the end of the test,
    before the test database is flushed."""
    servers = []

    def start(*, workers=1, threads=8, **env):
        server = Gunicorn(
            log_path=tmp_path / f"gunicorn-{len(servers) + 1}.log",
            workers=workers,
            threads=threads,
            env={**server_env(pgbouncer), **env},
        )
        servers.append(server)
        return server.wait_ready()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def manage(pooler, *arguments, timeout=120):
    """`manage.py <arguments>` with the service's settings behind the pooler; the finished process."""
    environment = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    environment.update({"ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", **server_env(pooler)})
    return subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, "manage.py", *arguments],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


SHOW_DATABASE_SETTINGS = (
    "import json; from django.conf import settings; "
    "print(json.dumps({'pool_mode': settings.DATABASE_POOL_MODE, 'default': settings.DATABASES['default']}))"
)


@pytest.fixture(scope="session")
def pooled_settings(pgbouncer):
    """What loyalty/settings.py itself makes of DATABASE_POOL_MODE=transaction and the pooler's URL:
    {"pool_mode", "default": DATABASES["default"]}."""
    done = manage(pgbouncer, "shell", "-c", SHOW_DATABASE_SETTINGS)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def django_connection(pooled_settings, transactional_db):
    """django_connection(**overrides) -> a Django PostgreSQL connection of the test's own through the pooler, with
    the production settings for transaction pooling (overrides replace top-level keys, OPTIONS merged). It is a
    database alias for the test's duration (`Model.objects.using(conn.alias)`), closed and removed at its end."""
    opened = []

    def open_connection(**overrides):
        options = {**pooled_settings["default"].get("OPTIONS", {}), **overrides.pop("OPTIONS", {})}
        settings_dict = {**pooled_settings["default"], **overrides, "OPTIONS": options}
        alias = f"pooled_{len(opened) + 1}"
        configured = connections.configure_settings({"default": settings_dict})["default"]
        wrapper = DatabaseWrapper(configured, alias=alias)
        # Connected before it is an alias: Django's test case refuses to connect aliases the test did not declare.
        wrapper.ensure_connection()
        connections.settings[alias] = configured
        connections[alias] = wrapper
        opened.append(alias)
        return connections[alias]

    yield open_connection
    for alias in opened:
        with suppress(Exception):
            connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


class Holder:
    """A client of the pooler of our own that holds a server session inside an open transaction until release():
    the next transaction of any other client must run on another server session."""

    def __init__(self, pooler):
        self.conn = psycopg.connect(pooler.url, autocommit=False)
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def release(self):
        with suppress(Exception):
            self.conn.rollback()
        self.conn.close()


@pytest.fixture
def hold_server(pgbouncer, transactional_db):
    """hold_server() -> a Holder (its .pid the server session it holds); all released at the end of the test."""
    holders = []

    def hold():
        holder = Holder(pgbouncer)
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.release()


def together(count, work):
    """work(index) from `count` threads released at once; the results in index order (an exception is re-raised)."""
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def run(index):
        try:
            barrier.wait(timeout=60)
            results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(thread.is_alive() for thread in threads), "a client thread did not finish"
    if errors:
        raise errors[0]
    return results
