"""loyalty.batch converts a hot path's INSERT and UPDATE parameters with `prep_save`: for the plain values of
Django's own field classes the backend conversion that `get_db_prep_save` ends with, without its chain of calls;
anything else through get_db_prep_save itself. Here both are compared value by value for every column of every
model, on the test run's database (SQLite or PostgreSQL: psycopg's Int2/Int4/Int8 wrappers on PostgreSQL), and
insert_columns / update_values against the per-column formula they replaced."""

import datetime
import uuid
import warnings
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.db import connection, models
from django.utils import timezone

from loyalty import batch
from members.models import Member, Purchase, PurchaseChannel
from points.models import EntryKind, LedgerEntry, LotStatus, PointsAccount, PointsLot
from tests.factories import MemberFactory, StoreFactory

AWARE = datetime.datetime(2026, 12, 4, 19, 30, 15, 123456, tzinfo=datetime.UTC)
SAMPLES = [
    None,
    0,
    7,
    -3,
    2**40,
    True,
    False,
    "",
    "abc",
    "12",
    "12.30",
    "2026-12-04",
    Decimal("12.30"),
    Decimal("-0.00"),
    Decimal("1E+2"),
    Decimal("NaN"),
    Decimal("Infinity"),
    12.5,
    AWARE,
    AWARE.astimezone(datetime.timezone(datetime.timedelta(hours=8))),
    datetime.datetime(2026, 12, 4, 19, 30),  # naive: a warning and the default zone, as before
    datetime.date(2026, 12, 4),
    EntryKind.EARN,
    LotStatus.AVAILABLE,
    PurchaseChannel.ONLINE,
    [1, "a"],
    {"a": 1},
    uuid.UUID(int=5),
]


def outcome(call, value):
    """(type of the result, its comparable value, warnings' texts) or (the exception's type, its text)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call(value, connection)
        except Exception as exc:  # noqa: BLE001 - the same failure is expected of both
            return ("raised", type(exc), str(exc))
    comparable = getattr(result, "obj", result)  # psycopg's Jsonb wraps the value: compare what it holds
    return (type(result), repr(comparable), [str(w.message) for w in caught])


def every_field():
    return [field for model in apps.get_models() for field in model._meta.concrete_fields]


@pytest.mark.django_db
@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_prep_save_gives_what_get_db_prep_save_gives_for_every_column(value):
    fields = every_field()
    assert len(fields) > 300  # every installed model's columns
    for field in fields:
        expected = outcome(lambda v, c, f=field: f.get_db_prep_save(v, c), value)
        assert outcome(batch.prep_save(field), value) == expected, (field, value)


@pytest.mark.django_db
def test_the_hot_columns_take_the_short_way():
    """Not get_db_prep_save for the plain values of the purchase's columns (else this change does nothing)."""
    for model, name in [
        (Purchase, "member"),
        (Purchase, "store"),
        (Purchase, "amount"),
        (Purchase, "points_awarded"),
        (Purchase, "order_no"),
        (Purchase, "occurred_at"),
        (Purchase, "imported"),
        (PointsAccount, "member"),
        (Member, "id"),
        (PointsAccount, "cap_date"),
    ]:
        field = model._meta.get_field(name)
        prep = batch.prep_save(field)
        assert prep != field.get_db_prep_save, (model, name)
    json_field = LedgerEntry._meta.get_field("breakdown")
    assert batch.prep_save(json_field) == json_field.get_db_prep_save  # a JSON column: Django's own way


class Int(models.IntegerField):
    """A field class of its own that changes how a value is saved: never the short way."""

    def get_prep_value(self, value):
        return super().get_prep_value(value) + 1


def test_a_field_class_of_its_own_keeps_its_conversion():
    field = Int()
    field.set_attributes_from_name("n")
    assert batch.prep_save(field) == field.get_db_prep_save
    assert batch.prep_save(field)(4, connection) == field.get_db_prep_save(4, connection)
    assert int(batch.prep_save(field)(4, connection)) == 5


def old_insert_columns(instance):
    fields = [f for f in instance._meta.concrete_fields if f is not instance._meta.auto_field]
    return [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]


def old_update_values(instance, names):
    fields = [instance._meta.get_field(name) for name in names]
    return [f.get_db_prep_save(f.pre_save(instance, False), connection) for f in fields]


def comparable(params):
    return [(type(p), repr(getattr(p, "obj", p))) for p in params]


@pytest.mark.django_db
def test_insert_and_update_parameters_are_the_old_ones():
    """Including auto_now / auto_now_add columns: they take the time now and set it on the instance."""
    store = StoreFactory()
    member = MemberFactory(home_store=store)
    purchase = Purchase(
        member=member,
        store=store,
        source="client:1",
        order_no="A-1",
        channel=PurchaseChannel.ONLINE,
        occurred_at=AWARE,
        amount=Decimal("129.90"),
    )
    entry = LedgerEntry(
        member=member,
        kind=EntryKind.EARN,
        points=1299,
        available_delta=1299,
        balance_after=1299,
        reason="purchase",
        reference="A-1",
        breakdown=[{"rule": 1, "points": 1299}],
        actor="client:1",
        store_id=store.pk,
        channel="online",
    )
    lot = PointsLot(member=member, points=1299, remaining=1299, status=LotStatus.AVAILABLE, expires_at=AWARE)
    with time_machine.travel(AWARE, tick=False):
        for instance in (purchase, entry, lot):
            expected = comparable(old_insert_columns(instance))
            columns, params = batch.insert_columns(instance)
            assert comparable(params) == expected, type(instance)
            assert len(columns) == len(params)
        assert purchase.created_at == timezone.now()  # auto_now_add set on the instance, as save() does
        account = PointsAccount.objects.get_or_create(member=member)[0]
        account.available, account.cap_date, account.sign_in_streak = 12, datetime.date(2026, 12, 4), 3
        names = ["available", "pending", "cap_date", "last_sign_in", "sign_in_streak", "closed", "updated_at"]
        expected = comparable(old_update_values(account, names))
        assignments, params = batch.update_values(account, names)
        assert comparable(params) == expected
        assert assignments.count("%s") == len(names)
        assert account.updated_at == timezone.now()
