"""Bulk import of members and purchases from CSV, for a merchant moving from an old system (SPEC §1).

What an import guarantees:
- Streaming: the file is read row by row and merged in chunks of `chunk_rows`; while one chunk is merged the next
  is read and checked in a thread, so memory holds two chunks, never the file. On PostgreSQL even the keys seen
  so far (to catch duplicates inside the file) live in a temporary table.
- Erasures honoured: a row carrying the external id or phone of a member erased on her request (ErasedIdentity,
  keyed hashes) never creates a member: import_members rejects it, import_purchases --create-members rejects the
  rows of an erased external id and does not give an erased phone to a member it creates. Each chunk is checked
  with one join against the hashes, under every configured key.
- Nothing silently dropped: every data row counts once, as imported, skipped (already imported) or rejected, and
  every rejected row is written to the rejects file with its line number, the reason and its original values.
- Idempotent: members are keyed by external_id, purchases by (source, order_no). A second run of the same file
  imports nothing and writes the same rejects. Each chunk commits on its own, so a run that died half-way is
  finished by running it again.
- PostgreSQL: rows are checked in Python while streaming, COPYed into a temporary staging table and merged with
  set-based SQL (INSERT ... SELECT ... ON CONFLICT DO NOTHING) once per chunk. Other databases (the SQLite demo):
  the same checks in the same order through the ORM, with the same results.
- Points: historical purchases are inserted without points (points_awarded 0, imported True); they count for RFM
  and reports. With `award_points`, each one goes through the purchase recorder the points app registers
  (points.services.record_purchase, the one write path for points), one transaction per order.
"""

import codecs
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from loyalty.clock import business_tz
from loyalty.errors import DomainError
from loyalty.registry import ExtensionPoint
from members.models import (
    Channel,
    ErasedIdentity,
    ErasedIdentityKind,
    Gender,
    Member,
    MemberStatus,
    Purchase,
    PurchaseChannel,
    Store,
)
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from members.services.membership import erasure_keys, generate_member_no, generate_referral_code, identity_digest

CHUNK_ROWS = 50_000
AWARD_CHUNK_ROWS = 1_000  # with award_points each order is its own transaction: show progress more often
LOOKUP_BATCH = 500  # keys per IN (...) on the ORM path: SQLite allows 999 parameters per statement
CODE_ATTEMPTS = 5  # draws of a card number / referral code before a row is given up
ACTOR = "import"
EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)  # as the purchase API: no order is older
EARLIEST_BIRTHDAY = date(1900, 1, 1)
MAX_AMOUNT = Decimal("999999999999.99")  # numeric(14, 2)
CENT = Decimal("0.01")
AMOUNT_PATTERN = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
BOOLEANS = {"": False, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
GENDERS = frozenset(Gender.values)  # an enum's .values is rebuilt on every access: not once per row
PURCHASE_CHANNELS = frozenset(PurchaseChannel.values)
IGNORED_COLUMNS = ("line", "reason")  # a corrected rejects file can be imported as it is

MEMBER_COLUMNS = ("external_id", "phone", "name", "gender", "birthday", "email", "store", "joined_at",
                  "consent_sms", "consent_wechat", "consent_email")
PURCHASE_COLUMNS = ("member_external_id", "member_phone", "order_no", "occurred_at", "amount", "store", "channel")

PHONE_TAKEN = "phone already used by another member"
UNKNOWN_MEMBER = "unknown member"
NO_UNIQUE_CODE = "no unique card number or referral code could be drawn"
ERASED = "erased on the member's request"

_registry = ExtensionPoint("import_services", "services of higher apps an import calls, by name", keyed=True)


def register_purchase_recorder(record_purchase):
    """The points app registers `points.services.record_purchase` here in its AppConfig.ready() (members cannot
    import points: apps depend one way). `award_points` imports call it once per order."""
    _registry["record_purchase"] = record_purchase


class ImportRefused(Exception):
    """The import cannot start or go on: the file (no header, a column missing or unknown, not decodable in its
    encoding) or an option is wrong. Chunks merged before stay merged; a re-run skips them."""


class Rejected(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


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
        return (f"Read {self.read:,} rows: {self.imported:,} {noun} imported{created}, {self.skipped:,} skipped "
                f"(already imported), {self.rejected:,} rejected{rejects}; {self.seconds:.1f} s.")


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


class MemberRow(NamedTuple):  # also the column order of the members staging table
    line: int
    external_id: str
    phone: str | None
    name: str
    gender: str
    birthday: date | None
    email: str
    home_store_id: int | None
    joined_at: datetime
    consent_sms: bool
    consent_wechat: bool
    consent_email: bool
    member_no: str
    referral_code: str
    external_id_digests: list  # ErasedIdentity digests of the external id, one per configured key
    phone_digests: list


class PurchaseRow(NamedTuple):  # also the column order of the purchases staging table
    line: int
    member_external_id: str | None
    member_phone: str | None
    order_no: str
    occurred_at: datetime
    amount: Decimal
    store_id: int | None
    channel: str
    member_external_id_digests: list  # with create_members only; else empty


class AwardRow(NamedTuple):
    line: int
    member_id: int
    order_no: str
    occurred_at: datetime
    amount: Decimal
    store_id: int | None
    channel: str


@dataclass
class ChunkOutcome:
    imported: int = 0
    skipped: int = 0
    rejects: list = field(default_factory=list)  # (line, reason)
    members_created: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def import_members(path, *, rejects_path=None, encoding="utf-8-sig", chunk_rows=CHUNK_ROWS, progress=None):
    """Import members (channel "import") keyed by external_id; see MEMBER_COLUMNS and the command's help.

    A member whose external_id exists is skipped (left as it is); a row whose phone belongs to another member,
    or to an earlier row of the file, is rejected; so is a row with the external id or phone of a member erased on
    her request. Raises ImportRefused for a file that cannot be read, or while erased identities were hashed under
    a key no longer configured.
    """
    checks = _Checks(_ErasureCheck())
    merger = _PostgresMembers() if _on_postgres() else _OrmMembers()
    return _run(path, rejects_path=rejects_path, encoding=encoding, chunk_rows=chunk_rows, progress=progress,
                columns=MEMBER_COLUMNS, required=("external_id",), parse=checks.member, merger=merger)


def import_purchases(path, *, source="import", create_members=False, award_points=False, rejects_path=None,
                     encoding="utf-8-sig", chunk_rows=None, progress=None):
    """Import purchases keyed by (source, order_no); see PURCHASE_COLUMNS and the command's help.

    The member is found by member_external_id when the row has one, else by member_phone. An unknown member is
    rejected, or with `create_members` created by member_external_id, unless that external id was erased on the
    member's request (the row is rejected); a created member does not take an erased phone. Raises
    ImportRefused for a file that cannot be read, a bad source, award_points without a registered recorder, or
    (with create_members) erased identities hashed under a key no longer configured.
    """
    if not source or len(source) > Purchase._meta.get_field("source").max_length:
        raise ImportRefused("The source must be 1 to 40 characters.")
    recorder = _registry.get("record_purchase") if award_points else None
    if award_points and recorder is None:
        raise ImportRefused("No purchase recorder is registered (the points app registers one when installed).")
    chunk_rows = chunk_rows or (AWARD_CHUNK_ROWS if award_points else CHUNK_ROWS)
    erasure = _ErasureCheck(enabled=create_members)  # without create_members an erased member is unknown
    checks = _Checks(erasure)
    options = {"source": source, "create_members": create_members, "recorder": recorder, "erasure": erasure}
    merger = _PostgresPurchases(**options) if _on_postgres() else _OrmPurchases(**options)
    return _run(path, rejects_path=rejects_path, encoding=encoding, chunk_rows=chunk_rows, progress=progress,
                columns=PURCHASE_COLUMNS, required=("order_no", "occurred_at", "amount"), parse=checks.purchase,
                merger=merger, one_of=("member_external_id", "member_phone"))


def default_rejects_path(path):
    return str(Path(path).with_suffix(".rejects.csv"))


def _on_postgres():
    return connection.vendor == "postgresql"


# ---------------------------------------------------------------------------------------------------------------
# Reading, checking, reporting


def _run(path, *, rejects_path, encoding, chunk_rows, progress, columns, required, parse, merger, one_of=()):
    started = time.monotonic()
    rejects_path = rejects_path or default_rejects_path(path)
    if os.path.abspath(rejects_path) == os.path.abspath(path):
        raise ImportRefused("The rejects file must not be the input file.")
    report = ImportReport(rejects_path=rejects_path)
    with _CsvSource(path, encoding, columns=columns, required=required, one_of=one_of) as source, \
            _RejectsFile(rejects_path, source.header, encoding) as rejects, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-check") as checker:
        merger.start()
        try:
            for chunk, good, found, fraction in _checked_chunks(source, parse, chunk_rows, checker):
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
        finally:
            merger.finish()
    if progress:
        progress.finish()
    report.seconds = time.monotonic() - started
    return report


def _checked_chunks(source, parse, chunk_rows, checker):
    """Yield (chunk, good rows, rejects, fraction of the file read). The next chunk is read and checked in a
    thread while the caller merges this one (the merge mostly waits on the database, which releases the GIL),
    so at most two chunks are in memory."""
    chunks = source.chunks(chunk_rows)

    def check_next():
        chunk = next(chunks, None)
        if chunk is None:
            return None
        good, found = [], []
        for line, raw in chunk:
            try:
                good.append(parse(line, source.values(raw)))
            except Rejected as rejected:
                found.append((line, rejected.reason))
        return chunk, good, found, source.fraction()

    pending = checker.submit(check_next)
    while (checked := pending.result()) is not None:
        pending = checker.submit(check_next)
        yield checked


class _CsvSource:
    """A CSV file read one record at a time; a record's line is the physical line it starts on."""

    def __init__(self, path, encoding, *, columns, required, one_of):
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ImportRefused(f"Unknown encoding {encoding!r}.") from None
        self.path, self.encoding = path, encoding
        self.columns, self.required, self.one_of = columns, required, one_of

    def __enter__(self):
        try:
            self.binary = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        except OSError as error:
            raise ImportRefused(f"Cannot open {self.path}: {error.strerror}.") from None
        self.size = os.fstat(self.binary.fileno()).st_size or 1
        self.text = io.TextIOWrapper(self.binary, encoding=self.encoding, newline="")
        self.reader = csv.reader(self.text)
        try:
            self.header = next(self._guarded(), None)
            if self.header is None:
                raise ImportRefused("The file is empty: it needs a header row.")
            self.positions = self._positions(self.header)
        except ImportRefused:
            self.text.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.text.close()

    def _positions(self, header):
        names = [name.strip().lower() for name in header]
        unknown = sorted(set(names) - set(self.columns) - set(IGNORED_COLUMNS))
        if unknown:
            raise ImportRefused(f"Unknown column(s): {', '.join(unknown)}. Columns: {', '.join(self.columns)}.")
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ImportRefused(f"Column(s) given twice: {', '.join(doubled)}.")
        missing = [name for name in self.required if name not in names]
        if missing:
            raise ImportRefused(f"Missing column(s): {', '.join(missing)}.")
        if self.one_of and not set(self.one_of) & set(names):
            raise ImportRefused(f"The file needs a {' or a '.join(self.one_of)} column.")
        return [(name, index) for index, name in enumerate(names) if name in self.columns]

    def _guarded(self):
        try:
            yield from self.reader
        except UnicodeDecodeError:
            raise ImportRefused(f"Line {self.reader.line_num + 1} is not {self.encoding} text; "
                                "pass the file's encoding (e.g. --encoding gb18030).") from None
        except csv.Error as error:
            raise ImportRefused(f"Line {self.reader.line_num}: {error}.") from None

    def chunks(self, size):
        chunk, last = [], self.reader.line_num
        for raw in self._guarded():
            line, last = last + 1, self.reader.line_num
            if not raw:  # a blank line holds no row
                continue
            chunk.append((line, raw))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def values(self, raw):
        if len(raw) != len(self.header):
            raise Rejected(f"{len(raw)} columns, expected {len(self.header)}")
        return {name: raw[index].strip() for name, index in self.positions}

    def fraction(self):
        return self.binary.tell() / self.size


class _RejectsFile:
    """`line,reason,<the input's columns...>`, one row per rejected row, in line order."""

    def __init__(self, path, header, encoding):
        self.path, self.header, self.encoding = path, header, encoding

    def __enter__(self):
        try:
            self.file = open(self.path, "w", encoding=self.encoding, newline="")  # noqa: SIM115
        except OSError as error:
            raise ImportRefused(f"Cannot write the rejects file {self.path}: {error.strerror}.") from None
        self.writer = csv.writer(self.file)
        self.writer.writerow(["line", "reason", *self.header])
        return self

    def __exit__(self, *exc_info):
        self.file.close()

    def write(self, rejects, raw_by_line):
        self.writer.writerows([line, reason, *raw_by_line[line]] for line, reason in rejects)
        self.file.flush()


class _ErasureCheck:
    """The digests a row's identifiers would have in ErasedIdentity, under every configured key (SECRET_KEY and
    its fallbacks). Refuses the import while erased identities were hashed under a key no longer configured:
    they could not match, and those members would come back."""

    def __init__(self, *, enabled=True):
        self.keys = []
        if not enabled:
            return
        keys = erasure_keys()
        unmatched = ErasedIdentity.objects.exclude(key_id__in=[key_id for key_id, _key in keys]).count()
        if unmatched:
            raise ImportRefused(
                f"{unmatched:,} erased identities were hashed under a key that is not configured (SECRET_KEY was "
                "changed?): put the former SECRET_KEY in SECRET_KEY_FALLBACKS, so that members erased on their "
                "request are not imported again.")
        self.keys = [key for _key_id, key in keys]

    def digests(self, kind, value):
        return [identity_digest(key, kind, value) for key in self.keys] if value else []


class _Checks:
    """Turn a row's text into typed values, or raise Rejected with the first reason found."""

    def __init__(self, erasure):
        self.erasure = erasure
        self.stores = dict(Store.objects.values_list("code", "id"))
        self.tz = business_tz()
        self.now = timezone.now()
        self.latest = self.now + timedelta(days=1)  # as the purchase API: clocks drift, orders do not
        self.today = self.now.astimezone(self.tz).date()
        self.normalise_phone = lru_cache(maxsize=100_000)(normalise_phone)

    def member(self, line, values):
        external_id = _text(values, "external_id", Member, required=True)
        phone = self._phone(values.get("phone", ""), "phone")
        name = _text(values, "name", Member)
        gender = values.get("gender", "").lower() or Gender.UNKNOWN
        if gender not in GENDERS:
            raise Rejected("invalid gender")
        birthday = self._birthday(values.get("birthday", ""))
        email = _text(values, "email", Member)
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise Rejected("invalid email") from None
        store_id = self._store(values.get("store", ""))
        joined_at = self.now
        if values.get("joined_at"):
            joined_at = self._instant(values["joined_at"], "joined_at")
            if joined_at > self.latest:
                raise Rejected("joined_at in the future")
        consents = [self._boolean(values.get(name, ""), name) for name in
                    ("consent_sms", "consent_wechat", "consent_email")]
        return MemberRow(line, external_id, phone, name, gender, birthday, email, store_id, joined_at, *consents,
                         generate_member_no(), generate_referral_code(),
                         self.erasure.digests(ErasedIdentityKind.EXTERNAL_ID, external_id),
                         self.erasure.digests(ErasedIdentityKind.PHONE, phone))

    def purchase(self, line, values):
        external_id = _text(values, "member_external_id", Member, column="external_id") or None
        phone = self._phone(values.get("member_phone", ""), "member_phone")
        if external_id is None and phone is None:
            raise Rejected("missing member_external_id or member_phone")
        order_no = _text(values, "order_no", Purchase, required=True)
        occurred_at = self._instant(_required(values, "occurred_at"), "occurred_at")
        if not EARLIEST_ORDER <= occurred_at <= self.latest:
            raise Rejected("occurred_at out of range (2000-01-01 to now)")
        amount = self._amount(_required(values, "amount"))
        store_id = self._store(values.get("store", ""))
        channel = values.get("channel", "").lower() or PurchaseChannel.OFFLINE
        if channel not in PURCHASE_CHANNELS:
            raise Rejected("invalid channel")
        return PurchaseRow(line, external_id, phone, order_no, occurred_at, amount, store_id, channel,
                           self.erasure.digests(ErasedIdentityKind.EXTERNAL_ID, external_id))

    def _phone(self, text, name):
        if not text:
            return None
        try:
            return self.normalise_phone(text)
        except InvalidPhoneNumber:
            raise Rejected(f"invalid {name}") from None

    def _store(self, code):
        if not code:
            return None
        try:
            return self.stores[code]
        except KeyError:
            raise Rejected("unknown store") from None

    def _instant(self, text, name):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise Rejected(f"invalid {name}") from None
        # zoneinfo resolves a naive wall-clock time by replace(); a date alone is the start of that business day
        return moment if moment.tzinfo else moment.replace(tzinfo=self.tz)

    def _birthday(self, text):
        if not text:
            return None
        try:
            if not DATE_PATTERN.fullmatch(text):
                raise ValueError
            birthday = date.fromisoformat(text)
        except ValueError:
            raise Rejected("invalid birthday") from None
        if not EARLIEST_BIRTHDAY <= birthday <= self.today:
            raise Rejected("invalid birthday")
        return birthday

    @staticmethod
    def _amount(text):
        if not AMOUNT_PATTERN.fullmatch(text):
            raise Rejected("invalid amount")
        amount = Decimal(text)
        if amount <= 0:
            raise Rejected("amount must be greater than 0")
        if amount != amount.quantize(CENT):
            raise Rejected("amount has more than 2 decimals")
        if amount > MAX_AMOUNT:
            raise Rejected("amount too large")
        return amount.quantize(CENT)

    @staticmethod
    def _boolean(text, name):
        try:
            return BOOLEANS[text.lower()]
        except KeyError:
            raise Rejected(f"invalid {name}") from None


def _required(values, name):
    if not values.get(name):
        raise Rejected(f"missing {name}")
    return values[name]


def _text(values, name, model, *, column=None, required=False):
    text = _required(values, name) if required else values.get(name, "")
    max_length = model._meta.get_field(column or name).max_length
    if len(text) > max_length:
        raise Rejected(f"{name} longer than {max_length} characters")
    return text


def _new_member(external_id, *, line, phone, store_id, joined_at, erasure):
    """A member created from her first row in the file (create_members): its phone, its store as her home store,
    its time as joined_at. The first row, not the earliest order: so the result does not depend on chunking."""
    return MemberRow(line, external_id, phone, "", Gender.UNKNOWN, None, "", store_id, joined_at, False, False, False,
                     generate_member_no(), generate_referral_code(),
                     erasure.digests(ErasedIdentityKind.EXTERNAL_ID, external_id),
                     erasure.digests(ErasedIdentityKind.PHONE, phone))


def _fingerprint(row, source):
    body = [source, row.order_no, row.member_id, str(row.amount), row.occurred_at.isoformat(), row.store_id,
            row.channel]
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


def _award_points(rows, *, source, recorder):
    """Record each order with its points through the points app's service (its own transaction per order)."""
    outcome, recorded = ChunkOutcome(), []
    stores = Store.objects.in_bulk({row.store_id for row in rows if row.store_id})
    for row in rows:
        try:
            result = recorder(actor=ACTOR, source=source, member_id=row.member_id, order_no=row.order_no,
                              amount=row.amount, fingerprint=_fingerprint(row, source),
                              store=stores.get(row.store_id), channel=row.channel, occurred_at=row.occurred_at)
        except DomainError as error:
            outcome.rejects.append((row.line, f"{error.code}: {error.detail}"))
            continue
        except IntegrityError:  # recorded meanwhile by another import, whose idempotency record is gone
            if not Purchase.objects.filter(source=source, order_no=row.order_no).exists():
                raise
            outcome.skipped += 1
            continue
        if result.replayed:
            outcome.skipped += 1
        else:
            outcome.imported += 1
            recorded.append(row.order_no)
    for start in range(0, len(recorded), LOOKUP_BATCH):
        Purchase.objects.filter(source=source, order_no__in=recorded[start:start + LOOKUP_BATCH]).update(
            imported=True)
    return outcome


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL: COPY into temporary staging tables, merge set-based.
#
# Lookups into the tables that grow (members, purchases, the keys seen in the run) are correlated scalar
# subqueries, `(SELECT true FROM t WHERE t.key = s.key)`, not joins: PostgreSQL runs them as one index probe per
# staged row, so a chunk costs the same however large the tables are (a join would hash or scan the whole table
# once per chunk).

MEMBER_TABLE = Member._meta.db_table
PURCHASE_TABLE = Purchase._meta.db_table
ERASED_TABLE = ErasedIdentity._meta.db_table
MEMBER_STAGE = "import_member_stage"
PURCHASE_STAGE = "import_purchase_stage"
CLAIMED_KEYS = ("external_id", "phone", "order_no")  # each has a table of the keys seen so far in the run
SEEN_TABLES = [f"import_seen_{key}" for key in CLAIMED_KEYS]
TEMP_BUFFERS = "256MB"  # the keys seen in a run of a few million rows stay in memory (default 8MB)

CREATE_STAGES = [
    *(f"CREATE TEMP TABLE IF NOT EXISTS {table} (key text PRIMARY KEY, line bigint NOT NULL)"
      for table in SEEN_TABLES),
    f"""CREATE TEMP TABLE IF NOT EXISTS {MEMBER_STAGE} (
        line bigint NOT NULL, external_id text NOT NULL, phone text, name text NOT NULL, gender text NOT NULL,
        birthday date, email text NOT NULL, home_store_id bigint, joined_at timestamptz NOT NULL,
        consent_sms boolean NOT NULL, consent_wechat boolean NOT NULL, consent_email boolean NOT NULL,
        member_no text NOT NULL, referral_code text NOT NULL, external_id_digests text[] NOT NULL,
        phone_digests text[] NOT NULL)""",
    f"""CREATE TEMP TABLE IF NOT EXISTS {PURCHASE_STAGE} (
        line bigint NOT NULL, member_external_id text, member_phone text, order_no text NOT NULL,
        occurred_at timestamptz NOT NULL, amount numeric(14, 2) NOT NULL, store_id bigint, channel text NOT NULL,
        member_external_id_digests text[] NOT NULL, member_id bigint)""",
]
INSERT_MEMBERS = f"""
    INSERT INTO {MEMBER_TABLE} (member_no, referral_code, phone, external_id, name, gender, birthday, email,
        home_store_id, channel, consent_sms, consent_wechat, consent_email, status, joined_at, updated_at)
    SELECT member_no, referral_code, phone, external_id, name, gender, birthday, email,
        home_store_id, %(channel)s, consent_sms, consent_wechat, consent_email, %(status)s, joined_at, %(now)s
    FROM {MEMBER_STAGE} ORDER BY line
    ON CONFLICT DO NOTHING"""  # noqa: S608 - table names are constants; values are bound
# Every staged member now in the table: ours, or inserted meanwhile by someone else; what stays failed.
UNSTAGE_PRESENT_MEMBERS = f"""
    DELETE FROM {MEMBER_STAGE} s
    WHERE (SELECT true FROM {MEMBER_TABLE} m WHERE m.external_id = s.external_id)"""  # noqa: S608
# The erased identities are checked by one join per chunk (a row matches when any of its digests, under any
# configured key, is in the table; the digest's unique index serves the probes). A row that matches twice is
# deleted, and returned, once.
UNSTAGE_ERASED_MEMBERS = f"""
    DELETE FROM {MEMBER_STAGE} s USING {ERASED_TABLE} e
    WHERE e.digest = ANY(s.external_id_digests || s.phone_digests) RETURNING s.line"""  # noqa: S608
UNSTAGE_ERASED_MEMBERS_PURCHASES = f"""
    DELETE FROM {PURCHASE_STAGE} s USING {ERASED_TABLE} e
    WHERE s.member_id IS NULL AND e.digest = ANY(s.member_external_id_digests) RETURNING s.line"""  # noqa: S608
# Members created from purchases never take an erased phone (as they never take a taken one).
DROP_ERASED_PHONES = f"""
    UPDATE {MEMBER_STAGE} s SET phone = NULL, phone_digests = '{{}}'
    FROM {ERASED_TABLE} e WHERE e.digest = ANY(s.phone_digests)"""  # noqa: S608
UNSTAGE_TAKEN_PHONES = f"""
    DELETE FROM {MEMBER_STAGE} s
    WHERE (SELECT true FROM {MEMBER_TABLE} m WHERE m.phone = s.phone) RETURNING s.line"""  # noqa: S608
# Members created from purchases keep their phone only when no member and no earlier new member has it.
DROP_TAKEN_PHONES = f"""
    UPDATE {MEMBER_STAGE} s SET phone = NULL
    FROM (SELECT line, row_number() OVER (PARTITION BY phone ORDER BY line) AS nth
          FROM {MEMBER_STAGE} WHERE phone IS NOT NULL) r
    WHERE r.line = s.line
      AND (r.nth > 1 OR (SELECT true FROM {MEMBER_TABLE} m WHERE m.phone = s.phone))"""  # noqa: S608
UNSTAGE_IMPORTED_PURCHASES = f"""
    DELETE FROM {PURCHASE_STAGE} s
    WHERE (SELECT true FROM {PURCHASE_TABLE} p WHERE p.source = %(source)s AND p.order_no = s.order_no)"""  # noqa: S608
RESOLVE_BY_EXTERNAL_ID = f"""
    UPDATE {PURCHASE_STAGE} s
    SET member_id = (SELECT m.id FROM {MEMBER_TABLE} m WHERE m.external_id = s.member_external_id)
    WHERE s.member_id IS NULL AND s.member_external_id IS NOT NULL"""  # noqa: S608
RESOLVE_BY_PHONE = f"""
    UPDATE {PURCHASE_STAGE} s
    SET member_id = (SELECT m.id FROM {MEMBER_TABLE} m WHERE m.phone = s.member_phone)
    WHERE s.member_id IS NULL AND s.member_external_id IS NULL"""  # noqa: S608
MEMBERS_TO_CREATE = f"""
    SELECT DISTINCT ON (member_external_id) member_external_id, line, member_phone, store_id, occurred_at
    FROM {PURCHASE_STAGE} WHERE member_id IS NULL AND member_external_id IS NOT NULL
    ORDER BY member_external_id, line"""  # noqa: S608
UNSTAGE_UNKNOWN_MEMBERS = f"DELETE FROM {PURCHASE_STAGE} WHERE member_id IS NULL RETURNING line"  # noqa: S608
INSERT_PURCHASES = f"""
    INSERT INTO {PURCHASE_TABLE} (member_id, store_id, source, order_no, channel, occurred_at, amount,
        refunded_amount, currency, points_awarded, points_reversed, points_used, points_used_returned, imported,
        created_at)
    SELECT member_id, store_id, %(source)s, order_no, channel, occurred_at, amount,
        0, %(currency)s, 0, 0, 0, 0, true, %(now)s
    FROM {PURCHASE_STAGE} ORDER BY line
    ON CONFLICT (source, order_no) DO NOTHING"""  # noqa: S608
STAGED_FOR_AWARD = f"""
    SELECT line, member_id, order_no, occurred_at, amount, store_id, channel
    FROM {PURCHASE_STAGE} ORDER BY line"""  # noqa: S608


def _pg_stage(cursor, table, columns, rows):
    cursor.execute(f"TRUNCATE {table}")
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _pg_claim(cursor, *, stage, column, reason):
    """The first line with a key claims it for the whole run; later lines with the key, in this chunk or after,
    come back rejected (and leave the staging table)."""
    seen = f"import_seen_{column}"
    cursor.execute(f"""
        DELETE FROM {stage} s USING (
            SELECT d.line, COALESCE((SELECT k.line FROM {seen} k WHERE k.key = d.{column}),
                                    min(d.line) OVER (PARTITION BY d.{column})) AS first
            FROM {stage} d WHERE d.{column} IS NOT NULL
        ) c
        WHERE c.line = s.line AND c.first <> s.line
        RETURNING s.line, c.first""")  # noqa: S608 - names are constants
    rejects = [(line, reason.format(first)) for line, first in cursor.fetchall()]
    cursor.execute(f"INSERT INTO {seen} (key, line) "  # noqa: S608
                   f"SELECT {column}, line FROM {stage} WHERE {column} IS NOT NULL")
    return rejects


def _pg_insert_staged_members(cursor):
    """Insert the staged members; a row whose drawn card number or referral code collided draws again.
    Returns (imported, inserted meanwhile by someone else, [(line, reason) of rows that could not be inserted])."""
    imported = raced = 0
    params = {"channel": Channel.IMPORT, "status": MemberStatus.ACTIVE, "now": timezone.now()}
    for _attempt in range(CODE_ATTEMPTS):
        cursor.execute(INSERT_MEMBERS, params)
        inserted = cursor.rowcount
        cursor.execute(UNSTAGE_PRESENT_MEMBERS)
        imported, raced = imported + inserted, raced + cursor.rowcount - inserted
        cursor.execute(f"SELECT line FROM {MEMBER_STAGE}")  # noqa: S608
        left = [line for (line,) in cursor.fetchall()]
        if not left:
            return imported, raced, []
        cursor.executemany(f"UPDATE {MEMBER_STAGE} SET member_no = %s, referral_code = %s WHERE line = %s",  # noqa: S608
                           [(generate_member_no(), generate_referral_code(), line) for line in left])
    cursor.execute(UNSTAGE_TAKEN_PHONES)
    failed = [(line, PHONE_TAKEN) for (line,) in cursor.fetchall()]
    cursor.execute(f"SELECT line FROM {MEMBER_STAGE}")  # noqa: S608
    return imported, raced, failed + [(line, NO_UNIQUE_CODE) for (line,) in cursor.fetchall()]


class _PostgresMerger:
    def start(self):
        with connection.cursor() as cursor:
            # Only possible before the session's first temporary table; a session that had one keeps its size.
            with contextlib.suppress(DatabaseError), transaction.atomic():
                cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
            for statement in CREATE_STAGES:
                cursor.execute(statement)
            cursor.execute(f"TRUNCATE {', '.join(SEEN_TABLES)}")

    def finish(self):
        # Temporary tables end with the session anyway; a failed run must not hide its error behind this one.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {', '.join(SEEN_TABLES)}, {MEMBER_STAGE}, {PURCHASE_STAGE}")


class _PostgresMembers(_PostgresMerger):
    def merge(self, rows):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            _pg_stage(cursor, MEMBER_STAGE, MemberRow._fields, rows)
            rejects = _pg_claim(cursor, stage=MEMBER_STAGE, column="external_id", reason="duplicate of line {}")
            rejects += _pg_claim(cursor, stage=MEMBER_STAGE, column="phone", reason="phone already used by line {}")
            cursor.execute(UNSTAGE_PRESENT_MEMBERS)
            skipped = cursor.rowcount
            cursor.execute(UNSTAGE_ERASED_MEMBERS)
            rejects += [(line, ERASED) for (line,) in cursor.fetchall()]
            cursor.execute(UNSTAGE_TAKEN_PHONES)
            rejects += [(line, PHONE_TAKEN) for (line,) in cursor.fetchall()]
            imported, raced, failed = _pg_insert_staged_members(cursor)
        return ChunkOutcome(imported=imported, skipped=skipped + raced, rejects=rejects + failed)


class _PostgresPurchases(_PostgresMerger):
    def __init__(self, *, source, create_members, recorder, erasure):
        self.source, self.create_members, self.recorder = source, create_members, recorder
        self.erasure = erasure

    def start(self):
        super().start()
        # A first import of a source has nothing to skip: spare a million index probes that find nothing.
        self.source_had_purchases = Purchase.objects.filter(source=self.source).exists()

    def merge(self, rows):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            _pg_stage(cursor, PURCHASE_STAGE, PurchaseRow._fields, rows)
            outcome = ChunkOutcome(rejects=_pg_claim(cursor, stage=PURCHASE_STAGE, column="order_no",
                                                     reason="duplicate of line {}"))
            if self.source_had_purchases:
                cursor.execute(UNSTAGE_IMPORTED_PURCHASES, {"source": self.source})
                outcome.skipped = cursor.rowcount
            cursor.execute(RESOLVE_BY_EXTERNAL_ID)
            cursor.execute(RESOLVE_BY_PHONE)
            if self.create_members:
                cursor.execute(UNSTAGE_ERASED_MEMBERS_PURCHASES)
                outcome.rejects += [(line, ERASED) for (line,) in cursor.fetchall()]
                outcome.members_created = self._create_members(cursor)
            cursor.execute(UNSTAGE_UNKNOWN_MEMBERS)
            outcome.rejects += [(line, UNKNOWN_MEMBER) for (line,) in cursor.fetchall()]
            if self.recorder:
                cursor.execute(STAGED_FOR_AWARD)
                to_award = [AwardRow(*row) for row in cursor.fetchall()]
            else:
                cursor.execute(f"SELECT count(*) FROM {PURCHASE_STAGE}")  # noqa: S608
                (staged,) = cursor.fetchone()
                cursor.execute(INSERT_PURCHASES, {"source": self.source, "now": timezone.now(),
                                                  "currency": Purchase._meta.get_field("currency").default})
                outcome.imported = cursor.rowcount
                outcome.skipped += staged - cursor.rowcount  # imported meanwhile by a concurrent run
        if self.recorder:
            awarded = _award_points(to_award, source=self.source, recorder=self.recorder)
            outcome.imported, outcome.skipped = awarded.imported, outcome.skipped + awarded.skipped
            outcome.rejects += awarded.rejects
        return outcome

    def _create_members(self, cursor):
        cursor.execute(MEMBERS_TO_CREATE)
        new = [_new_member(external_id, line=line, phone=phone, store_id=store_id, joined_at=joined_at,
                           erasure=self.erasure)
               for external_id, line, phone, store_id, joined_at in cursor.fetchall()]
        if not new:
            return 0
        _pg_stage(cursor, MEMBER_STAGE, MemberRow._fields, new)
        cursor.execute(DROP_ERASED_PHONES)
        cursor.execute(DROP_TAKEN_PHONES)
        created, _raced, _failed = _pg_insert_staged_members(cursor)  # failed ones stay unknown members
        cursor.execute(RESOLVE_BY_EXTERNAL_ID)
        cursor.execute(RESOLVE_BY_PHONE)  # a phone-only row may belong to a member just created
        return created


# ---------------------------------------------------------------------------------------------------------------
# Other databases (the SQLite demo): the same steps through the ORM


def _lookup(queryset, field_name, keys, value="id"):
    """{key: value} for the rows whose field_name is among keys, in IN (...) batches."""
    keys, found = list(dict.fromkeys(keys)), {}
    for start in range(0, len(keys), LOOKUP_BATCH):
        batch = keys[start:start + LOOKUP_BATCH]
        found.update(queryset.filter(**{f"{field_name}__in": batch}).values_list(field_name, value))
    return found


class _OrmMerger:
    def start(self):
        self.seen = {}  # (kind, key) -> first line

    def finish(self):
        self.seen = {}

    def _claim(self, rows, kind, key, reason):
        """Keep the rows that claim their key first; the others come back as rejects."""
        kept, rejects = [], []
        for row in rows:
            value = getattr(row, key)
            first = self.seen.setdefault((kind, value), row.line) if value is not None else row.line
            if first == row.line:
                kept.append(row)
            else:
                rejects.append((row.line, reason.format(first)))
        return kept, rejects


def _orm_erased_lines(rows, digests_of):
    """The lines of the rows with a digest among the erased identities' (in IN batches, not a query per row)."""
    found = set(_lookup(ErasedIdentity.objects, "digest", [digest for row in rows for digest in digests_of(row)],
                        value="digest"))
    return {row.line for row in rows if found.intersection(digests_of(row))} if found else set()


def _orm_insert_members(rows):
    """As _pg_insert_staged_members. Without a RETURNING the ORM cannot tell our rows from a concurrent run's."""
    pending, imported = list(rows), 0
    for _attempt in range(CODE_ATTEMPTS):
        Member.objects.bulk_create([_member_instance(row) for row in pending], ignore_conflicts=True)
        present = _lookup(Member.objects, "external_id", [row.external_id for row in pending])
        imported += sum(1 for row in pending if row.external_id in present)
        pending = [row._replace(member_no=generate_member_no(), referral_code=generate_referral_code())
                   for row in pending if row.external_id not in present]
        if not pending:
            return imported, []
    taken = _lookup(Member.objects, "phone", [row.phone for row in pending if row.phone])
    return imported, [(row.line, PHONE_TAKEN if row.phone in taken else NO_UNIQUE_CODE) for row in pending]


def _member_instance(row):
    return Member(member_no=row.member_no, referral_code=row.referral_code, phone=row.phone,
                  external_id=row.external_id, name=row.name, gender=row.gender, birthday=row.birthday,
                  email=row.email, home_store_id=row.home_store_id, channel=Channel.IMPORT,
                  consent_sms=row.consent_sms, consent_wechat=row.consent_wechat, consent_email=row.consent_email,
                  joined_at=row.joined_at)


class _OrmMembers(_OrmMerger):
    def merge(self, rows):
        with transaction.atomic(durable=True):
            rows, rejects = self._claim(rows, "external_id", "external_id", "duplicate of line {}")
            rows, more = self._claim(rows, "phone", "phone", "phone already used by line {}")
            existing = _lookup(Member.objects, "external_id", [row.external_id for row in rows])
            new = [row for row in rows if row.external_id not in existing]
            skipped = len(rows) - len(new)
            erased = _orm_erased_lines(new, lambda row: row.external_id_digests + row.phone_digests)
            rejects += more + [(line, ERASED) for line in erased]
            new = [row for row in new if row.line not in erased]
            taken = _lookup(Member.objects, "phone", [row.phone for row in new if row.phone])
            rejects += [(row.line, PHONE_TAKEN) for row in new if row.phone in taken]
            imported, failed = _orm_insert_members([row for row in new if row.phone not in taken])
        return ChunkOutcome(imported=imported, skipped=skipped, rejects=rejects + failed)


class _OrmPurchases(_OrmMerger):
    def __init__(self, *, source, create_members, recorder, erasure):
        self.source, self.create_members, self.recorder = source, create_members, recorder
        self.erasure = erasure

    def merge(self, rows):
        outcome = ChunkOutcome()
        with transaction.atomic(durable=True):
            rows, outcome.rejects = self._claim(rows, "order_no", "order_no", "duplicate of line {}")
            ours = Purchase.objects.filter(source=self.source)
            imported_before = _lookup(ours, "order_no", [row.order_no for row in rows])
            rows = [row for row in rows if row.order_no not in imported_before]
            outcome.skipped = len(imported_before)
            member_ids = self._resolve(rows)
            if self.create_members:
                erased = _orm_erased_lines([row for row in rows if row.line not in member_ids],
                                           lambda row: row.member_external_id_digests)
                outcome.rejects += [(line, ERASED) for line in erased]
                rows = [row for row in rows if row.line not in erased]
                outcome.members_created = self._create_members(rows, member_ids)
            known = []
            for row in rows:
                member_id = member_ids.get(row.line)
                if member_id is None:
                    outcome.rejects.append((row.line, UNKNOWN_MEMBER))
                else:
                    known.append(AwardRow(row.line, member_id, row.order_no, row.occurred_at, row.amount,
                                          row.store_id, row.channel))
            if not self.recorder:
                Purchase.objects.bulk_create([_purchase_instance(row, self.source) for row in known],
                                             ignore_conflicts=True)
                outcome.imported = len(_lookup(ours, "order_no", [row.order_no for row in known]))
                outcome.skipped += len(known) - outcome.imported
        if self.recorder:
            awarded = _award_points(known, source=self.source, recorder=self.recorder)
            outcome.imported, outcome.skipped = awarded.imported, outcome.skipped + awarded.skipped
            outcome.rejects += awarded.rejects
        return outcome

    def _resolve(self, rows):
        """{line: member id}: by member_external_id when the row has one, else by member_phone."""
        by_external_id = _lookup(Member.objects, "external_id",
                                 [row.member_external_id for row in rows if row.member_external_id])
        by_phone = _lookup(Member.objects, "phone", [row.member_phone for row in rows if not row.member_external_id])
        found = {}
        for row in rows:
            member_id = (by_external_id.get(row.member_external_id) if row.member_external_id
                         else by_phone.get(row.member_phone))
            if member_id is not None:
                found[row.line] = member_id
        return found

    def _create_members(self, rows, member_ids):
        new = {}
        for row in rows:  # in line order, as MEMBERS_TO_CREATE
            if row.line not in member_ids and row.member_external_id and row.member_external_id not in new:
                new[row.member_external_id] = _new_member(row.member_external_id, line=row.line,
                                                          phone=row.member_phone, store_id=row.store_id,
                                                          joined_at=row.occurred_at, erasure=self.erasure)
        taken = set(_lookup(Member.objects, "phone", [member.phone for member in new.values() if member.phone]))
        erased = _orm_erased_lines(new.values(), lambda member: member.phone_digests)
        taken.update(member.phone for member in new.values() if member.line in erased)
        candidates = []
        for member in sorted(new.values(), key=lambda member: member.line):
            if member.phone in taken:
                member = member._replace(phone=None)
            elif member.phone:
                taken.add(member.phone)
            candidates.append(member)
        created, _failed = _orm_insert_members(candidates)  # failed ones stay unknown members
        member_ids.update(self._resolve([row for row in rows if row.line not in member_ids]))
        return created


def _purchase_instance(row, source):
    return Purchase(member_id=row.member_id, store_id=row.store_id, source=source, order_no=row.order_no,
                    channel=row.channel, occurred_at=row.occurred_at, amount=row.amount, imported=True)
