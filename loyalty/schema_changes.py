"""Helpers for migrations that drop a foreign key's own index on a big table (the key's constraint stays): the index
is found by its column, as Django named it with a hash, and dropped CONCURRENTLY on PostgreSQL (so such a
migration is non-atomic); going back re-creates it under the name given. Used by points 0014 and tiers 0005; keep
the behaviour stable, as applied migrations depend on it."""


def _concurrently(schema_editor):
    return "CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""


def own_index_names(schema_editor, table, column):
    """The column's own index (a foreign key's db_index): single-column, not unique, not partial, named by Django."""
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["unique"]
        and not info.get("primary_key")
        and info["columns"] == [column]
        and name.startswith(f"{table}_{column}_")
    ]


def drop_own_indexes(schema_editor, indexes):
    """Drop the own index of each (table, column, name) whatever its name."""
    concurrently = _concurrently(schema_editor)
    for table, column, _name in indexes:
        for name in own_index_names(schema_editor, table, column):
            schema_editor.execute(f'DROP INDEX {concurrently} IF EXISTS "{name}"')


def restore_own_indexes(schema_editor, indexes):
    """Re-create the own index of each (table, column, name) under that name."""
    concurrently = _concurrently(schema_editor)
    for table, column, name in indexes:
        schema_editor.execute(f'CREATE INDEX {concurrently} IF NOT EXISTS "{name}" ON "{table}" ("{column}")')
