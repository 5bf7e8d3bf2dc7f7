"""loyalty.batch.execute_all sends statements without rows in order (on PostgreSQL in one round trip, through one
cursor); a failing one raises Django's error class, as a statement sent alone does, and what its transaction wrote
is rolled back with it."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from loyalty import batch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def table():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE batch_probe (id integer PRIMARY KEY, note varchar(10) NOT NULL)")
    yield "batch_probe"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE batch_probe")


def rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, note FROM batch_probe ORDER BY id")
        return cursor.fetchall()


def test_statements_run_in_order_each_seen(table):
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        batch.execute_all(
            [
                ("INSERT INTO batch_probe (id, note) VALUES (%s, %s)", [1, "a"]),
                ("INSERT INTO batch_probe (id, note) VALUES (%s, %s)", [2, "b"]),
                ("UPDATE batch_probe SET note = %s WHERE id = %s", ["c", 1]),
            ]
        )
    assert rows() == [(1, "c"), (2, "b")]  # the UPDATE after the first INSERT, as sent
    assert [q["sql"].split()[0] for q in captured.captured_queries if "batch_probe" in q["sql"]] == [
        "INSERT",
        "INSERT",
        "UPDATE",
    ]


def test_a_failing_statement_raises_djangos_error_and_rolls_back(table):
    with pytest.raises(IntegrityError), transaction.atomic():
        batch.execute_all(
            [
                ("INSERT INTO batch_probe (id, note) VALUES (%s, %s)", [1, "a"]),
                ("INSERT INTO batch_probe (id, note) VALUES (%s, %s)", [1, "again"]),  # the same key
                ("INSERT INTO batch_probe (id, note) VALUES (%s, %s)", [3, "c"]),
            ]
        )
    assert rows() == []
    batch.execute_all([("INSERT INTO batch_probe (id, note) VALUES (%s, %s)", [4, "d"])])  # the connection works on
    assert rows() == [(4, "d")]
