"""Reading and checking an import's rows: the CSV source read one record at a time, the rejects file, the checks
that turn a row's text into typed values or a reason to reject it, the erasure check, and the row tuples and
chunk outcomes the merges take and give back."""

import codecs
import collections
import csv
import io
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache, lru_cache
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from loyalty.clock import business_tz
from loyalty.csv_cells import neutralise_row, restore
from members.models import ErasedIdentity, ErasedIdentityKind, Gender, Member, Purchase, PurchaseChannel, Store
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from members.services.membership import erasure_keys, generate_member_no, generate_referral_code, identity_digest

CHUNK_ROWS = 50_000
AWARD_CHUNK_ROWS = 1_000  # with award_points each order is its own transaction: show progress more often
LOOKUP_BATCH = 500  # keys per IN (...) on the ORM path: SQLite allows 999 parameters per statement
PHONE_CACHE = 1_000_000  # phones normalised once per run
CODE_ATTEMPTS = 5  # draws of a card number / referral code before a row is given up
ACTOR = "import"
EARLIEST_ORDER = datetime(2000, 1, 1, tzinfo=UTC)  # as the purchase API: no order is older
EARLIEST_BIRTHDAY = date(1900, 1, 1)
MAX_AMOUNT = Decimal("999999999999.99")  # numeric(14, 2)
CENT = Decimal("0.01")
AMOUNT_PATTERN = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
# A Chinese mobile number as +8613800138000, 8613800138000 or 13800138000 (spaces and hyphens aside), ASCII digits
# only. libphonenumber reads each of these as +86 and the 11 digits (no national or carrier prefix can be taken
# off them: 179.. is one, and no mobile number starts with it), so one that is a member's stored phone needs no
# parse: see _Checks._phone.
MOBILE_PATTERN = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})")
BOOLEANS = {"": False, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
GENDERS = frozenset(Gender.values)  # an enum's .values is rebuilt on every access: not once per row
PURCHASE_CHANNELS = frozenset(PurchaseChannel.values)
IGNORED_COLUMNS = ("line", "reason")  # a corrected rejects file can be imported as it is

MEMBER_COLUMNS = (
    "external_id",
    "phone",
    "name",
    "gender",
    "birthday",
    "email",
    "store",
    "joined_at",
    "consent_sms",
    "consent_wechat",
    "consent_email",
)
PURCHASE_COLUMNS = ("member_external_id", "member_phone", "order_no", "occurred_at", "amount", "store", "channel")

PHONE_TAKEN = gettext_noop("phone already used by another member")
UNKNOWN_MEMBER = gettext_noop("unknown member")
DUPLICATE_OF_LINE = gettext_noop("duplicate of line %(line)s")
PHONE_OF_LINE = gettext_noop("phone already used by line %(line)s")
NO_UNIQUE_CODE = gettext_noop("no unique card number or referral code could be drawn")
ERASED = gettext_noop("erased on the member's request")


class ImportRefused(Exception):
    """The import cannot start or go on: the file (no header, a column missing or unknown, not decodable in its
    encoding) or an option is wrong. Chunks merged before stay merged; a re-run skips them."""


class Rejected(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


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


@dataclass(frozen=True)
class EncodedRows:
    """A chunk's good rows as a merge's encoder wrote them in the checking process (postgres: COPY text), so that
    the process that merges only passes them on."""

    data: bytes
    count: int

    def __len__(self):
        return self.count


@dataclass
class ChunkOutcome:
    imported: int = 0
    skipped: int = 0
    rejects: list = field(default_factory=list)  # (line, reason)
    members_created: int = 0


def _checked_chunks(source, checks, parse_name, checker, *, chunk_rows, phone_column, ahead, encode=None):
    """Yield (chunk, good rows, rejects, fraction of the file read), in file order. Up to `ahead` chunks are
    checked by `checker` (a pool of processes, or one thread) while the caller merges this one; this thread reads
    the file and looks up, once per chunk, which phones are members' already (see _Checks.stored_phones), so at
    most `ahead` + 1 chunks are in memory."""
    chunks = source.chunks(chunk_rows)
    pending = collections.deque()
    language = translation.get_language()
    in_process = isinstance(checker, ProcessPoolExecutor)

    def submit_next():
        chunk = next(chunks, None)
        if chunk is None:
            return False
        texts = (_cell(raw, source.positions, phone_column) for _line, raw in chunk)
        arguments = (
            parse_name,
            encode,
            chunk,
            len(source.header),
            source.positions,
            checks.stored_phones(texts),
            language,
        )
        if in_process:
            future = checker.submit(_check_chunk_in_worker, *arguments)
        else:
            future = checker.submit(_check_chunk, checks, *arguments)
        pending.append((chunk, future, source.fraction()))
        return True

    while len(pending) < ahead and submit_next():
        pass
    while pending:
        chunk, future, fraction = pending.popleft()
        good, found = future.result()
        submit_next()
        yield chunk, good, found, fraction


def _check_chunk(checks, parse_name, encode, chunk, width, positions, stored_phones, language):
    """Check a chunk's rows: (good rows, [(line, reason)]), the good rows as `encode` gives them (EncodedRows) when
    the merge has an encoder. The same code whether it runs in a process of the pool or in a thread."""
    parse = getattr(checks, parse_name)
    checks.known_phones = stored_phones
    good, found = [], []
    with translation.override(language):  # a reason is translated when raised, in the run's language
        for line, raw in chunk:
            try:
                good.append(parse(line, _values(raw, width, positions)))
            except Rejected as rejected:
                found.append((line, rejected.reason))
    return (encode(good) if encode else good), found


_worker_checks = None  # a pool process's _Checks, given once when it starts: its phone cache lasts the run


def _start_check_worker(checks):
    global _worker_checks  # noqa: PLW0603 - one per process, set by the pool's initializer
    _worker_checks = checks


def _check_chunk_in_worker(*arguments):
    return _check_chunk(_worker_checks, *arguments)


def _cell(raw, positions, name):
    for column, index in positions:
        if column == name:
            return restore(raw[index]).strip() if index < len(raw) else ""
    return ""


def _values(raw, width, positions):
    if len(raw) != width:
        raise Rejected(_("%(count)s columns, expected %(expected)s") % {"count": len(raw), "expected": width})
    # restore(): a cell the rejects file neutralised ('=..., '+86..., '-5) reads back as it was written there; it
    # changes only a cell that starts with an apostrophe.
    return {name: (restore(cell) if (cell := raw[index])[:1] == "'" else cell).strip() for name, index in positions}


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
                raise ImportRefused(_("The file is empty: it needs a header row."))
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
            raise ImportRefused(
                f"Line {self.reader.line_num + 1} is not {self.encoding} text; "
                "pass the file's encoding (e.g. --encoding gb18030)."
            ) from None
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

    def fraction(self):
        return self.binary.tell() / self.size


class _RejectsFile:
    """`line,reason,<the input's columns...>`, one row per rejected row, in line order. Cells a spreadsheet would
    run as a formula are neutralised (loyalty.csv_cells); the importers restore them, so the corrected file can be
    imported as it is."""

    def __init__(self, path, header, encoding):
        self.path, self.header, self.encoding = path, header, encoding

    def __enter__(self):
        try:
            self.file = open(self.path, "w", encoding=self.encoding, newline="")  # noqa: SIM115
        except OSError as error:
            raise ImportRefused(f"Cannot write the rejects file {self.path}: {error.strerror}.") from None
        self.writer = csv.writer(self.file)
        self.writer.writerow(neutralise_row(["line", "reason", *self.header]))
        return self

    def __exit__(self, *exc_info):
        self.file.close()

    def write(self, rejects, raw_by_line):
        # A reason is either already in the active language (Rejected's) or one of the constants above, marked
        # with gettext_noop and translated here; gettext gives any other text back as it is.
        self.writer.writerows(neutralise_row([line, _(reason), *raw_by_line[line]]) for line, reason in rejects)
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
                "request are not imported again."
            )
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
        # A purchase history names each member many times: a phone is parsed once a run (up to a million phones,
        # ~200 MB; libphonenumber is most of the checking time).
        self.normalise_phone = lru_cache(maxsize=PHONE_CACHE)(normalise_phone)
        self.region = settings.PHONE_DEFAULT_REGION
        self.known_phones = frozenset()  # members' stored phones among this chunk's (stored_phones)

    def stored_phones(self, texts):
        """The members' stored phones among the E.164 forms of these texts' mobile numbers (_mobile_form), looked
        up in the database once per chunk."""
        forms = {form for text in texts if (form := self._mobile_form(text))}
        if not forms:
            return frozenset()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT phone FROM {Member._meta.db_table} WHERE phone = ANY(%s)", [list(forms)])  # noqa: S608
                return frozenset(phone for (phone,) in cursor.fetchall())
        forms, found = list(forms), set()
        for start in range(0, len(forms), LOOKUP_BATCH):
            found.update(
                Member.objects.filter(phone__in=forms[start : start + LOOKUP_BATCH]).values_list("phone", flat=True)
            )
        return frozenset(found)

    def _mobile_form(self, text):
        """'+86 138 0013 8000' -> '+8613800138000', as normalise_phone would give it if it is a valid number; None
        for anything else (and for the forms without +86 when the default region is not CN)."""
        if not text or len(text) > 32:  # normalise_phone refuses a longer text
            return None
        compact = text.replace(" ", "").replace("-", "")
        match = MOBILE_PATTERN.fullmatch(compact)
        if match is None or match[1].startswith("179") or (self.region != "CN" and compact[0] != "+"):
            return None
        return "+86" + match[1]

    def member(self, line, values):
        external_id = _text(values, "external_id", Member, required=True)
        phone = self._phone(values.get("phone", ""), "phone")
        name = _text(values, "name", Member)
        gender = values.get("gender", "").lower() or Gender.UNKNOWN
        if gender not in GENDERS:
            raise Rejected(_("invalid gender"))
        birthday = self._birthday(values.get("birthday", ""))
        email = _text(values, "email", Member)
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise Rejected(_("invalid email")) from None
        store_id = self._store(values.get("store", ""))
        joined_at = self.now
        if values.get("joined_at"):
            joined_at = self._instant(values["joined_at"], "joined_at")
            if joined_at > self.latest:
                raise Rejected(_("joined_at in the future"))
        consents = [
            self._boolean(values.get(name, ""), name) for name in ("consent_sms", "consent_wechat", "consent_email")
        ]
        return MemberRow(
            line,
            external_id,
            phone,
            name,
            gender,
            birthday,
            email,
            store_id,
            joined_at,
            *consents,
            generate_member_no(),
            generate_referral_code(),
            self.erasure.digests(ErasedIdentityKind.EXTERNAL_ID, external_id),
            self.erasure.digests(ErasedIdentityKind.PHONE, phone),
        )

    def purchase(self, line, values):
        external_id = _text(values, "member_external_id", Member, column="external_id") or None
        phone = self._phone(values.get("member_phone", ""), "member_phone")
        if external_id is None and phone is None:
            raise Rejected(_("missing member_external_id or member_phone"))
        order_no = _text(values, "order_no", Purchase, required=True)
        occurred_at = self._instant(_required(values, "occurred_at"), "occurred_at")
        if not EARLIEST_ORDER <= occurred_at <= self.latest:
            raise Rejected(_("occurred_at out of range (2000-01-01 to now)"))
        amount = self._amount(_required(values, "amount"))
        store_id = self._store(values.get("store", ""))
        channel = values.get("channel", "").lower() or PurchaseChannel.OFFLINE
        if channel not in PURCHASE_CHANNELS:
            raise Rejected(_("invalid channel"))
        return PurchaseRow(
            line,
            external_id,
            phone,
            order_no,
            occurred_at,
            amount,
            store_id,
            channel,
            self.erasure.digests(ErasedIdentityKind.EXTERNAL_ID, external_id),
        )

    def _phone(self, text, name):
        if not text:
            return None
        if text in self.known_phones:  # the stored form itself, as most files have it
            return text
        # A member's stored phone was valid when it was stored (normalise_phone gave it): a text whose E.164 form
        # is one gives that form without libphonenumber (~50 µs a number, most of the checks' time). Anything
        # else, a non-member's valid or invalid number included, is parsed as before, with the same reasons.
        form = self._mobile_form(text)
        if form is not None and form in self.known_phones:
            return form
        try:
            return self.normalise_phone(text)
        except InvalidPhoneNumber:
            raise Rejected(_("invalid %(name)s") % {"name": name}) from None

    def _store(self, code):
        if not code:
            return None
        try:
            return self.stores[code]
        except KeyError:
            raise Rejected(_("unknown store")) from None

    def _instant(self, text, name):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise Rejected(_("invalid %(name)s") % {"name": name}) from None
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
            raise Rejected(_("invalid birthday")) from None
        if not EARLIEST_BIRTHDAY <= birthday <= self.today:
            raise Rejected(_("invalid birthday"))
        return birthday

    @staticmethod
    def _amount(text):
        if not AMOUNT_PATTERN.fullmatch(text):
            raise Rejected(_("invalid amount"))
        amount = Decimal(text)
        if amount <= 0:
            raise Rejected(_("amount must be greater than 0"))
        cents = amount.quantize(CENT)
        if amount != cents:
            raise Rejected(_("amount has more than 2 decimals"))
        if amount > MAX_AMOUNT:
            raise Rejected(_("amount too large"))
        return cents

    @staticmethod
    def _boolean(text, name):
        try:
            return BOOLEANS[text.lower()]
        except KeyError:
            raise Rejected(_("invalid %(name)s") % {"name": name}) from None


def _required(values, name):
    if not values.get(name):
        raise Rejected(_("missing %(name)s") % {"name": name})
    return values[name]


@cache
def _max_length(model, name):
    return model._meta.get_field(name).max_length


def _text(values, name, model, *, column=None, required=False):
    text = _required(values, name) if required else values.get(name, "")
    max_length = _max_length(model, column or name)
    if len(text) > max_length:
        raise Rejected(_("%(name)s longer than %(max_length)s characters") % {"name": name, "max_length": max_length})
    return text


def _new_member(external_id, *, line, phone, store_id, joined_at, erasure):
    """A member created from her first row in the file (create_members): its phone, its store as her home store,
    its time as joined_at. The first row, not the earliest order: so the result does not depend on chunking."""
    return MemberRow(
        line,
        external_id,
        phone,
        "",
        Gender.UNKNOWN,
        None,
        "",
        store_id,
        joined_at,
        False,
        False,
        False,
        generate_member_no(),
        generate_referral_code(),
        erasure.digests(ErasedIdentityKind.EXTERNAL_ID, external_id),
        erasure.digests(ErasedIdentityKind.PHONE, phone),
    )
