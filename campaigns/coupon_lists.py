"""Uploaded member lists for a coupon batch (SPEC §10 "to a segment, tag or list"): reading the file a marketer
uploads (a CSV whose header names the key column: `member_no`, `phone` or `external_id`; other columns are
ignored, so a members export can be sent as it is), its limits, and the key each line gives or the reason it is
malformed. The issue itself is campaigns.jobs'; the rejects file is written from CouponBatchReject rows."""

import csv
import hashlib
import io
import itertools
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.utils.translation import gettext_lazy as _

from campaigns.models_coupons import CouponBatchLine, ListKey
from loyalty.api import csv_response
from loyalty.errors import DomainError, InvalidInput
from loyalty.stored_reasons import register as register_reason
from loyalty.stored_reasons import shown_reason
from members.phone_numbers import InvalidPhoneNumber, normalise_phone

KEY_COLUMNS = tuple(ListKey.values)
MAX_KEY_LENGTH = {ListKey.MEMBER_NO: 20, ListKey.EXTERNAL_ID: 64, ListKey.PHONE: 32}
REJECTS_HEADER = ("line", "key", "reason")

# Why a line of a list issues nothing (the rejects file's `reason`).
UNKNOWN_MEMBER = "unknown member"
ERASED = "erased on the member's request"
DUPLICATE_LINE = "duplicate of line {}"
DUPLICATE_MEMBER = "the same member as line {}"
ALREADY_ISSUED = "the same member as an earlier line (already issued by this batch)"
NOT_ACTIVE = "member not active ({})"
LIMIT_REACHED = "per-member limit reached"
QUANTITY_USED_UP = "total quantity used up"
MALFORMED = "malformed {}: {}"

# The reasons are stored in English (the SQL path writes them too); the rejects file gives them in the reader's
# language (loyalty/stored_reasons.py).
for _pattern, _text in (
    (re.escape(UNKNOWN_MEMBER), _("unknown member")),
    (re.escape(ERASED), _("erased on the member's request")),
    (r"duplicate of line (?P<line>\d+)", _("duplicate of line %(line)s")),
    (r"the same member as line (?P<line>\d+)", _("the same member as line %(line)s")),
    (re.escape(ALREADY_ISSUED), _("the same member as an earlier line (already issued by this batch)")),
    (r"member not active \((?P<status>\w+)\)", _("member not active (%(status)s)")),
    (re.escape(LIMIT_REACHED), _("per-member limit reached")),
    (re.escape(QUANTITY_USED_UP), _("total quantity used up")),
    (r"malformed (?P<column>\S+): empty", _("malformed %(column)s: empty")),
    (r"malformed (?P<column>\S+): too long", _("malformed %(column)s: too long")),
    (r"malformed (?P<column>\S+): not a valid phone number", _("malformed %(column)s: not a valid phone number")),
):
    register_reason(_pattern, _text)


class ListTooLarge(DomainError):
    """The file is larger than COUPON_LIST_MAX_BYTES."""

    status = 413
    code = "request_too_large"

    def __init__(self):
        super().__init__(f"The file is larger than the {max_bytes():,} bytes allowed: send the list in parts.")


class Malformed(Exception):
    pass


def max_bytes():
    return settings.COUPON_LIST_MAX_BYTES


@dataclass(frozen=True)
class MemberList:
    """An uploaded list, checked (read_member_list): the file itself (read again, from the start, by
    stage_lines: never held whole in memory), its name, key column, data rows, and the line the last one ends on."""

    file: object
    name: str
    key_column: str
    rows: int
    last_line: int
    digest: str  # SHA-256 of the bytes (the request's fingerprint)


def read_member_list(upload):
    """Checks an uploaded file (a Django UploadedFile: a temporary file on disk past a few MB) as it streams
    through: at most COUPON_LIST_MAX_BYTES (ListTooLarge, before reading), UTF-8 (a BOM is fine), a header with
    exactly one of the key columns, 1 to COUPON_LIST_MAX_ROWS data rows (InvalidInput on the field `file`
    otherwise). Returns a MemberList."""
    if upload.size > max_bytes():
        raise ListTooLarge()
    digest = hashlib.sha256()
    for part in upload.chunks():
        digest.update(part)
    rows, last_line, key_column = 0, 0, None
    try:
        for column, line, _ in _records(upload):
            key_column, rows, last_line = column, rows + 1, line
    except UnicodeDecodeError:
        raise InvalidInput({"file": ["The file is not UTF-8 text."]}) from None
    except csv.Error as error:
        raise InvalidInput({"file": [f"The file is not readable CSV: {error}."]}) from None
    if rows == 0:
        raise InvalidInput({"file": ["The file lists no member."]})
    if rows > settings.COUPON_LIST_MAX_ROWS:
        raise InvalidInput(
            {"file": [f"The file lists {rows:,} rows: at most {settings.COUPON_LIST_MAX_ROWS:,} per upload."]}
        )
    name = (upload.name or "list.csv")[:200]
    return MemberList(upload, name, key_column, rows, last_line, digest.hexdigest())


def _records(upload):
    """(key column, line, raw key) of each data row of the file, streamed from its start (a row's line is the
    physical line it ends on; blank rows are left out). InvalidInput if the header names not one key column;
    UnicodeDecodeError, csv.Error as they come."""
    upload.seek(0)
    text = io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline="")
    try:
        reader = csv.reader(text)
        header = [cell.strip().lower() for cell in next(reader, [])]
        keys = [column for column in header if column in KEY_COLUMNS]
        if len(keys) != 1:
            raise InvalidInput(
                {"file": [f"The first line must name one key column: {', '.join(KEY_COLUMNS)} (found {len(keys)})."]}
            )
        position = header.index(keys[0])
        for record in reader:
            if any(cell.strip() for cell in record):
                yield keys[0], reader.line_num, record[position] if position < len(record) else ""
    finally:
        text.detach()  # the upload's file stays open for the next reading


STAGE_BATCH = 5000  # lines per bulk_create where there is no COPY


def stage_lines(batch, member_list):
    """Writes the list's lines (line, key as written, cut at 200 characters, and its stored form where it is written
    plainly: plain_key) as the batch's CouponBatchLine rows, in the caller's transaction, streaming the file: on
    PostgreSQL by COPY, elsewhere by bulk_create in slices. The job reads the other lines' keys (key_of)."""
    column = member_list.key_column
    rows = (
        (batch.pk, line, written, plain_key(written, column), "")
        for _, line, raw in _records(member_list.file)
        for written in (raw[:200],)
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor, cursor.copy(STAGE_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        return
    while part := list(itertools.islice(rows, STAGE_BATCH)):
        CouponBatchLine.objects.bulk_create(
            [
                CouponBatchLine(batch_id=batch_id, line=line, written=written, key=key)
                for batch_id, line, written, key, _ in part
            ]
        )


STAGE_COPY = f"COPY {CouponBatchLine._meta.db_table} (batch_id, line, written, key, reason) FROM STDIN"


def key_of(raw, key_column):
    """The stored form of a line's key (a phone in E.164), or Malformed with the reason."""
    value = raw.strip()
    label = ListKey(key_column).label
    if not value:
        raise Malformed(MALFORMED.format(label, "empty"))
    if len(value) > MAX_KEY_LENGTH[key_column]:
        raise Malformed(MALFORMED.format(label, "too long"))
    if key_column == ListKey.PHONE:
        return phone_key(value, label)
    return value


def plain_key(raw, key_column):
    """key_of's answer where it is a key written plainly (a card number or an external id, a phone in E.164 or as a
    Chinese mobile number: a few µs, no libphonenumber), else None (malformed, or a phone libphonenumber reads:
    the job's first step reads such a line with key_of). Computed as the upload is staged, in the same pass."""
    value = raw.strip()
    if not value or len(value) > MAX_KEY_LENGTH[key_column]:
        return None
    if key_column == ListKey.PHONE:
        return _plain_phone(value)
    return value


E164 = re.compile(r"\+[1-9]\d{7,14}")
CHINESE_MOBILE = re.compile(r"(?:86)?(1[3-9]\d{9})")


def _plain_phone(value):
    compact = value.replace(" ", "").replace("-", "")
    if E164.fullmatch(compact):
        return compact
    if settings.PHONE_DEFAULT_REGION == "CN" and (mobile := CHINESE_MOBILE.fullmatch(compact)):
        return "+86" + mobile.group(1)
    return None


def phone_key(value, label):
    """A phone as members store it (E.164). The forms a list mostly holds are read by pattern: libphonenumber
    takes ~0.3 ms a number, 5 minutes for a million. Written in E.164 already, it is taken as it is (a number that is
    not valid matches no member: "unknown member"); a Chinese mobile number (with the default region CN) gets
    +86; anything else goes through members.phone_numbers.normalise_phone."""
    if (plain := _plain_phone(value)) is not None:
        return plain
    try:
        return normalise_phone(value)
    except InvalidPhoneNumber:
        raise Malformed(MALFORMED.format(label, "not a valid phone number")) from None


def rejects_response(batch):
    """The batch's rejects file as a CSV download."""
    stored = batch.rejects.order_by("line").values_list("line", "key", "reason").iterator(chunk_size=5000)
    rows = ((line, key, shown_reason(reason)) for line, key, reason in stored)
    return csv_response(f"coupon-batch-{batch.pk}-rejects.csv", REJECTS_HEADER, rows)
