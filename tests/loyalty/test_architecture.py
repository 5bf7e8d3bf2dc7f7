"""The house rules, checked by reading the code: apps import only from the floors below them, and only the
points services write the points ledger's tables."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Floors, lowest first: an app may import from its own floor and the floors below (CONVENTIONS: apps depend one
# way; tiers plugs into points' extension points, so it stands above points).
FLOORS = ["loyalty", "members", "points", "tiers", "stored_value", "campaigns", "reports"]
LEDGER_MODELS = {"LedgerEntry", "PointsLot", "PointsAccount", "LotMovement"}
LEDGER_TABLES = ("points_ledgerentry", "points_pointslot", "points_pointsaccount", "points_lotmovement")
WRITE_METHODS = {
    "create",
    "bulk_create",
    "update",
    "bulk_update",
    "delete",
    "get_or_create",
    "update_or_create",
    "save",
}
SQL_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(" + "|".join(LEDGER_TABLES) + r")\b", re.I)
LEDGER_WRITERS = "points/services/"  # the one write path (bench/ and tests/ are not the product)
# The stored-value ledger has its own one write path.
STORED_VALUE_MODELS = {"StoredValueAccount", "StoredValueEntry", "StoredValueLot", "StoredValueMovement"}
STORED_VALUE_TABLES = tuple(f"stored_value_{name.lower()}" for name in sorted(STORED_VALUE_MODELS))
STORED_VALUE_WRITERS = "stored_value/services/"


def product_modules():
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def imported_apps(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]


def upward_imports(path, source):
    floor = FLOORS.index(path.relative_to(ROOT).parts[0])
    return [
        f"{path.relative_to(ROOT)}:{line} imports {app}"
        for line, app in imported_apps(ast.parse(source))
        if app in FLOORS and FLOORS.index(app) > floor
    ]


def ledger_writes(path, source, models=LEDGER_MODELS, sql_write=SQL_WRITE):
    """Calls like `LedgerEntry.objects.create(...)` or `PointsLot.objects.filter(...).update(...)`, and SQL that
    inserts into, updates or deletes from a ledger table."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITE_METHODS:
            base = node.func.value
            while isinstance(base, (ast.Attribute, ast.Call)):
                base = base.func if isinstance(base, ast.Call) else base.value
            if isinstance(base, ast.Name) and base.id in models:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {base.id}….{node.func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and sql_write.search(node.value):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} SQL writes {sql_write.search(node.value)[2]}")
    return found


def test_no_app_imports_from_a_floor_above_it():
    violations = [v for path in product_modules() for v in upward_imports(path, path.read_text())]
    assert violations == []


def test_only_the_points_services_write_the_ledger_tables():
    violations = [
        v
        for path in product_modules()
        if LEDGER_WRITERS not in path.relative_to(ROOT).as_posix()
        for v in ledger_writes(path, path.read_text())
    ]
    assert violations == []


STORED_VALUE_SQL_WRITE = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(" + "|".join(STORED_VALUE_TABLES) + r")\b", re.I
)


def test_only_the_stored_value_services_write_the_stored_value_ledger():
    violations = [
        v
        for path in product_modules()
        if STORED_VALUE_WRITERS not in path.relative_to(ROOT).as_posix()
        for v in ledger_writes(path, path.read_text(), STORED_VALUE_MODELS, STORED_VALUE_SQL_WRITE)
    ]
    assert violations == []


def test_the_stored_value_ledger_check_catches_a_write():
    found = ledger_writes(
        ROOT / "stored_value" / "views.py",
        "StoredValueAccount.objects.filter(pk=1).update(principal_cents=0)\n"
        "cursor.execute('UPDATE stored_value_storedvaluelot SET bonus_remaining = 0')",
        STORED_VALUE_MODELS,
        STORED_VALUE_SQL_WRITE,
    )
    assert len(found) == 2


@pytest.mark.parametrize(
    "source",
    [
        "LedgerEntry.objects.create(member_id=1)",
        "PointsLot.objects.filter(pk=1).update(remaining=0)",
        "PointsAccount.objects.select_for_update().get(pk=1).save()",
        "cursor.execute('UPDATE points_pointsaccount SET available = 0')",
        "cursor.execute('insert into points_ledgerentry (member_id) values (1)')",
    ],
)
def test_the_ledger_check_catches_a_write(source):
    assert len(ledger_writes(ROOT / "members" / "anything.py", source)) == 1


def test_the_layer_check_catches_an_upward_import():
    assert upward_imports(ROOT / "members" / "anything.py", "from points.models import LedgerEntry") == [
        "members/anything.py:1 imports points"
    ]
    assert upward_imports(ROOT / "points" / "anything.py", "from members.models import Member") == []
