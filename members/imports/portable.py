"""Other databases (the SQLite demo): the same steps as the PostgreSQL merge, in the same order and with the same
results, through the ORM."""

from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from members.models import Channel, ErasedIdentity, Member, Purchase
from members.services.membership import generate_member_no, generate_referral_code

from .awards import _award_points
from .rows import (
    CODE_ATTEMPTS,
    DUPLICATE_OF_LINE,
    ERASED,
    LOOKUP_BATCH,
    NO_UNIQUE_CODE,
    PHONE_OF_LINE,
    PHONE_TAKEN,
    UNKNOWN_MEMBER,
    AwardRow,
    ChunkOutcome,
    _new_member,
)


def _lookup(queryset, field_name, keys, value="id"):
    """{key: value} for the rows whose field_name is among keys, in IN (...) batches."""
    keys, found = list(dict.fromkeys(keys)), {}
    for start in range(0, len(keys), LOOKUP_BATCH):
        batch = keys[start : start + LOOKUP_BATCH]
        found.update(queryset.filter(**{f"{field_name}__in": batch}).values_list(field_name, value))
    return found


class _OrmMerger:
    encode = None  # the merge takes the rows as they are

    def start(self):
        self.seen = {}  # (kind, key) -> first line

    def flush(self):
        """The rows a merge kept back, merged after the last chunk (none here)."""
        return ChunkOutcome()

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
                rejects.append((row.line, _(reason) % {"line": first}))
        return kept, rejects


def _orm_erased_lines(rows, digests_of):
    """The lines of the rows with a digest among the erased identities' (in IN batches, not a query per row)."""
    found = set(
        _lookup(
            ErasedIdentity.objects, "digest", [digest for row in rows for digest in digests_of(row)], value="digest"
        )
    )
    return {row.line for row in rows if found.intersection(digests_of(row))} if found else set()


def _orm_insert_members(rows):
    """As _pg_insert_staged_members. Without a RETURNING the ORM cannot tell our rows from a concurrent run's."""
    pending, imported = list(rows), 0
    for _attempt in range(CODE_ATTEMPTS):
        Member.objects.bulk_create([_member_instance(row) for row in pending], ignore_conflicts=True)
        present = _lookup(Member.objects, "external_id", [row.external_id for row in pending])
        imported += sum(1 for row in pending if row.external_id in present)
        pending = [
            row._replace(member_no=generate_member_no(), referral_code=generate_referral_code())
            for row in pending
            if row.external_id not in present
        ]
        if not pending:
            return imported, []
    taken = _lookup(Member.objects, "phone", [row.phone for row in pending if row.phone])
    return imported, [(row.line, PHONE_TAKEN if row.phone in taken else NO_UNIQUE_CODE) for row in pending]


def _member_instance(row):
    return Member(
        member_no=row.member_no,
        referral_code=row.referral_code,
        phone=row.phone,
        external_id=row.external_id,
        name=row.name,
        gender=row.gender,
        birthday=row.birthday,
        email=row.email,
        home_store_id=row.home_store_id,
        channel=Channel.IMPORT,
        consent_sms=row.consent_sms,
        consent_wechat=row.consent_wechat,
        consent_email=row.consent_email,
        joined_at=row.joined_at,
    )


class _OrmMembers(_OrmMerger):
    def merge(self, rows):
        with transaction.atomic(durable=True):
            rows, rejects = self._claim(rows, "external_id", "external_id", DUPLICATE_OF_LINE)
            rows, more = self._claim(rows, "phone", "phone", PHONE_OF_LINE)
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
            rows, outcome.rejects = self._claim(rows, "order_no", "order_no", DUPLICATE_OF_LINE)
            ours = Purchase.objects.filter(source=self.source)
            imported_before = _lookup(ours, "order_no", [row.order_no for row in rows])
            rows = [row for row in rows if row.order_no not in imported_before]
            outcome.skipped = len(imported_before)
            member_ids = self._resolve(rows)
            if self.create_members:
                erased = _orm_erased_lines(
                    [row for row in rows if row.line not in member_ids], lambda row: row.member_external_id_digests
                )
                outcome.rejects += [(line, ERASED) for line in erased]
                rows = [row for row in rows if row.line not in erased]
                outcome.members_created = self._create_members(rows, member_ids)
            known = []
            for row in rows:
                member_id = member_ids.get(row.line)
                if member_id is None:
                    outcome.rejects.append((row.line, UNKNOWN_MEMBER))
                else:
                    known.append(
                        AwardRow(
                            row.line, member_id, row.order_no, row.occurred_at, row.amount, row.store_id, row.channel
                        )
                    )
            if not self.recorder:
                Purchase.objects.bulk_create(
                    [_purchase_instance(row, self.source) for row in known], ignore_conflicts=True
                )
                outcome.imported = len(_lookup(ours, "order_no", [row.order_no for row in known]))
                outcome.skipped += len(known) - outcome.imported
        if self.recorder:
            awarded = _award_points(known, source=self.source, recorder=self.recorder)
            outcome.imported, outcome.skipped = awarded.imported, outcome.skipped + awarded.skipped
            outcome.rejects += awarded.rejects
        return outcome

    def _resolve(self, rows):
        """{line: member id}: by member_external_id when the row has one, else by member_phone (a merged duplicate's
        identifiers give her survivor's id)."""
        members = Member.objects.annotate(current_id=Coalesce("merged_into_id", "id"))
        by_external_id = _lookup(
            members,
            "external_id",
            [row.member_external_id for row in rows if row.member_external_id],
            value="current_id",
        )
        by_phone = _lookup(
            members, "phone", [row.member_phone for row in rows if not row.member_external_id], value="current_id"
        )
        found = {}
        for row in rows:
            member_id = (
                by_external_id.get(row.member_external_id) if row.member_external_id else by_phone.get(row.member_phone)
            )
            if member_id is not None:
                found[row.line] = member_id
        return found

    def _create_members(self, rows, member_ids):
        new = {}
        for row in rows:  # in line order, as MEMBERS_TO_CREATE
            if row.line not in member_ids and row.member_external_id and row.member_external_id not in new:
                new[row.member_external_id] = _new_member(
                    row.member_external_id,
                    line=row.line,
                    phone=row.member_phone,
                    store_id=row.store_id,
                    joined_at=row.occurred_at,
                    erasure=self.erasure,
                )
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
    return Purchase(
        member_id=row.member_id,
        store_id=row.store_id,
        source=source,
        order_no=row.order_no,
        channel=row.channel,
        occurred_at=row.occurred_at,
        amount=row.amount,
        imported=True,
    )
