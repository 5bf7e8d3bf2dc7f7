import importlib

import pytest


@pytest.fixture
def default_ladder():
    """Transactional tests start from emptied tables: put back the ladder and policy the migration makes."""
    from django.apps import apps

    importlib.import_module("tiers.migrations.0002_default_ladder").create_ladder(apps, None)
