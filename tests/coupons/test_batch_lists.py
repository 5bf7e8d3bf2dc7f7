"""Issuing to an uploaded list of members as a job: the file's limits, the set-based issue, and the rejects file
with every line that issued nothing and why. Runs on SQLite and, with DATABASE_URL, on PostgreSQL (the unnest
join)."""

import csv
import io
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.db import IntegrityError, transaction

from campaigns import coupon_lists
from campaigns.coupon_codes import new_codes
from campaigns.jobs import run_coupon_batch
from campaigns.models_coupons import Coupon, CouponBatch, CouponBatchLine
from members.models import ErasedIdentity
from members.services.membership import erasure_keys, identity_digest
from tests.coupons.helpers import issue, template
from tests.factories import MemberFactory, StaffUserFactory, TagFactory

pytestmark = pytest.mark.django_db


def upload(client, offer, text, key="L1", name="vip.csv"):
    return client.post(
        f"/api/v1/coupon-templates/{offer.pk}/issue/",
        {"file": SimpleUploadedFile(name, text.encode(), content_type="text/csv")},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def rejects_of(client, batch_id):
    response = client.get(f"/api/v1/coupon-batches/{batch_id}/rejects/")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(body)))


def erase(phone):
    key_id, key = erasure_keys()[0]
    ErasedIdentity.objects.create(kind="phone", digest=identity_digest(key, "phone", phone), key_id=key_id)


@pytest.fixture
def listed(store_a):
    """Five active members (phones +8613900000001..5), one frozen, one at the limit already."""
    members = [MemberFactory(home_store=store_a, phone=f"+861390000000{n}") for n in range(1, 6)]
    frozen = MemberFactory(home_store=store_a, phone="+8613900000006", status="frozen")
    holder = MemberFactory(home_store=store_a, phone="+8613900000007")
    return members, frozen, holder


PHONE_LIST = """name,phone
a,13900000001
b,+86 139 0000 0002
dup,139 0000 0001
nobody,13900000099
bad,12345
frozen,13900000006
holder,13900000007
gone,13900000008
c,13900000003

d,13900000004
e,13900000005
"""


def expected_rejects():
    return [
        ["line", "key", "reason"],
        ["4", "139 0000 0001", "duplicate of line 2"],
        ["5", "13900000099", "unknown member"],
        ["6", "12345", "malformed phone: not a valid phone number"],
        ["7", "13900000006", "member not active (frozen)"],
        ["8", "13900000007", "per-member limit reached"],
        ["9", "13900000008", "erased on the member's request"],
        ["13", "13900000005", "total quantity used up"],
    ]


def test_an_uploaded_list_issues_to_its_members_and_writes_every_rejected_line(
    marketer_api, listed, django_capture_on_commit_callbacks
):
    members, _, holder = listed
    offer = template(total_quantity=5, per_member_limit=1)
    with transaction.atomic():
        issue(offer, holder)  # 1 of 5 taken: 4 left for the list
    erase("+8613900000008")

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(marketer_api, offer, PHONE_LIST)

    assert response.status_code == 202, response.content
    batch = marketer_api.get(f"/api/v1/coupon-batches/{response.json()['id']}/").json()
    assert batch["target"] == {"tag": None, "segment": None, "list": "vip.csv"}
    assert (batch["status"], batch["issued"], batch["rejected"]) == ("done", 4, 7)
    assert (batch["skipped_over_limit"], batch["skipped_over_quantity"]) == (1, 1)
    assert batch["rejects"] == f"/api/v1/coupon-batches/{batch['id']}/rejects/"
    holders = sorted(Coupon.objects.filter(source="bulk").values_list("member_id", flat=True))
    assert holders == sorted(m.pk for m in members[:4])
    offer.refresh_from_db()
    assert offer.issued_count == 5
    assert rejects_of(marketer_api, batch["id"]) == expected_rejects()
    again = upload(marketer_api, offer, PHONE_LIST)
    assert (again.status_code, again.json()["id"]) == (202, batch["id"])
    assert CouponBatch.objects.count() == 1


def test_the_rejects_file_gives_the_reasons_in_the_readers_language(
    marketer_api, listed, django_capture_on_commit_callbacks
):
    """Stored in English (the SQL path writes them), read in Chinese with Accept-Language: zh-hans."""
    _, _, holder = listed
    offer = template(total_quantity=5, per_member_limit=1)
    with transaction.atomic():
        issue(offer, holder)
    erase("+8613900000008")
    with django_capture_on_commit_callbacks(execute=True):
        batch_id = upload(marketer_api, offer, PHONE_LIST).json()["id"]

    response = marketer_api.get(f"/api/v1/coupon-batches/{batch_id}/rejects/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    body = b"".join(response.streaming_content).decode("utf-8-sig")

    assert [row[2] for row in csv.reader(io.StringIO(body))] == [
        "reason",
        "与第 2 行重复",
        "未知会员",
        "phone 格式错误：不是有效的手机号",
        "会员状态非正常（frozen）",
        "已达每人限领数",
        "已应会员要求删除",
        "总数量已发完",
    ]
    assert [row[2] for row in rejects_of(marketer_api, batch_id)] == [row[2] for row in expected_rejects()]


def test_a_list_run_in_small_chunks_gives_the_same_coupons_and_rejects(marketer_api, listed):
    members, _, holder = listed
    offer = template(total_quantity=5, per_member_limit=1)
    with transaction.atomic():
        issue(offer, holder)
    erase("+8613900000008")
    response = upload(marketer_api, offer, PHONE_LIST)  # not run: the job is sent after commit
    first = response.json()["id"]
    assert CouponBatch.objects.get(pk=first).status == "pending"

    result = run_coupon_batch(int(first), chunk_size=2)  # the duplicate (line 4) is in another chunk than line 2

    assert (result["status"], result["issued"], result["rejected"]) == ("done", 4, 7)
    assert sorted(Coupon.objects.filter(source="bulk").values_list("member_id", flat=True)) == sorted(
        m.pk for m in members[:4]
    )
    assert rejects_of(marketer_api, first) == expected_rejects()


def ran(client, capture, offer, text, key):
    with capture(execute=True):
        response = upload(client, offer, text, key=key)
    assert response.status_code == 202, response.content
    return client.get(f"/api/v1/coupon-batches/{response.json()['id']}/").json()


def test_a_list_by_card_number_and_by_external_id(marketer_api, store_a, django_capture_on_commit_callbacks):
    first = MemberFactory(home_store=store_a, external_id="POS-1")
    second = MemberFactory(home_store=store_a, external_id="POS-2")
    offer = template()
    text = f"member_no\n{first.member_no}\n{second.member_no}\n000\n"
    by_card = ran(marketer_api, django_capture_on_commit_callbacks, offer, text, key="c1")
    assert (by_card["issued"], by_card["rejected"]) == (2, 1)
    assert rejects_of(marketer_api, by_card["id"])[1:] == [["4", "000", "unknown member"]]
    no_comma = upload(marketer_api, offer, "External_ID;x\nPOS-2\n", key="c2")  # one column, "external_id;x"
    assert (no_comma.status_code, list(no_comma.json()["errors"])) == (400, ["file"])
    text = "External_ID,x\nPOS-2,1\n,2\n"
    by_id = ran(marketer_api, django_capture_on_commit_callbacks, offer, text, key="c3")
    assert (by_id["issued"], by_id["rejected"]) == (1, 1)
    assert rejects_of(marketer_api, by_id["id"])[1:] == [["3", "", "malformed external id: empty"]]
    assert Coupon.objects.filter(member=second).count() == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,city\nx,y\n", "The first line must name one key column: member_no, phone, external_id (found 0)."),
        ("phone,member_no\n1,2\n", "The first line must name one key column: member_no, phone, external_id (found 2)."),
        ("phone\n\n", "The file lists no member."),
        ("phone\n1\n2\n3\n4\n", "The file lists 4 rows: at most 3 per upload."),
    ],
)
def test_a_list_without_one_key_column_or_with_too_many_rows_is_400(marketer_api, settings, text, message):
    settings.COUPON_LIST_MAX_ROWS = 3
    response = upload(marketer_api, template(), text)
    assert (response.status_code, response.json()["code"], response.json()["errors"]) == (
        400,
        "invalid",
        {"file": [message]},
    )
    assert not CouponBatch.objects.exists()


def test_a_list_not_in_utf8_is_400(marketer_api):
    response = marketer_api.post(
        f"/api/v1/coupon-templates/{template().pk}/issue/",
        {"file": SimpleUploadedFile("gbk.csv", "phone\n张三\n".encode("gbk"))},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="g1",
    )
    assert (response.status_code, response.json()["errors"]) == (400, {"file": ["The file is not UTF-8 text."]})


def test_a_list_over_the_size_limit_is_413(marketer_api, settings):
    settings.COUPON_LIST_MAX_BYTES = 40
    response = upload(marketer_api, template(), "phone\n" + "13900000001\n" * 4)
    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")
    assert response.json()["detail"] == "The file is larger than the 40 bytes allowed: send the list in parts."
    assert not CouponBatch.objects.exists()


def test_only_marketers_upload_a_list_and_a_tag_batch_has_no_rejects_file(clerk_api, marketer_api, listed, store_a):
    offer = template()
    assert upload(clerk_api, offer, "phone\n13900000001\n").status_code == 403
    TagFactory(code="vip")
    tag_batch = marketer_api.post(
        f"/api/v1/coupon-templates/{offer.pk}/issue/", {"tag": "vip"}, format="json", HTTP_IDEMPOTENCY_KEY="t1"
    ).json()
    assert tag_batch["rejects"] is None
    response = marketer_api.get(f"/api/v1/coupon-batches/{tag_batch['id']}/rejects/")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert clerk_api.get(f"/api/v1/coupon-batches/{tag_batch['id']}/rejects/").status_code == 403


def test_a_marketer_uploads_a_list_in_the_admin_and_downloads_its_rejects(
    client, listed, django_capture_on_commit_callbacks
):
    members, _, holder = listed
    client.force_login(StaffUserFactory(username="marketing", role="marketer"))
    offer = template(per_member_limit=1)
    with transaction.atomic():
        issue(offer, holder)
    url = f"/admin/campaigns/coupontemplate/{offer.pk}/issue-list/"
    page = client.get(f"/admin/campaigns/coupontemplate/{offer.pk}/change/")
    assert url.encode() in page.content
    assert client.get(url).status_code == 200

    text = "phone\n13900000001\n13900000002\n13900000007\nx\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": SimpleUploadedFile("a.csv", text.encode()), "key": str(uuid.uuid4())})

    batch = CouponBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/campaigns/couponbatch/{batch.pk}/change/"
    assert (batch.status, batch.issued, batch.rejected, batch.list_name) == ("done", 2, 2, "a.csv")
    assert b"2 rejected lines" in client.get(response["Location"]).content
    download = client.get(f"/admin/campaigns/couponbatch/{batch.pk}/rejects/")
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert rows == [
        ["line", "key", "reason"],
        ["4", "13900000007", "per-member limit reached"],
        ["5", "x", "malformed phone: not a valid phone number"],
    ]
    refused = client.post(url, {"file": SimpleUploadedFile("b.csv", b"name\nx\n"), "key": str(uuid.uuid4())})
    assert refused.status_code == 200
    assert b"The first line must name one key column" in refused.content
    assert CouponBatch.objects.count() == 1


def test_a_clerk_cannot_upload_a_list_in_the_admin(client, clerk_a):
    client.force_login(clerk_a)
    offer = template()
    assert client.get(f"/admin/campaigns/coupontemplate/{offer.pk}/issue-list/").status_code == 403
    assert client.get("/admin/campaigns/couponbatch/").status_code == 403


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("13900000001", "+8613900000001"),
        ("139 0000-0001", "+8613900000001"),
        ("8613900000001", "+8613900000001"),
        ("+86 139 0000 0001", "+8613900000001"),
        ("+44 20 7946 0958", "+442079460958"),
        ("(010) 6552 9988", "+861065529988"),  # a landline: libphonenumber
    ],
)
def test_a_phone_in_a_list_is_read_as_members_store_it(raw, key):
    from campaigns.coupon_lists import key_of
    from members.phone_numbers import normalise_phone

    assert key_of(raw, "phone") == key == normalise_phone(raw)


@pytest.mark.parametrize(
    ("raw", "column", "key"),
    [
        (" 13900000001 ", "phone", "+8613900000001"),
        ("139 0000-0001", "phone", "+8613900000001"),
        ("8613900000001", "phone", "+8613900000001"),
        ("+44 20 7946 0958", "phone", "+442079460958"),
        ("(010) 6552 9988", "phone", None),  # libphonenumber's: read by the job
        ("12345", "phone", None),  # malformed: the job writes the reason
        ("   ", "phone", None),
        ("1" * 33, "phone", None),
        (" 800000000001 ", "member_no", "800000000001"),
        ("8" * 21, "member_no", None),
        ("POS-1", "external_id", "POS-1"),
    ],
)
def test_a_key_written_plainly_is_stored_at_upload_as_key_of_reads_it(raw, column, key):
    assert coupon_lists.plain_key(raw, column) == key
    if key is not None:
        assert coupon_lists.key_of(raw, column) == key


def test_the_database_refuses_a_second_coupon_with_a_code_in_use(listed):
    members, _, _ = listed
    offer = template()
    (coupon,) = issue(offer, members[0])
    copy = Coupon(
        code=coupon.code,
        template=offer,
        member=members[1],
        valid_from=coupon.valid_from,
        valid_until=coupon.valid_until,
        source="api",
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        copy.save()
    assert list(Coupon.objects.filter(code=coupon.code).values_list("member_id", flat=True)) == [members[0].pk]


def test_a_list_chunk_whose_new_code_is_in_use_is_done_again_with_new_codes(marketer_api, listed, monkeypatch):
    members, _, _ = listed
    offer = template(per_member_limit=1)
    (taken,) = issue(template(), members[4])  # another template's coupon: its code is drawn first below
    drawn = []

    def codes_colliding_once(count):
        codes = new_codes(count)
        if not drawn:
            codes[0] = taken.code
        drawn.append(codes)
        return codes

    monkeypatch.setattr("campaigns.jobs.new_codes", codes_colliding_once)
    batch_id = upload(marketer_api, offer, "phone\n13900000001\n13900000002\n13900000003\n").json()["id"]

    result = run_coupon_batch(int(batch_id))

    assert (result["status"], result["issued"], result["rejected"]) == ("done", 3, 0)
    assert len(drawn) == 2  # the chunk rolled back once and drew three new codes
    issued = Coupon.objects.filter(template=offer).order_by("member_id")
    assert list(issued.values_list("member_id", flat=True)) == [m.pk for m in members[:3]]
    assert set(issued.values_list("code", flat=True)) == set(drawn[1])
    assert list(Coupon.objects.filter(code=taken.code).values_list("member_id", flat=True)) == [members[4].pk]
    offer.refresh_from_db()
    assert offer.issued_count == 3


def test_a_list_uploaded_to_a_file_on_disk_is_read_from_it(
    marketer_api, listed, settings, monkeypatch, django_capture_on_commit_callbacks
):
    members, _, _ = listed
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 10  # as a large list: Django spools it to a temporary file
    read = coupon_lists.read_member_list
    uploads = []
    monkeypatch.setattr(coupon_lists, "read_member_list", lambda upload: uploads.append(upload) or read(upload))

    batch = ran(marketer_api, django_capture_on_commit_callbacks, template(), "phone\n13900000001\n13900000002\n", "T")

    assert [type(upload) for upload in uploads] == [TemporaryUploadedFile]
    assert (batch["status"], batch["issued"], batch["rejected"]) == ("done", 2, 0)
    assert sorted(Coupon.objects.values_list("member_id", flat=True)) == [members[0].pk, members[1].pk]


FORMS_LIST = (
    "name,phone\n"
    "a,13900000001\n"
    "b,+86 139 0000 0002\n"
    "c,8613900000003\n"
    "d,139-0000-0004\n"
    "land,(010) 6552 9988\n"
    "a again,+86 (139) 0000 0001\n"
    "land again,010 6552 9988\n"
    "tab,\t13900000006\n"
    "nobody,13900000099\n"
    "nobody again,+8613900000099\n"
    "blank,   \n"
    f"long,{'1' * 40}\n"
    "wide,１３９００００００００５\n"
    "abroad,+1 202 555 0143\n"
    "e,13900000005\n"
    "tab again,13900000006\n"
)
FORMS_REJECTS = [
    (7, "+86 (139) 0000 0001", "duplicate of line 2"),
    (8, "010 6552 9988", "duplicate of line 6"),
    (10, "13900000099", "unknown member"),
    (11, "+8613900000099", "duplicate of line 10"),
    (12, "   ", "malformed phone: empty"),
    (13, "1" * 40, "malformed phone: too long"),
    (14, "１３９００００００００５", "malformed phone: not a valid phone number"),
    (15, "+1 202 555 0143", "unknown member"),
    (17, "13900000006", "duplicate of line 9"),
]


@pytest.mark.parametrize(("chunk_size", "staged_keys"), [(None, True), (3, True), (None, False)])
def test_keys_written_in_every_form_are_read_and_their_duplicates_found_across_forms_and_chunks(
    marketer_api, store_a, chunk_size, staged_keys
):
    """The plain forms' keys are stored as the upload is staged (plain_key), the others (libphonenumber, a tab,
    non-ASCII, empty, too long) read by the job's first step: a duplicate is found whichever way either line was
    read, in any chunk, and an unknown phone's duplicate is a duplicate. A batch staged without keys (before
    plain_key) gives the same."""
    phones = ["+8613900000001", "+8613900000002", "+8613900000003", "+8613900000004", "+861065529988"]
    phones += ["+8613900000006", "+8613900000005"]
    members = [MemberFactory(home_store=store_a, phone=phone) for phone in phones]
    offer = template(per_member_limit=1)
    batch_id = int(upload(marketer_api, offer, FORMS_LIST).json()["id"])
    staged = CouponBatchLine.objects.filter(batch_id=batch_id)
    assert staged.filter(key__isnull=False).count() == 10  # lines 2-5, 9-11, 15-17: the plain forms
    if not staged_keys:
        staged.update(key=None)

    result = run_coupon_batch(batch_id) if chunk_size is None else run_coupon_batch(batch_id, chunk_size=chunk_size)

    assert (result["status"], result["issued"], result["rejected"]) == ("done", 7, 9)
    holders = Coupon.objects.filter(template=offer).order_by("member_id").values_list("member_id", flat=True)
    assert list(holders) == sorted(member.pk for member in members)
    batch = CouponBatch.objects.get(pk=batch_id)
    assert list(batch.rejects.order_by("line").values_list("line", "key", "reason")) == FORMS_REJECTS
    assert not batch.lines.exists()


def test_deleting_a_batch_deletes_its_staged_lines(marketer_api, listed):
    """The staged lines have no foreign key constraint in the database: Django's delete of the batch removes them."""
    batch_id = upload(marketer_api, template(), "phone\n13900000001\n13900000002\n").json()["id"]  # not run
    other = upload(marketer_api, template(), "phone\n13900000003\n", key="L2").json()["id"]
    batch = CouponBatch.objects.get(pk=batch_id)
    assert batch.lines.count() == 2

    batch.delete()

    assert list(CouponBatchLine.objects.values_list("batch_id", "line")) == [(int(other), 2)]
