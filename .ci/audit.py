#!/usr/bin/env python3
"""Dependency audit (`make audit`, and a phase of .ci/run): pip-audit checks every package of a lock file (by default
requirements-dev.lock: the runtime and the dev set, transitive dependencies included, hashed) against a vulnerability
database: pip-audit's `pypi` service first, its `osv` service when that one does not answer (`--service` chooses,
`--osv-url` names a mirror of the OSV API).

One package (Django) is asked first. When no service answers for it, the audit says plainly that it did not run, and
why, and stops without failing: a machine whose network reaches only the package files cannot audit, and that is not
a reason to refuse the build, but it must not read as a pass either. Otherwise every locked package is audited:
exit 1 when one has a known vulnerability (listed with the versions that fix it), 0 when none has; packages the
database does not know are listed as not audited.

    .venv/bin/python .ci/audit.py [--service pypi|osv ...] [--osv-url URL] [LOCK_FILE]
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SERVICES = ("pypi", "osv")
PROBE = "django"
TIMEOUT_SECONDS = 15


def locked_blocks(text):
    """{name: the lines that pin it (name==version and its --hash continuation lines)} of a pip-compile lock."""
    blocks, name = {}, None
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", line)
        if match:
            name = match.group(1).lower()
            blocks[name] = [line]
        elif name and line.startswith("    --hash="):
            blocks[name].append(line)
        else:
            name = None
    return blocks


def pip_audit(requirements, service, osv_url=None):
    """Run pip-audit on a hashed requirements file without resolving or installing anything. Returns (report, why):
    the JSON report, or None and the last line pip-audit wrote when it produced none (no answer from the service)."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "report.json"
        done = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "pip_audit",
                "--disable-pip",
                "--require-hashes",
                "--requirement",
                str(requirements),
                "--vulnerability-service",
                service,
                "--timeout",
                str(TIMEOUT_SECONDS),
                "--progress-spinner",
                "off",
                "--desc",
                "off",
                "--format",
                "json",
                "--output",
                str(output),
                *(["--osv-url", osv_url] if osv_url else []),
            ],
            capture_output=True,
            text=True,
        )
        text = output.read_text() if output.exists() else ""
    if text:
        return json.loads(text), ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return None, (lines[-1] if lines else f"pip-audit exited {done.returncode} with no report")[:300]


def reachable_service(blocks, services, osv_url):
    """The first service that audits the probe package, and why each one before it did not."""
    reasons = []
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as probe:
        probe.write("\n".join(blocks[PROBE]) + "\n")
        probe.flush()
        for service in services:
            report, why = pip_audit(probe.name, service, osv_url)
            if report is not None:
                dependency = next(iter(report["dependencies"]), {})
                if "skip_reason" not in dependency:
                    return service, reasons
                why = dependency["skip_reason"]
            reasons.append(f"{service}: {why}")
    return None, reasons


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lock", nargs="?", default="requirements-dev.lock", type=Path)
    parser.add_argument("--service", action="append", choices=SERVICES, help="in this order (default: pypi, osv)")
    parser.add_argument("--osv-url", help="the OSV API's query URL, for a mirror (default: pip-audit's)")
    args = parser.parse_args()
    lock = args.lock
    blocks = locked_blocks(lock.read_text())
    if PROBE not in blocks:
        print(f"dependency audit: {PROBE} is not pinned in {lock}; is it a pip-compile lock file?")
        return 1
    service, reasons = reachable_service(blocks, args.service or SERVICES, args.osv_url)
    if service is None:
        print(
            f"dependency audit NOT RUN: no vulnerability database can be reached from this machine; the "
            f"{len(blocks)} packages of {lock} are unaudited (this does not fail the build)."
        )
        for reason in reasons:
            print(f"  {reason}")
        return 0
    report, why = pip_audit(lock, service, args.osv_url)
    if report is None:
        print(f"dependency audit NOT RUN: the {service} service answered for {PROBE}, then not: {why}")
        return 0
    audited = [dependency for dependency in report["dependencies"] if "skip_reason" not in dependency]
    skipped = [dependency for dependency in report["dependencies"] if "skip_reason" in dependency]
    vulnerable = [dependency for dependency in audited if dependency["vulns"]]
    print(f"dependency audit ({service}): {len(audited)} packages of {lock} audited, {len(vulnerable)} vulnerable")
    for dependency in skipped:
        print(f"  not audited: {dependency['name']}: {dependency['skip_reason']}")
    for dependency in vulnerable:
        for vulnerability in dependency["vulns"]:
            fixed = ", ".join(vulnerability["fix_versions"]) or "no fixed version yet"
            print(
                f"  VULNERABLE {dependency['name']}=={dependency['version']}: {vulnerability['id']} (fixed in {fixed})"
            )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
