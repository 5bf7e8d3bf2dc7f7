"""Bulk import of members and purchases from CSV, for a merchant moving from an old system (SPEC §1).

What an import guarantees:
- Streaming: the file is read row by row and merged in chunks of `chunk_rows`; while one chunk is merged the next
  ones are checked by CHECK_PROCESSES forked processes (or one thread), at most one chunk ahead per process, and
  merged in file order, so memory holds a few chunks, never the file. The checks are the same code either way.
- Phones: a phone whose E.164 form is a member's stored phone (looked up once per chunk) is taken as that form;
  any other is parsed by libphonenumber, with the same reasons as always. On PostgreSQL even the keys seen
  so far (to catch duplicates inside the file) live in a temporary table.
- Erasures honoured: a row carrying the external id or phone of a member erased on her request (ErasedIdentity,
  keyed hashes) never creates a member: import_members rejects it, import_purchases --create-members rejects the
  rows of an erased external id and does not give an erased phone to a member it creates. Each chunk is checked
  with one join against the hashes, under every configured key.
- Nothing silently dropped: every data row counts once, as imported, skipped (already imported) or rejected, and
  every rejected row is written to the rejects file with its line number, the reason and its original values.
- Idempotent: members are keyed by external_id, purchases by (source, order_no). A second run of the same file
  imports nothing and writes the same rejects. Each chunk commits on its own (on PostgreSQL a chunk's purchases
  wait in a temporary table and are inserted up to a million at once, in index order; on an error, those waiting
  are inserted before it is raised), so a run that died half-way is finished by running it again.
- PostgreSQL: rows are checked in Python while streaming, COPYed into a temporary staging table and merged with
  set-based SQL (INSERT ... SELECT ... ON CONFLICT DO NOTHING) once per chunk. Other databases (the SQLite demo):
  the same checks in the same order through the ORM, with the same results.
- Points: historical purchases are inserted without points (points_awarded 0, imported True); they count for RFM
  and reports. With `award_points`, each one goes through the purchase recorder the points app registers
  (points.services.record_purchase, the one write path for points), one transaction per order.

The package, one module per role: `rows` reads and checks the rows (the CSV source, the rejects file, the checks,
the erasure check), `postgres` merges them with COPY and set-based SQL, `portable` through the ORM, and `awards`
records them with points; this module runs an import and picks the merge.
"""

import contextlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connection
from django.utils.translation import gettext as _

from loyalty.registry import ExtensionPoint
from members.models import Purchase

from .portable import _OrmMembers, _OrmPurchases
from .postgres import _PostgresMembers, _PostgresPurchases
from .rows import (
    AWARD_CHUNK_ROWS,
    CHUNK_ROWS,
    MEMBER_COLUMNS,
    PURCHASE_COLUMNS,
    ChunkOutcome,
    ImportRefused,
    _checked_chunks,
    _Checks,
    _CsvSource,
    _ErasureCheck,
    _RejectsFile,
    _start_check_worker,
)

__all__ = [
    "AWARD_CHUNK_ROWS",
    "CHUNK_ROWS",
    "MEMBER_COLUMNS",
    "PURCHASE_COLUMNS",
    "ImportRefused",
    "ImportReport",
    "ProgressBar",
    "default_rejects_path",
    "import_members",
    "import_purchases",
    "register_purchase_recorder",
]

# Processes checking rows while this one reads the file and merges (the machine's 2 cores); 0: one thread instead.
# Each holds its own phone cache (up to PHONE_CACHE phones, ~130 MB) and two chunks at most.
CHECK_PROCESSES = 2

_registry = ExtensionPoint("import_services", "services of higher apps an import calls, by name", keyed=True)


def register_purchase_recorder(record_purchase):
    """The points app registers `points.services.record_purchase` here in its AppConfig.ready() (members cannot
    import points: apps depend one way). `award_points` imports call it once per order."""
    _registry["record_purchase"] = record_purchase


@dataclass
class ImportReport:
    rejects_path: str
    read: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    members_created: int = 0
    seconds: float = 0.0

    def summary(self, noun):
        created = f", {self.members_created:,} members created" if self.members_created else ""
        rejects = f" (see {self.rejects_path})" if self.rejected else ""
        return (
            f"Read {self.read:,} rows: {self.imported:,} {noun} imported{created}, {self.skipped:,} skipped "
            f"(already imported), {self.rejected:,} rejected{rejects}; {self.seconds:.1f} s."
        )


class ProgressBar:
    """`[###############...............]  50%  52,000 rows`, redrawn in place after every chunk."""

    width = 30

    def __init__(self, write):
        self.write = write

    def update(self, rows, fraction):
        filled = int(self.width * min(max(fraction, 0.0), 1.0))
        self.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}  {rows:,} rows")

    def finish(self):
        self.write("\n")


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def import_members(
    path,
    *,
    rejects_path=None,
    encoding="utf-8-sig",
    chunk_rows=CHUNK_ROWS,
    progress=None,
    check_processes=None,
):
    """Import members (channel "import") keyed by external_id; see MEMBER_COLUMNS and the command's help.

    A member whose external_id exists is skipped (left as it is); a row whose phone belongs to another member,
    or to an earlier row of the file, is rejected; so is a row with the external id or phone of a member erased on
    her request. Raises ImportRefused for a file that cannot be read, or while erased identities were hashed under
    a key no longer configured.
    """
    checks = _Checks(_ErasureCheck())
    merger = _PostgresMembers() if _on_postgres() else _OrmMembers()
    return _run(
        path,
        rejects_path=rejects_path,
        encoding=encoding,
        chunk_rows=chunk_rows,
        progress=progress,
        columns=MEMBER_COLUMNS,
        required=("external_id",),
        checks=checks,
        parse_name="member",
        phone_column="phone",
        merger=merger,
        check_processes=check_processes,
    )


def import_purchases(
    path,
    *,
    source="import",
    create_members=False,
    award_points=False,
    rejects_path=None,
    encoding="utf-8-sig",
    chunk_rows=None,
    progress=None,
    check_processes=None,
):
    """Import purchases keyed by (source, order_no); see PURCHASE_COLUMNS and the command's help.

    The member is found by member_external_id when the row has one, else by member_phone (a merged duplicate's
    lead to her survivor). An unknown member is rejected, or with `create_members` created by member_external_id,
    unless that external id was erased on the member's request (the row is rejected); a created member does not
    take an erased phone. Raises
    ImportRefused for a file that cannot be read, a bad source, award_points without a registered recorder, or
    (with create_members) erased identities hashed under a key no longer configured.
    """
    if not source or len(source) > Purchase._meta.get_field("source").max_length:
        raise ImportRefused(_("The source must be 1 to 40 characters."))
    recorder = _registry.get("record_purchase") if award_points else None
    if award_points and recorder is None:
        raise ImportRefused(_("No purchase recorder is registered (the points app registers one when installed)."))
    chunk_rows = chunk_rows or (AWARD_CHUNK_ROWS if award_points else CHUNK_ROWS)
    erasure = _ErasureCheck(enabled=create_members)  # without create_members an erased member is unknown
    checks = _Checks(erasure)
    options = {"source": source, "create_members": create_members, "recorder": recorder, "erasure": erasure}
    merger = _PostgresPurchases(**options) if _on_postgres() else _OrmPurchases(**options)
    return _run(
        path,
        rejects_path=rejects_path,
        encoding=encoding,
        chunk_rows=chunk_rows,
        progress=progress,
        columns=PURCHASE_COLUMNS,
        required=("order_no", "occurred_at", "amount"),
        checks=checks,
        parse_name="purchase",
        phone_column="member_phone",
        merger=merger,
        check_processes=check_processes,
        one_of=("member_external_id", "member_phone"),
    )


def default_rejects_path(path):
    return str(Path(path).with_suffix(".rejects.csv"))


def _on_postgres():
    return connection.vendor == "postgresql"


# ---------------------------------------------------------------------------------------------------------------
# The run: chunks checked in processes (or a thread), merged one by one in file order, counted in the report


def _checker(checks, processes):
    """A pool of `processes` processes checking chunks (forked: each starts with this process's checks, stores and
    settings, and never touches the database), or one thread when processes is 0 or this process may not have
    children (a daemonic process, e.g. a Celery prefork worker's child, if an import is ever run from a task)."""
    if not processes or multiprocessing.current_process().daemon:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-check")
    return ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_check_worker,
        initargs=(checks,),
    )


def _run(
    path,
    *,
    rejects_path,
    encoding,
    chunk_rows,
    progress,
    columns,
    required,
    checks,
    parse_name,
    phone_column,
    merger,
    check_processes,
    one_of=(),
):
    started = time.monotonic()
    rejects_path = rejects_path or default_rejects_path(path)
    if os.path.abspath(rejects_path) == os.path.abspath(path):
        raise ImportRefused(_("The rejects file must not be the input file."))
    report = ImportReport(rejects_path=rejects_path)
    check_processes = CHECK_PROCESSES if check_processes is None else check_processes
    with (
        _CsvSource(path, encoding, columns=columns, required=required, one_of=one_of) as source,
        _RejectsFile(rejects_path, source.header, encoding) as rejects,
        _checker(checks, check_processes) as checker,
    ):
        merger.start()
        try:
            try:
                checked = _checked_chunks(
                    source,
                    checks,
                    parse_name,
                    checker,
                    chunk_rows=chunk_rows,
                    phone_column=phone_column,
                    ahead=check_processes + 1,  # one waiting for each process, and one being checked
                    encode=merger.encode,
                )
                for chunk, good, found, fraction in checked:
                    outcome = merger.merge(good) if good else ChunkOutcome()
                    found += outcome.rejects
                    rejects.write(sorted(found), dict(chunk))
                    report.read += len(chunk)
                    report.imported += outcome.imported
                    report.skipped += outcome.skipped
                    report.rejected += len(found)
                    report.members_created += outcome.members_created
                    if progress:
                        progress.update(report.read, fraction)
            except Exception:
                # The chunks merged before stay merged (a re-run skips them), with the rows a merger held back for
                # one insert; a failing database fails this too, and the first error is the one to see.
                with contextlib.suppress(DatabaseError):
                    merger.flush()
                raise
            outcome = merger.flush()
            report.imported += outcome.imported
            report.skipped += outcome.skipped
        finally:
            merger.finish()
    if progress:
        progress.finish()
    report.seconds = time.monotonic() - started
    return report
