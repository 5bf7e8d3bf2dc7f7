"""How a hot path's statements reach the database: on PostgreSQL several in one round trip (psycopg's pipeline
mode for reads that do not depend on each other; one data-modifying CTE for writes), on other databases the same
statements one after the other. Only the transport differs: the SQL text (but PostgreSQL's row locks) and the
Python that decides what to write are the same on every database, so a differential test can run both ways on
PostgreSQL and compare what they wrote (tests/points/test_fast_path.py).

`FAST_PATH` switches the PostgreSQL transport off (that test does; so can an operator, to compare)."""

import datetime
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models

FAST_PATH = True


def fast():
    """Whether this connection takes the one-round-trip forms (PostgreSQL, FAST_PATH on)."""
    return FAST_PATH and connection.vendor == "postgresql"


def for_update(sql, *, no_key=False):
    """The row lock clause where the database has one (SQLite locks the whole database on the first write)."""
    if connection.vendor != "postgresql":
        return sql
    return f"{sql} FOR NO KEY UPDATE" if no_key else f"{sql} FOR UPDATE"


@contextmanager
def pipelined():
    """Inside it, on PostgreSQL, statements are sent without waiting for their answers, and the first answer read
    flushes them all (with the transaction's BEGIN): one round trip for a run of independent reads. Elsewhere a
    plain block. Read every Pending's rows before the block ends or after, in the order sent."""
    if not fast():
        with nullcontext():
            yield
        return
    connection.ensure_connection()
    # The driver's errors raised by the pipeline itself (entering it, or the sync when it ends: a session
    # terminated while its statements were in flight) are mapped as Django maps a cursor's (django.db's
    # OperationalError, InterfaceError, ...), so the API answers 503 for them as for any statement's.
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield


class Pending:
    """A statement that returns rows, sent (maybe not answered yet); `rows()` waits for its rows, `models()` makes
    model instances of them as the ORM would (its database converters applied). Read every Pending sent inside
    `pipelined()`, in the order sent."""

    def __init__(self, sql, params, model=None, fields=None, columns=None):
        self.model, self.fields, self._columns = model, fields, columns
        self.cursor = connection.cursor()
        self.cursor.execute(sql, params)
        self._rows = None

    def rows(self):
        if self._rows is None:
            self._rows = self.cursor.fetchall()
            self.cursor.close()
        return self._rows

    def one(self):
        rows = self.rows()
        return rows[0] if rows else None

    def values(self):
        """The rows with each column converted as the ORM converts its field (`fields`, in the SELECT's order)."""
        return [tuple(values) for values in self._converted()]

    def models(self):
        names, _ = self._columns_info()
        alias = connection.alias
        return [self.model.from_db(alias, names, values) for values in self._converted()]

    def _columns_info(self):
        if self._columns is None:
            self._columns = _columns(self.model, self.fields)
        return self._columns

    def _converted(self):
        _, converters = self._columns_info()
        if not converters:  # no column needs converting (most on PostgreSQL): the driver's values as they are
            yield from self.rows()
            return
        for row in self.rows():
            values = list(row)
            for index, functions, column in converters:
                value = values[index]
                for function in functions:
                    value = function(value, column, connection)
                values[index] = value
            yield values


_columns_cache = {}


def _columns(model, fields):
    """(attribute names, [(index, converters, column)] for the columns that have converters) of these fields of
    `model` on this connection's database: what the ORM works out per query, worked out once per process (it
    depends on the models and the database backend only)."""
    key = (connection.alias, connection.vendor, model, tuple(fields))
    found = _columns_cache.get(key)
    if found is None:
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            functions = (*connection.ops.get_db_converters(column), *field.get_db_converters(connection))
            if functions:
                converters.append((index, functions, column))
        found = _columns_cache[key] = ([f.attname for f in fields], converters)
    return found


_select_cache = {}
SELECT_CACHE_SIZE = 512


def select(model, where, params, *, fields=None, order_by="", limit=None, lock=False):
    """SELECT the columns of `fields` (names; default: every column) of `model` WHERE `where` (its own columns,
    unqualified), sent now: a Pending. `lock`: True for FOR UPDATE, "no_key" for FOR NO KEY UPDATE (PostgreSQL).
    The statement's text and its columns' converters are worked out once per process for each shape (the first
    SELECT_CACHE_SIZE shapes)."""
    key = (connection.alias, connection.vendor, model, where, tuple(fields or ()), order_by, limit, lock)
    found = _select_cache.get(key)
    if found is None:
        meta = model._meta
        fields = [meta.get_field(name) for name in fields] if fields else list(meta.concrete_fields)
        quote = connection.ops.quote_name
        sql = f"SELECT {', '.join(quote(f.column) for f in fields)} FROM {quote(model._meta.db_table)} WHERE {where}"  # noqa: S608 - our columns
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        if lock:
            sql = for_update(sql, no_key=lock == "no_key")
        found = (sql, fields, _columns(model, fields))
        if len(_select_cache) < SELECT_CACHE_SIZE:  # a job's `IN (...)` of every chunk size is not kept for ever
            _select_cache[key] = found
    sql, fields, columns = found
    return Pending(sql, params, model, fields, columns)


def send(sql, params, *, model=None, fields=None):
    """A statement that returns rows (a SELECT, an INSERT ... RETURNING), sent now: a Pending. With `model` and
    `fields` (names, one per column), `values()` converts its columns as the ORM would."""
    meta = model._meta if model else None
    return Pending(sql, params, model, [meta.get_field(name) for name in fields] if fields else None)


def execute(sql, params):
    """A statement without rows, outside `pipelined()`: its row count."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def execute_all(statements):
    """Statements without rows ((sql, params) each), in order: on PostgreSQL in one round trip (pipeline mode; an
    error raises when the block ends, as a statement's would), elsewhere one after the other."""
    if not fast():
        for sql, params in statements:
            execute(sql, params)
        return
    # One cursor for all of them: their results are not read (each replaces the one before on the cursor), and a
    # failed statement raises when the pipeline syncs at the block's end, as it did with a cursor each.
    with connection.cursor() as cursor, pipelined():
        for sql, params in statements:
            cursor.execute(sql, params)


def combined(items):
    """Data-modifying statements ((sql, params) or (sql, params, name): a named one is read by a later one, as
    `deferring()` keeps them) as one statement: the last as the main statement, the others as its CTEs (c<n> or
    their name). (sql, params)."""
    *ctes, (last_sql, last_params, *name) = items
    if name:  # a named statement is read by a later one: never last, but be safe
        ctes, last_sql, last_params = [*ctes, (last_sql, last_params, *name)], "SELECT 1", []
    if not ctes:
        return last_sql, list(last_params)
    sql = "WITH " + ", ".join(f"{cte[2] if len(cte) > 2 else f'c{n}'} AS ({cte[0]})" for n, cte in enumerate(ctes))
    return f"{sql} {last_sql}", [*(value for cte in ctes for value in cte[1]), *last_params]


def _stock(field, base, *names):
    """Whether `field`'s class has `base`'s own methods `names` (no subclass changed how a value is saved)."""
    return isinstance(field, base) and all(getattr(type(field), name) is getattr(base, name) for name in names)


_SAVE_METHODS = ("get_db_prep_save", "get_db_prep_value", "get_prep_value", "to_python")
_INTEGER_FIELDS = (
    models.IntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveSmallIntegerField,
    models.PositiveBigIntegerField,
)


def prep_save(field):
    """A function of (value, connection) giving what `field.get_db_prep_save(value, connection)` gives, for a hot
    path's writes: for the plain values of Django's own field classes (int, str, bool, aware datetime, date,
    Decimal, None) the backend conversion those methods end with, without their chain of calls; for anything else
    (another type, a field class of its own) get_db_prep_save itself. tests/loyalty/test_batch_prep.py compares
    both."""
    generic = field.get_db_prep_save
    if isinstance(field, models.ForeignKey) and type(field).get_db_prep_save is models.ForeignKey.get_db_prep_save:
        target = prep_save(field.target_field)

        def foreign_key(value, connection):
            if value is None:
                return None
            return target(value, connection) if type(value) is int else generic(value, connection)

        return foreign_key
    if _stock(field, models.AutoField, *_SAVE_METHODS) or _stock(field, models.BigAutoField, *_SAVE_METHODS):

        def auto(value, connection):
            if type(value) is int or value is None:
                return connection.ops.validate_autopk_value(value)
            return generic(value, connection)

        return auto
    if _stock(field, models.BigIntegerField, *_SAVE_METHODS) or (
        type(field) in _INTEGER_FIELDS and _stock(field, models.IntegerField, *_SAVE_METHODS)
    ):
        internal_type = field.get_internal_type()

        def integer(value, connection):
            if type(value) is int or value is None:
                return connection.ops.adapt_integerfield_value(value, internal_type)
            return generic(value, connection)

        return integer
    if type(field) is models.CharField and _stock(field, models.CharField, *_SAVE_METHODS):
        return lambda value, connection: value if type(value) is str or value is None else generic(value, connection)
    if type(field) is models.BooleanField and _stock(field, models.BooleanField, *_SAVE_METHODS):
        return lambda value, connection: value if type(value) is bool or value is None else generic(value, connection)
    if type(field) is models.DateTimeField and _stock(field, models.DateTimeField, *_SAVE_METHODS):

        def aware_datetime(value, connection):  # a naive one takes the generic way (its warning, the default zone)
            if value is None or (type(value) is datetime.datetime and value.utcoffset() is not None):
                return connection.ops.adapt_datetimefield_value(value)
            return generic(value, connection)

        return aware_datetime
    if type(field) is models.DateField and _stock(field, models.DateField, *_SAVE_METHODS):

        def date(value, connection):
            if type(value) is datetime.date or value is None:
                return connection.ops.adapt_datefield_value(value)
            return generic(value, connection)

        return date
    if type(field) is models.DecimalField and _stock(field, models.DecimalField, *_SAVE_METHODS):
        digits, places = field.max_digits, field.decimal_places

        def decimal(value, connection):
            if type(value) is Decimal and value.is_finite():
                return connection.ops.adapt_decimalfield_value(value, digits, places)
            return generic(value, connection)

        return decimal
    return generic


def _saver(field, *, add):
    """A function of (instance, connection) giving `field.get_db_prep_save(field.pre_save(instance, add),
    connection)`."""
    prep = prep_save(field)
    if type(field).pre_save is models.Field.pre_save or (
        isinstance(field, models.DateField)
        and type(field).pre_save in (models.DateField.pre_save, models.DateTimeField.pre_save)
        and not field.auto_now
        and not (field.auto_now_add and add)
    ):  # pre_save only reads the attribute
        attname = field.attname
        return lambda instance, connection: prep(getattr(instance, attname), connection)
    return lambda instance, connection: prep(field.pre_save(instance, add), connection)


_update_fields_cache = {}


def update_values(instance, field_names):
    """`(assignments, params)` for an UPDATE of these fields of `instance` as save(update_fields=...) writes them
    (pre_save first: auto_now columns take the time now)."""
    db = connections[DEFAULT_DB_ALIAS]  # what `connection` stands for in this thread, looked up once, not per field
    key = (db.vendor, type(instance), tuple(field_names))
    found = _update_fields_cache.get(key)
    if found is None:  # the statement's assignments and each column's conversion: worked out once per process
        meta = instance._meta
        fields = [meta.get_field(name) for name in field_names]
        quote = db.ops.quote_name
        found = (", ".join(f"{quote(f.column)} = %s" for f in fields), [_saver(f, add=False) for f in fields])
        if len(_update_fields_cache) < SELECT_CACHE_SIZE:
            _update_fields_cache[key] = found
    assignments, savers = found
    return assignments, [save(instance, db) for save in savers]


_insert_fields_cache = {}


def insert_columns(instance, exclude=()):
    """(columns, params) of an INSERT of `instance` as save(force_insert=True) writes it (pre_save first)."""
    db = connections[DEFAULT_DB_ALIAS]  # what `connection` stands for in this thread, looked up once, not per field
    key = (db.vendor, type(instance), tuple(exclude))
    found = _insert_fields_cache.get(key)
    if found is None:  # the model's columns and each one's conversion: worked out once per process
        meta = instance._meta
        fields = [f for f in meta.concrete_fields if f is not meta.auto_field and f.name not in exclude]
        found = _insert_fields_cache[key] = (
            [db.ops.quote_name(f.column) for f in fields],
            [_saver(f, add=True) for f in fields],
        )
    columns, savers = found
    return list(columns), [save(instance, db) for save in savers]


_deferred = ContextVar("batch.deferred", default=None)


@contextmanager
def deferring():
    """Inside it, on PostgreSQL, `insert` of a row whose primary key is already known (not generated: nothing to
    wait for) and `update` are not sent but kept, in order, in the list it yields: the service sends them as
    data-modifying CTEs of its last statement (one round trip less each). Use it only around code after which
    nothing reads those rows before that statement. Elsewhere (or FAST_PATH off) it yields None and changes
    nothing."""
    if not fast():
        yield None
        return
    statements = []
    token = _deferred.set(statements)
    try:
        yield statements
    finally:
        _deferred.reset(token)


def insert(instance):
    """INSERT `instance` as save(force_insert=True) does (pre_save first; it gets its id), as one raw statement on
    PostgreSQL: no ORM query built and compiled on a hot path. Elsewhere save(force_insert=True). For models with
    no save() of their own and no signal receivers (none of the hot path's have either). Inside `deferring()`, a
    row with a given primary key is kept for the service's last statement."""
    if not fast():
        instance.save(force_insert=True)
        return instance
    meta = instance._meta
    quote = connection.ops.quote_name
    columns, params = insert_columns(instance)
    deferred = _deferred.get()
    if deferred is not None and meta.auto_field is None and instance.pk is not None:
        deferred.append(
            (
                f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 - our table and columns
                f"VALUES ({', '.join(['%s'] * len(params))})",
                params,
            )
        )
        instance._state.adding, instance._state.db = False, connection.alias
        return instance
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) "  # noqa: S608 - our table and columns
        f"VALUES ({', '.join(['%s'] * len(params))}) RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (instance.pk,) = cursor.fetchone()
    instance._state.adding, instance._state.db = False, connection.alias
    return instance


def update(instance, field_names):
    """UPDATE these fields of `instance` (a saved row) as save(update_fields=...) does (pre_save first: auto_now
    columns take the time now), as one raw statement on PostgreSQL; elsewhere save(update_fields=...). Like save(),
    DatabaseError when no row was updated (not checked for an update kept by `deferring()`: use it for rows the
    service holds locked)."""
    if not fast():
        instance.save(update_fields=field_names)
        return
    meta = instance._meta
    quote = connection.ops.quote_name
    assignments, params = update_values(instance, field_names)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608 - ours
    deferred = _deferred.get()
    if deferred is not None:  # a row the service holds locked: it is there when its last statement runs
        deferred.append((sql, [*params, instance.pk]))
        return
    if execute(sql, [*params, instance.pk]) == 0:
        raise DatabaseError("Save with update_fields did not affect any rows.")


def insert_linked(parent, child, link, *, defer=False):
    """INSERT `parent`, then `child` pointing at it by its field `link`, in one statement on PostgreSQL (a
    data-modifying CTE); elsewhere save(force_insert=True) each. Both get their ids, as after save().

    `defer`: inside `deferring()` (PostgreSQL), the two INSERTs are kept as two named CTEs for the service's last
    statement instead, and neither gets its id: for a caller that reads neither id (nor the rows) afterwards."""
    if not fast():
        parent.save(force_insert=True)
        setattr(child, link, parent)
        child.save(force_insert=True)
        return
    quote = connection.ops.quote_name
    parent_columns, parent_params = insert_columns(parent)
    child_columns, child_params = insert_columns(child, exclude=[link])
    link_column = quote(child._meta.get_field(link).column)
    parent_table, child_table = quote(parent._meta.db_table), quote(child._meta.db_table)
    deferred = _deferred.get() if defer else None
    if deferred is not None:
        name = f"linked{len(deferred)}"
        deferred.append(
            (
                f"INSERT INTO {parent_table} ({', '.join(parent_columns)}) "  # noqa: S608 - our tables
                f"VALUES ({', '.join(['%s'] * len(parent_params))}) RETURNING id",
                parent_params,
                name,
            )
        )
        deferred.append(
            (
                f"INSERT INTO {child_table} ({', '.join(child_columns)}, {link_column}) "  # noqa: S608 - ours
                f"VALUES ({', '.join(['%s'] * len(child_params))}, (SELECT id FROM {name}))",
                child_params,
            )
        )
        setattr(child, link, parent)
        return
    sql = (
        f"WITH parent AS (INSERT INTO {parent_table} ({', '.join(parent_columns)}) "  # noqa: S608 - our tables
        f"VALUES ({', '.join(['%s'] * len(parent_params))}) RETURNING id) "
        f"INSERT INTO {child_table} ({', '.join(child_columns)}, {link_column}) "
        f"VALUES ({', '.join(['%s'] * len(child_params))}, (SELECT id FROM parent)) "
        f"RETURNING id, {link_column}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*parent_params, *child_params])
        child_id, parent_id = cursor.fetchone()
    parent.pk, child.pk = parent_id, child_id
    setattr(child, link, parent)
    for instance in (parent, child):
        instance._state.adding, instance._state.db = False, connection.alias
