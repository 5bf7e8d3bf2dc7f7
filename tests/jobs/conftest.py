"""A real broker and real workers for the worker tests (test_worker.py): each test starts its own redis-server on
a free port and its own Celery worker processes, on the test database pytest-django made, and stops exactly the
processes it started, by their ids, even when it fails. The shared Redis (6379) and PostgreSQL are left alone.

Nothing here is autouse: the other job tests in this folder run in-process as before.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection

REDIS_SERVER = shutil.which("redis-server")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout, interval=0.05, message="condition"):
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class RedisServer:
    """A throwaway redis-server of our own (no persistence), on a free port."""

    def __init__(self):
        for _ in range(5):  # a free port can be taken between choosing it and binding it: try another
            self.port = free_port()
            if self.start():
                return
        raise RuntimeError("could not start redis-server on a free port")

    def start(self):
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(lambda: self.process.poll() is not None or self.ping(), 10, message="redis-server")
        except AssertionError:
            self.stop()
            raise
        return self.process.poll() is None

    def restart(self):
        """Stop the server and start a new one on the same port (empty: nothing is persisted)."""
        self.stop()
        if not self.start():
            raise RuntimeError(f"could not start redis-server again on port {self.port}")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def ping(self):
        try:
            with self.client() as client:
                return client.ping()
        except redis.RedisError:
            return False

    def freeze(self):
        """The server hangs: its port still accepts connections, but nothing answers."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def stop(self):
        if self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)  # a frozen server would not act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Worker:
    """`celery -A loyalty worker` (prefork, one child, as in production) in its own process group, on our broker and
    the test database. kill() is SIGKILL to the whole group: the main process and its pool child die at once."""

    def __init__(self, *, broker_url, database_url, log_path, env=None):
        self.log_path = log_path
        self.name = f"jobs-test-{uuid.uuid4().hex[:8]}@%h"
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "loyalty.settings",
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": broker_url,
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "loyalty",
                    "worker",
                    "-l",
                    "info",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    "1",
                    "-Q",
                    "celery",
                    "-n",
                    self.name,
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
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

    def wait_ready(self, timeout=30):
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_for(ready, timeout, interval=0.1, message="the worker to be ready")
        return self

    def kill(self):
        """SIGKILL the worker's process group (ours: it was started in a session of its own)."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def database_url():
    """The URL of the database this test runs on (pytest-django's test database), for the worker processes."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{credentials}@{host}{port}/{quote(db['NAME'], safe='')}"


def _reset_broker_pools(app):
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def sending_to(broker_url):
    """This process sends tasks to `broker_url` instead of running them in-process; restored afterwards."""
    from loyalty.celery import app

    saved = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    _reset_broker_pools(app)
    app.conf.update(broker_url=broker_url, task_always_eager=False)
    try:
        yield app
    finally:
        _reset_broker_pools(app)
        app.conf.update(saved)


@pytest.fixture
def redis_server():
    """A redis-server of this test's own, stopped at the end."""
    if REDIS_SERVER is None:
        pytest.skip("needs redis-server")
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker(redis_server):
    """Our redis-server, with this process sending tasks to it."""
    with sending_to(redis_server.url):
        yield redis_server


@pytest.fixture
def start_worker(broker, transactional_db, tmp_path):
    """start_worker(**env) starts a worker on `broker` and the test database and waits until it is ready; every
    worker started is killed at the end of the test (before the database is flushed)."""
    workers = []

    def start(**env):
        worker = Worker(
            broker_url=broker.url,
            database_url=database_url(),
            log_path=tmp_path / f"worker-{len(workers) + 1}.log",
            env={key: str(value) for key, value in env.items()},
        )
        workers.append(worker)
        return worker.wait_ready()

    try:
        yield start
    finally:
        for worker in workers:
            worker.kill()
