"""One registry mechanism for every kind of plug-in: models, degradation ops, defect kinds, baselines,
detectors.

Adding a plug-in is one class or function and one decorator::

    from apir.evaluate.baselines import BASELINES

    @BASELINES.register("median")
    def median(image, sigma): ...

and the CLI's choices, error messages ("unknown baseline 'x' (available: ...)") and docs listings come
from the registry, so nothing else has to be edited. Names are unique per kind; ``meta`` holds
per-entry facts a kind needs (a defect kind's minimum visible size, a model variant's defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from apir.errors import ApirError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def add(self, name: str, entry: T, **meta: Any) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        self._meta[name] = meta
        return entry

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated class or function as ``name``."""

        def decorator(entry: T) -> T:
            return self.add(name, entry, **meta)

        return decorator

    def get(self, name: object) -> T:
        """The entry called ``name``; a one-line ApirError naming the available ones otherwise."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        raise ApirError(f"unknown {self.kind} {name!r} (available: {', '.join(self._entries)})")

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())
