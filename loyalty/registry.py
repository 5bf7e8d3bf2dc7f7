"""Extension points: the one way a lower app learns of higher ones without importing them.

Apps depend one way (loyalty ← members ← points, tiers ← campaigns ← reports). When a lower app must let a higher
one take part in its work (a purchase asks tiers for a multiplier; a freeze must take the points account's lock;
a merge must move the points ledger), the lower app declares an `ExtensionPoint` in its own module and calls what
is registered there; the higher app registers its part in `AppConfig.ready()`. Registration order is
INSTALLED_APPS order, so it is the same in every process.
"""

from collections.abc import Callable, Iterator
from typing import Any


class ExtensionPoint:
    """A named, ordered list of what higher apps plug in (functions, or small objects such as job definitions).

    `keyed=True` makes it a mapping: `register(item, key=...)` under a unique key, `get(key)` finds it."""

    def __init__(self, name: str, doc: str = "", *, keyed: bool = False):
        self.name = name
        self.__doc__ = doc
        self.keyed = keyed
        self._items: list[Any] = []
        self._by_key: dict[str, Any] = {}

    def register(self, item: Any, *, key: str | None = None) -> Any:
        """Add `item` (returned, so this works as a decorator). A keyed point replaces an item of the same key."""
        if self.keyed:
            if key is None:
                raise ValueError(f"{self.name}: a keyed extension point needs a key")
            if key in self._by_key:
                self._items.remove(self._by_key[key])
            self._by_key[key] = item
        elif item in self._items:
            return item  # AppConfig.ready() may run twice in tests: register once
        self._items.append(item)
        return item

    def unregister(self, item: Any) -> None:
        """Take `item` out again (tests that plug in a part for one case)."""
        self._items.remove(item)
        self._by_key = {key: value for key, value in self._by_key.items() if value is not item}

    def get(self, key: str, default: Any = None) -> Any:
        return self._by_key.get(key, default)

    # A keyed point reads and writes like a dict too (so a test can swap an item with monkeypatch.setitem).
    def __getitem__(self, key: str) -> Any:
        return self._by_key[key]

    def __setitem__(self, key: str, item: Any) -> None:
        self.register(item, key=key)

    def __delitem__(self, key: str) -> None:
        self._items.remove(self._by_key.pop(key))

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def keys(self) -> list[str]:
        return sorted(self._by_key)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def call_all(self, *args: Any, **kwargs: Any) -> list[Any]:
        """Call every registered function in order with the same arguments; return their answers."""
        return [function(*args, **kwargs) for function in self]

    def __repr__(self) -> str:
        return f"<ExtensionPoint {self.name}: {len(self._items)} registered>"


Registrar = Callable[[Any], Any]
