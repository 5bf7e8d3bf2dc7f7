"""The dependency pins and the audit. requirements.lock and requirements-dev.lock (made by `make lock` with pip-tools)
pin every package, transitive ones included, with hashes, at the versions requirements*.txt name, and the Makefile
and the Dockerfile install them with --require-hashes. .ci/audit.py audits a lock with pip-audit: it fails on a known
vulnerability and says plainly, without failing, when no vulnerability database can be reached (here, a local
stand-in for the OSV API)."""

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / ".ci" / "audit.py"
_spec = importlib.util.spec_from_file_location("ci_audit", AUDIT)
audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit)


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_pins(path):
    """{name: version} of a requirements file, following its `-r` includes; extras dropped."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(direct_pins(path.parent / line[3:].strip()))
        elif line:
            name, version = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(\S+)", line).groups()
            pins[normalized(name)] = version
    return pins


def locked(path):
    return {
        normalized(name): version for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", path.read_text(), re.M)
    }


@pytest.mark.parametrize(
    ("source", "lock"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_every_direct_requirement_is_locked_at_its_version(source, lock):
    direct = direct_pins(ROOT / source)
    pinned = locked(ROOT / lock)
    assert {name: pinned.get(name) for name in direct} == direct, f"run `make lock` after changing {source}"


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_package_is_pinned_with_hashes(lock):
    text = (ROOT / lock).read_text()
    blocks = audit.locked_blocks(text)
    assert len(blocks) == len(locked(ROOT / lock)) > 0
    assert [
        name for name, lines in blocks.items() if not any(line.strip().startswith("--hash=sha256:") for line in lines)
    ] == []
    assert not re.search(r"^\s*(-i|--index-url|--extra-index-url|-f|--find-links)\b", text, re.M)  # no machine's index


def test_the_dev_lock_pins_the_runtime_packages_at_the_same_versions():
    runtime, dev = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_make_and_the_image_install_the_locks_with_hashes():
    makefile, dockerfile = (ROOT / "Makefile").read_text(), (ROOT / "Dockerfile").read_text()
    assert "pip install --quiet --require-hashes -r requirements.lock" in makefile
    assert "pip install --quiet --require-hashes -r requirements-dev.lock" in makefile
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in dockerfile


# --- .ci/audit.py against a local stand-in for the OSV API ----------------------------------------------------------


class _Osv(BaseHTTPRequestHandler):
    """POST /v1/query {"package": {"name", "ecosystem"}, "version"}: one advisory for the names in `vulnerable`."""

    queries = None
    vulnerable = ()

    def do_POST(self):  # noqa: N802 - http.server's naming
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.queries.append((query["package"]["name"], query["version"]))
        answer = {}
        if query["package"]["name"] in self.vulnerable:
            answer = {
                "vulns": [
                    {
                        "id": "GHSA-test-0001",
                        "summary": "a test advisory",
                        "affected": [
                            {
                                "package": {"name": query["package"]["name"], "ecosystem": "PyPI"},
                                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}],
                            }
                        ],
                    }
                ]
            }
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def osv():
    servers = []

    def start(vulnerable=()):
        queries = []
        handler = type("Osv", (_Osv,), {"queries": queries, "vulnerable": vulnerable})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1/query", queries

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def small_lock(tmp_path):
    """Two packages of the real runtime lock, hashes and all: Django (the probe) and sqlparse."""
    blocks = audit.locked_blocks((ROOT / "requirements.lock").read_text())
    path = tmp_path / "small.lock"
    path.write_text("\n".join([*blocks["django"], *blocks["sqlparse"]]) + "\n")
    versions = locked(path)
    return path, versions["django"], versions["sqlparse"]


def run_audit(lock, osv_url):
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    return subprocess.run(  # noqa: S603 - our interpreter and script, fixed arguments
        [sys.executable, str(AUDIT), "--service", "osv", "--osv-url", osv_url, str(lock)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_audit_fails_on_a_known_vulnerability_and_names_it(osv, small_lock):
    lock, django, sqlparse = small_lock
    url, queries = osv(vulnerable=("django",))
    result = run_audit(lock, url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"dependency audit (osv): 2 packages of {lock} audited, 1 vulnerable",
        f"  VULNERABLE django=={django}: GHSA-test-0001 (fixed in 99.0)",
    ]
    assert sorted(queries) == sorted([("django", django), ("django", django), ("sqlparse", sqlparse)])  # probe + all


def test_the_audit_passes_when_no_locked_package_is_vulnerable(osv, small_lock):
    lock, _, _ = small_lock
    url, _ = osv()
    result = run_audit(lock, url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"dependency audit (osv): 2 packages of {lock} audited, 0 vulnerable"]


def test_the_audit_says_it_did_not_run_when_the_database_is_out_of_reach_without_failing(small_lock):
    lock, _, _ = small_lock
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_audit(lock, f"http://127.0.0.1:{port}/v1/query")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"dependency audit NOT RUN: no vulnerability database can be reached from this machine; the 2 packages of "
        f"{lock} are unaudited (this does not fail the build)."
    )
    assert len(lines) == 2 and lines[1].startswith("  osv: ")
