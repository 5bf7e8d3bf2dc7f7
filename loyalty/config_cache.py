"""A per-process cache of the small, rarely changed tables the hot paths read on every request (points policy,
earning rules, growth policies, the tier ladder, client apps' keys): all rows of a table at once, for up to
CONFIG_CACHE_SECONDS. A save or delete in this process clears its table at once and again when it commits (a read
in between may load the old rows); other processes see a change within that many seconds (marketers' edits take
effect within half a minute, everywhere)."""

import threading
import time

from django.conf import settings
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

_lock = threading.Lock()
_entries: dict[str, tuple[float, object]] = {}
_watched: set = set()


def cached(key, load, *, models=()):
    """The value `load()` returns, cached under `key`; saving or deleting any of `models` clears it."""
    ttl = getattr(settings, "CONFIG_CACHE_SECONDS", 30)
    now = time.monotonic()
    entry = _entries.get(key)
    if entry is not None and now - entry[0] < ttl:
        return entry[1]
    value = load()
    with _lock:
        _entries[key] = (now, value)
        for model in models:
            _watch(model, key)
    return value


def _watch(model, key):
    if (model, key) in _watched:
        return
    _watched.add((model, key))

    def clear(sender, using=None, **kwargs):
        _entries.pop(key, None)
        # Until the write commits, another thread of this process may load the old rows again: forget them then too.
        transaction.on_commit(lambda: _entries.pop(key, None), using=using)

    post_save.connect(clear, sender=model, weak=False, dispatch_uid=f"config-cache:{key}:save")
    post_delete.connect(clear, sender=model, weak=False, dispatch_uid=f"config-cache:{key}:delete")
    m2m_changed.connect(clear, sender=model, weak=False, dispatch_uid=f"config-cache:{key}:m2m")


def clear_all():
    """Forget everything (tests: tables are emptied and refilled between them)."""
    with _lock:
        _entries.clear()
