"""import_members and import_purchases: every row imported, skipped or rejected with its line and reason;
re-runs import nothing twice; points only when asked, and then through the points service."""

import csv
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import translation

from members import imports
from members.models import Member, Purchase
from members.services.membership import REFERRAL_ALPHABET, is_valid_member_no
from points.audit import ledger_mismatches
from points.models import LedgerEntry, PointsAccount
from tests.factories import MemberFactory, StoreFactory

NOW = datetime(2024, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai
PURCHASE_HEADER = "member_external_id,member_phone,order_no,occurred_at,amount,store,channel"
MEMBER_HEADER = "external_id,phone,name,gender,birthday,email,store,joined_at,consent_sms,consent_wechat,consent_email"

PURCHASES = f"""{PURCHASE_HEADER}
M1,,O-1,2024-03-01T10:00:00+08:00,128.50,A001,offline
,13800138000,O-2,2024-03-02 09:30,99,B001,online
M1,,O-3,2024-02-30,10,,
M1,,O-4,2024-03-01,-5,,
M1,,O-5,2024-03-01,abc,,
M1,,O-6,2024-03-01,1.005,,
M1,,O-1,2024-03-03,10,,
NOBODY,,O-7,2024-03-01,10,,
,12345,O-8,2024-03-01,10,,
M1,,O-9,2024-03-01,10,ZZ999,
M1,,,2024-03-01,10,,
M1,,O-10,2024-03-01,0,,
M1,,O-11,1999-12-31,10,,
M1,,O-12,2024-03-01,10,,pos
M1,,O-13,2024-03-01,10
,,O-14,2024-03-01,10,,
M1,,O-15,2024-03-05,"1,200.00",,
M1,,O-16,2024-03-05,0.01,,
"""
PURCHASE_REJECTS = [
    ["4", "invalid occurred_at", "M1", "", "O-3", "2024-02-30", "10", "", ""],
    ["5", "amount must be greater than 0", "M1", "", "O-4", "2024-03-01", "'-5", "", ""],  # neutralised (csv_cells)
    ["6", "invalid amount", "M1", "", "O-5", "2024-03-01", "abc", "", ""],
    ["7", "amount has more than 2 decimals", "M1", "", "O-6", "2024-03-01", "1.005", "", ""],
    ["8", "duplicate of line 2", "M1", "", "O-1", "2024-03-03", "10", "", ""],
    ["9", "unknown member", "NOBODY", "", "O-7", "2024-03-01", "10", "", ""],
    ["10", "invalid member_phone", "", "12345", "O-8", "2024-03-01", "10", "", ""],
    ["11", "unknown store", "M1", "", "O-9", "2024-03-01", "10", "ZZ999", ""],
    ["12", "missing order_no", "M1", "", "", "2024-03-01", "10", "", ""],
    ["13", "amount must be greater than 0", "M1", "", "O-10", "2024-03-01", "0", "", ""],
    ["14", "occurred_at out of range (2000-01-01 to now)", "M1", "", "O-11", "1999-12-31", "10", "", ""],
    ["15", "invalid channel", "M1", "", "O-12", "2024-03-01", "10", "", "pos"],
    ["16", "5 columns, expected 7", "M1", "", "O-13", "2024-03-01", "10"],
    ["17", "missing member_external_id or member_phone", "", "", "O-14", "2024-03-01", "10", "", ""],
    ["18", "invalid amount", "M1", "", "O-15", "2024-03-05", "1,200.00", "", ""],
]


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def member_m1(store_a):
    return MemberFactory(external_id="M1", phone="+8613600136000", home_store=store_a)


@pytest.fixture
def record_purchase(monkeypatch):
    """What points' AppConfig.ready() registers (see test_points_registers_its_purchase_recorder)."""
    from points.services import record_purchase

    monkeypatch.setitem(imports._registry, "record_purchase", record_purchase)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def rejects_of(path):
    with open(path, encoding="utf-8-sig", newline="") as file:
        header, *rows = list(csv.reader(file))
    return header, rows


def run(command, *args):
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


@pytest.mark.parametrize("chunk_rows", [2, imports.CHUNK_ROWS])
def test_purchase_import_lands_good_rows_and_rejects_each_bad_one_with_line_and_reason(
    tmp_path, chunk_rows, member_a, member_m1, store_a, store_b
):
    path = write(tmp_path, "orders.csv", PURCHASES)

    summary = run("import_purchases", path, "--chunk-rows", str(chunk_rows))

    assert summary.startswith(
        "Read 18 rows: 3 purchases imported, 0 skipped (already imported), 15 rejected "
        f"(see {tmp_path / 'orders.rejects.csv'});"
    )
    header, rows = rejects_of(tmp_path / "orders.rejects.csv")
    assert header == ["line", "reason", *PURCHASE_HEADER.split(",")]
    assert rows == PURCHASE_REJECTS
    purchases = {p.order_no: p for p in Purchase.objects.all()}
    assert sorted(purchases) == ["O-1", "O-16", "O-2"]
    first, second, cents = purchases["O-1"], purchases["O-2"], purchases["O-16"]
    assert (first.member, first.store, first.channel, first.source) == (member_m1, store_a, "offline", "import")
    assert first.amount == Decimal("128.50")
    assert first.occurred_at == datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
    assert (second.member, second.store, second.channel) == (member_a, store_b, "online")
    assert second.amount == Decimal("99.00")
    assert second.occurred_at == datetime(2024, 3, 2, 1, 30, tzinfo=UTC)  # 09:30 in the business time zone
    assert (cents.amount, cents.store, cents.channel) == (Decimal("0.01"), None, "offline")
    for purchase in purchases.values():
        assert (purchase.imported, purchase.points_awarded, purchase.currency) == (True, 0, "CNY")
        assert purchase.occurred_at.tzinfo is not None
    assert not LedgerEntry.objects.exists()
    assert not PointsAccount.objects.exists()


def test_a_second_purchase_import_adds_nothing_and_writes_the_same_rejects(tmp_path, member_a, member_m1, store_b):
    path = write(tmp_path, "orders.csv", PURCHASES)
    run("import_purchases", path, "--chunk-rows", "4")
    first_rejects = (tmp_path / "orders.rejects.csv").read_bytes()
    before = list(Purchase.objects.order_by("id").values())

    summary = run("import_purchases", path, "--chunk-rows", "4")

    assert "Read 18 rows: 0 purchases imported, 3 skipped (already imported), 15 rejected" in summary
    assert list(Purchase.objects.order_by("id").values()) == before
    assert (tmp_path / "orders.rejects.csv").read_bytes() == first_rejects


def test_order_numbers_are_scoped_by_source(tmp_path, member_m1):
    path = write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nM1,,O-1,2024-03-01,10,,\n")
    run("import_purchases", path)

    assert "1 purchases imported" in run("import_purchases", path, "--source", "legacy-pos")
    assert sorted(Purchase.objects.values_list("source", "order_no")) == [("import", "O-1"), ("legacy-pos", "O-1")]


@pytest.mark.parametrize("chunk_rows", [1, imports.CHUNK_ROWS])
def test_create_members_creates_unknown_members_by_external_id(tmp_path, chunk_rows, member_a, store_a, store_b):
    path = write(
        tmp_path,
        "orders.csv",
        f"""{PURCHASE_HEADER}
NEW-1,137 0013 7000,N-1,2024-05-02T12:00:00+08:00,50,B001,
NEW-1,13600136000,N-2,2024-05-01T12:00:00+08:00,20,A001,
NEW-2,13800138000,N-3,2024-05-03,30,,
,13900000000,N-4,2024-05-03,30,,
NEW-3,13700137000,N-5,2024-05-04,10,,
""",
    )

    summary = run("import_purchases", path, "--create-members", "--chunk-rows", str(chunk_rows))

    assert summary.startswith(
        "Read 5 rows: 4 purchases imported, 3 members created, 0 skipped (already imported), 1 rejected"
    )
    assert rejects_of(tmp_path / "orders.rejects.csv")[1] == [
        ["5", "unknown member", "", "13900000000", "N-4", "2024-05-03", "30", "", ""]
    ]
    new_1, new_2, new_3 = (Member.objects.get(external_id=f"NEW-{n}") for n in (1, 2, 3))
    # made from her first row: its phone, store and time (not another row's, whichever chunk it is in)
    assert (new_1.phone, new_1.home_store, new_1.channel, new_1.status) == (
        "+8613700137000",
        store_b,
        "import",
        "active",
    )
    assert new_1.joined_at == datetime(2024, 5, 2, 4, 0, tzinfo=UTC)
    assert new_2.phone is None  # the row's phone is member_a's: the new member does not take it
    assert new_3.phone is None  # NEW-1, on an earlier line, has it
    for member in (new_1, new_2, new_3):
        assert is_valid_member_no(member.member_no)
        assert len(member.referral_code) == 8 and set(member.referral_code) <= set(REFERRAL_ALPHABET)
    assert sorted(Purchase.objects.values_list("order_no", "member__external_id")) == [
        ("N-1", "NEW-1"),
        ("N-2", "NEW-1"),
        ("N-3", "NEW-2"),
        ("N-5", "NEW-3"),
    ]

    again = run("import_purchases", path, "--create-members")

    assert again.startswith("Read 5 rows: 0 purchases imported, 4 skipped (already imported), 1 rejected")
    assert Member.objects.count() == 4


def test_without_create_members_an_unknown_external_id_is_rejected_even_if_the_phone_is_known(tmp_path, member_a):
    path = write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nOLD-9,13800138000,X-1,2024-05-03,30,,\n")

    assert "0 purchases imported, 0 skipped (already imported), 1 rejected" in run("import_purchases", path)
    assert rejects_of(tmp_path / "orders.rejects.csv")[1][0][:2] == ["2", "unknown member"]
    assert not Member.objects.filter(external_id="OLD-9").exists()


def test_award_points_records_each_purchase_through_the_points_service(tmp_path, member_m1, store_a, record_purchase):
    path = write(
        tmp_path,
        "orders.csv",
        f"""{PURCHASE_HEADER}
M1,,P-1,2024-05-20T10:00:00+08:00,128.50,A001,
M1,,P-2,2024-05-31T10:00:00+08:00,99.99,,online
M1,,P-3,2024-05-31T10:00:00+08:00,-1,,
""",
    )

    summary = run("import_purchases", path, "--award-points")

    assert summary.startswith("Read 3 rows: 2 purchases imported, 0 skipped (already imported), 1 rejected")
    first, second = Purchase.objects.order_by("order_no")
    assert (first.points_awarded, second.points_awarded) == (128, 99)
    assert first.imported and second.imported
    entries = LedgerEntry.objects.filter(member=member_m1).order_by("id")
    assert [(e.kind, e.points, e.reference, e.actor) for e in entries] == [
        ("earn", 128, "P-1", "import"),
        ("earn", 99, "P-2", "import"),
    ]
    account = PointsAccount.objects.get(member=member_m1)
    assert (account.available, account.pending) == (128, 99)  # P-2's 7-day pending period has not ended
    assert list(ledger_mismatches()) == []

    again = run("import_purchases", path, "--award-points")

    assert again.startswith("Read 3 rows: 0 purchases imported, 2 skipped (already imported), 1 rejected")
    assert LedgerEntry.objects.count() == 2


def test_award_points_rejects_a_frozen_members_purchase_with_the_service_error(tmp_path, store_a, record_purchase):
    MemberFactory(external_id="ICE", status="frozen")
    path = write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nICE,,F-1,2024-05-20,10,,\n")

    assert "0 purchases imported, 0 skipped (already imported), 1 rejected" in run(
        "import_purchases", path, "--award-points"
    )
    assert rejects_of(tmp_path / "orders.rejects.csv")[1][0][:2] == ["2", "member_frozen: The member is frozen."]
    assert not Purchase.objects.exists()


def test_points_registers_its_purchase_recorder(db):
    from points.services import record_purchase

    assert imports._registry.get("record_purchase") is record_purchase


MEMBERS = f"""{MEMBER_HEADER}
E1,138 0013 8001,王芳,female,1990-05-01,wang@example.com,A001,2021-03-04T10:30:00+08:00,yes,0,TRUE
E2,+86 139 0013 9001,,,,,,,,,
E3,13800138000,,,,,,,,,
E4,12345,,,,,,,,,
E1,13700000000,,,,,,,,,
E5,13800138001,,,,,,,,,
E6,,,other,,,,,,,
E7,,,,1990-02-30,,,,,,
E8,,,,,not-an-email,,,,,
E9,,,,,,ZZ999,,,,
E10,,,,,,,yesterday,,,
E11,,,,,,,,maybe,,
,13700000001,,,,,,,,,
EXISTING,13700000002,,,,,,,,,
E12,,张三,MALE,,,,2020-01-01,,,
"""
MEMBER_REJECTS = [
    ["4", "phone already used by another member", "E3", "13800138000", "", "", "", "", "", "", "", "", ""],
    ["5", "invalid phone", "E4", "12345", "", "", "", "", "", "", "", "", ""],
    ["6", "duplicate of line 2", "E1", "13700000000", "", "", "", "", "", "", "", "", ""],
    ["7", "phone already used by line 2", "E5", "13800138001", "", "", "", "", "", "", "", "", ""],
    ["8", "invalid gender", "E6", "", "", "other", "", "", "", "", "", "", ""],
    ["9", "invalid birthday", "E7", "", "", "", "1990-02-30", "", "", "", "", "", ""],
    ["10", "invalid email", "E8", "", "", "", "", "not-an-email", "", "", "", "", ""],
    ["11", "unknown store", "E9", "", "", "", "", "", "ZZ999", "", "", "", ""],
    ["12", "invalid joined_at", "E10", "", "", "", "", "", "", "yesterday", "", "", ""],
    ["13", "invalid consent_sms", "E11", "", "", "", "", "", "", "", "maybe", "", ""],
    ["14", "missing external_id", "", "13700000001", "", "", "", "", "", "", "", "", ""],
]


def test_the_rejects_file_speaks_the_operators_language(tmp_path, member_a, store_a, settings):
    """Under zh-hans, the LANGUAGE_CODE a command or a worker runs with by default (rows are read on a thread of
    their own, which has only the default language), every reason is in Chinese."""
    settings.LANGUAGE_CODE = "zh-hans"
    MemberFactory(external_id="EXISTING", phone="+8613500135000")
    path = write(tmp_path, "members.csv", MEMBERS)

    with translation.override("zh-hans"):
        run("import_members", path)

    assert [row[:2] for row in rejects_of(tmp_path / "members.rejects.csv")[1]] == [
        ["4", "手机号已被其他会员使用"],
        ["5", "phone 无效"],
        ["6", "与第 2 行重复"],
        ["7", "手机号已被第 2 行使用"],
        ["8", "性别无效"],
        ["9", "生日无效"],
        ["10", "邮箱无效"],
        ["11", "未知门店"],
        ["12", "joined_at 无效"],
        ["13", "consent_sms 无效"],
        ["14", "缺少 external_id"],
    ]


@pytest.mark.parametrize("chunk_rows", [3, imports.CHUNK_ROWS])
def test_member_import_normalises_phones_and_rejects_each_bad_row(tmp_path, chunk_rows, member_a, store_a):
    existing = MemberFactory(external_id="EXISTING", phone="+8613500135000")
    path = write(tmp_path, "members.csv", MEMBERS)

    summary = run("import_members", path, "--chunk-rows", str(chunk_rows))

    assert summary.startswith("Read 15 rows: 3 members imported, 1 skipped (already imported), 11 rejected")
    header, rows = rejects_of(tmp_path / "members.rejects.csv")
    assert header == ["line", "reason", *MEMBER_HEADER.split(",")]
    assert rows == MEMBER_REJECTS
    e1, e2, e12 = (Member.objects.get(external_id=external_id) for external_id in ("E1", "E2", "E12"))
    assert (e1.phone, e1.name, e1.gender, e1.birthday, e1.email, e1.home_store) == (
        "+8613800138001",
        "王芳",
        "female",
        date(1990, 5, 1),
        "wang@example.com",
        store_a,
    )
    assert e1.joined_at == datetime(2021, 3, 4, 2, 30, tzinfo=UTC)
    assert (e1.consent_sms, e1.consent_wechat, e1.consent_email) == (True, False, True)
    assert (e2.phone, e2.name, e2.gender, e2.birthday, e2.email, e2.home_store) == (
        "+8613900139001",
        "",
        "unknown",
        None,
        "",
        None,
    )
    assert e2.joined_at == NOW
    assert (e12.phone, e12.name, e12.gender) == (None, "张三", "male")
    assert e12.joined_at == datetime(2019, 12, 31, 16, 0, tzinfo=UTC)  # midnight in the business time zone
    for member in (e1, e2, e12):
        assert (member.channel, member.status, member.referrer) == ("import", "active", None)
        assert is_valid_member_no(member.member_no)
        assert len(member.referral_code) == 8 and set(member.referral_code) <= set(REFERRAL_ALPHABET)
    existing.refresh_from_db()
    assert existing.phone == "+8613500135000"  # an existing member is left as she is
    assert Member.objects.count() == 5


def test_a_second_member_import_adds_nothing_and_writes_the_same_rejects(tmp_path, member_a, store_a):
    MemberFactory(external_id="EXISTING", phone="+8613500135000")
    path = write(tmp_path, "members.csv", MEMBERS)
    run("import_members", path)
    first_rejects = (tmp_path / "members.rejects.csv").read_bytes()
    before = list(Member.objects.order_by("id").values())

    summary = run("import_members", path)

    assert summary.startswith("Read 15 rows: 0 members imported, 4 skipped (already imported), 11 rejected")
    assert list(Member.objects.order_by("id").values()) == before
    assert (tmp_path / "members.rejects.csv").read_bytes() == first_rejects


def test_a_drawn_card_number_that_is_taken_is_drawn_again(tmp_path, monkeypatch, member_a):
    draws = iter([member_a.member_no, member_a.member_no])
    real = imports.rows.generate_member_no
    monkeypatch.setattr(imports, "CHECK_PROCESSES", 0)  # the rows are checked in this process: draws is seen here
    monkeypatch.setattr(imports.rows, "generate_member_no", lambda: next(draws, None) or real())
    path = write(tmp_path, "members.csv", "external_id\nK1\nK2\n")

    assert "2 members imported" in run("import_members", path)
    assert next(draws, None) is None  # both rows were first given the taken number
    numbers = set(Member.objects.filter(external_id__in=["K1", "K2"]).values_list("member_no", flat=True))
    assert len(numbers) == 2 and member_a.member_no not in numbers
    assert all(is_valid_member_no(number) for number in numbers)


def test_the_rejects_file_can_be_chosen_and_a_corrected_one_imported_as_it_is(tmp_path, member_m1):
    path = write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nM1,,O-1,2024-03-01,12.5.0,,\n")
    rejects = tmp_path / "out" / "bad.csv"
    rejects.parent.mkdir()

    run("import_purchases", path, "--rejects", str(rejects))
    header, rows = rejects_of(rejects)
    rows[0][6] = "12.50"  # the clerk corrects the amount
    corrected = tmp_path / "corrected.csv"
    with open(corrected, "w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([header, *rows])

    assert "1 purchases imported" in run("import_purchases", str(corrected))
    assert Purchase.objects.get().amount == Decimal("12.50")


def test_a_gb18030_file_is_read_with_its_encoding(tmp_path, db):
    path = tmp_path / "members.csv"
    path.write_bytes(f"{MEMBER_HEADER}\nG1,,王芳,,,,,,,,\n".encode("gb18030"))

    assert "1 members imported" in run("import_members", str(path), "--encoding", "gb18030")
    assert Member.objects.get(external_id="G1").name == "王芳"
    with pytest.raises(CommandError, match="Unknown encoding"):
        run("import_members", str(path), "--encoding", "klingon")


@pytest.mark.parametrize(
    ("command", "text", "message"),
    [
        ("import_members", "phone,name\n", "Missing column"),
        ("import_members", "external_id,phon\n", r"Unknown column\(s\): phon"),
        ("import_members", "", "empty"),
        ("import_purchases", "order_no,occurred_at,amount\n", "member_external_id or a member_phone column"),
        ("import_purchases", "member_phone,order_no,amount\n", r"Missing column\(s\): occurred_at"),
    ],
)
def test_a_file_without_the_columns_it_needs_is_refused(tmp_path, db, command, text, message):
    with pytest.raises(CommandError, match=message):
        run(command, write(tmp_path, "input.csv", text))


def test_award_points_without_a_registered_recorder_is_refused(tmp_path, monkeypatch, db):
    monkeypatch.delitem(imports._registry, "record_purchase", raising=False)
    with pytest.raises(CommandError, match="No purchase recorder"):
        run("import_purchases", write(tmp_path, "o.csv", f"{PURCHASE_HEADER}\n"), "--award-points")


def test_a_rerun_finishes_an_import_that_died_half_way(tmp_path, monkeypatch, member_m1):
    path = write(
        tmp_path, "orders.csv", PURCHASE_HEADER + "\n" + "".join(f"M1,,R-{n},2024-03-01,{n},,\n" for n in range(1, 7))
    )
    parse = imports.rows._Checks.purchase

    def dies_at_line_6(self, line, values):
        if line == 6:
            raise RuntimeError("killed")
        return parse(self, line, values)

    with monkeypatch.context() as patch:
        patch.setattr(imports.rows._Checks, "purchase", dies_at_line_6)
        with pytest.raises(RuntimeError):
            run("import_purchases", path, "--chunk-rows", "2")
    assert Purchase.objects.count() == 4  # the first two chunks committed

    assert run("import_purchases", path, "--chunk-rows", "2").startswith(
        "Read 6 rows: 2 purchases imported, 4 skipped (already imported), 0 rejected"
    )


def test_the_merge_is_set_based_not_a_query_per_row(tmp_path, member_m1, django_assert_max_num_queries):
    path = write(
        tmp_path, "orders.csv", PURCHASE_HEADER + "\n" + "".join(f"M1,,B-{n},2024-03-01,{n},,\n" for n in range(1, 601))
    )

    with django_assert_max_num_queries(60):
        summary = run("import_purchases", path, "--chunk-rows", "200")

    assert summary.startswith("Read 600 rows: 600 purchases imported")


def test_the_progress_bar_shows_only_on_a_terminal(tmp_path, member_m1):
    path = write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nM1,,T-1,2024-03-01,10,,\n")

    class Terminal(StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    call_command("import_purchases", path, stdout=StringIO(), stderr=terminal)
    assert terminal.getvalue() == f"\r[{'#' * 30}] 100%  1 rows\n"
    call_command("import_purchases", path, stdout=StringIO(), stderr=(pipe := StringIO()))
    assert pipe.getvalue() == ""


@pytest.mark.postgres
def test_postgres_copies_into_staging_tables_that_are_gone_after_the_import(tmp_path, monkeypatch, member_m1):
    staged = []
    stage = imports.postgres._pg_stage
    monkeypatch.setattr(
        imports.postgres, "_pg_stage", lambda cursor, table, *rest: staged.append(table) or stage(cursor, table, *rest)
    )

    run("import_purchases", write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nM1,,S-1,2024-03-01,10,,\n"))

    assert staged == ["import_purchase_stage"]
    assert Purchase.objects.get().order_no == "S-1"
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relpersistence = 't' AND relname LIKE 'import%%'")
        assert cursor.fetchall() == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_imports_of_one_file_import_each_row_once(tmp_path):
    StoreFactory(code="A001")
    MemberFactory(external_id="M1")
    path = write(
        tmp_path,
        "orders.csv",
        PURCHASE_HEADER + "\n" + "".join(f"M1,,C-{n},2024-03-01,{n},A001,\n" for n in range(1, 301)),
    )
    summaries, start = [], threading.Barrier(2)

    def import_once(rejects):
        try:
            start.wait()
            summaries.append(run("import_purchases", path, "--chunk-rows", "50", "--rejects", rejects))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=import_once, args=(str(tmp_path / f"r{n}.csv"),)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Purchase.objects.count() == 300
    counts = [
        [int(word.replace(",", "")) for word in summary.split() if word.replace(",", "").isdigit()]
        for summary in summaries
    ]
    assert len(counts) == 2
    assert sum(c[1] for c in counts) == 300  # imported
    assert sum(c[2] for c in counts) == 300  # skipped by the other


@pytest.mark.postgres
def test_postgres_inserts_in_index_order_with_the_ids_of_the_lines(tmp_path, monkeypatch, store_a):
    first, second = MemberFactory(external_id="M1"), MemberFactory(external_id="M2")
    monkeypatch.setattr(imports.postgres, "INSERT_ROWS", 3)  # one insert after the second chunk, one at the end
    orders = [
        ("M2", "2024-03-05"),
        ("M1", "2024-03-04"),
        ("M2", "2024-03-01"),
        ("M1", "2024-03-02"),
        ("M1", "2024-03-03"),
    ]
    path = write(
        tmp_path,
        "orders.csv",
        PURCHASE_HEADER + "\n" + "".join(f"{who},,I-{n},{day},{n},A001,\n" for n, (who, day) in enumerate(orders, 1)),
    )

    assert run("import_purchases", path, "--chunk-rows", "2").startswith(
        "Read 5 rows: 5 purchases imported, 0 skipped (already imported), 0 rejected"
    )

    by_id = list(Purchase.objects.order_by("id").values_list("order_no", flat=True))
    assert by_id == ["I-1", "I-2", "I-3", "I-4", "I-5"]  # ids drawn in line order, as one insert per chunk draws them
    assert [p.amount for p in Purchase.objects.order_by("id")] == [Decimal(n) for n in range(1, 6)]
    with connection.cursor() as cursor:  # each insert writes its rows in (member, occurred_at) order
        cursor.execute("SELECT order_no FROM members_purchase ORDER BY ctid")
        on_disk = [order_no for (order_no,) in cursor.fetchall()]
    assert on_disk == (
        ["I-4", "I-2", "I-3", "I-1", "I-5"] if first.id < second.id else ["I-3", "I-1", "I-4", "I-2", "I-5"]
    )
