"""Name-keyed registries of strategies (solvers, init schemes, optimizers, ...): one place that maps a
name to its code, and the source of config validation, CLI choices and the Space's menus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import DWFError, unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """``registry[name]`` -> the registered object; an unknown name raises ``UnknownNameError`` listing
    the known ones. Register with ``@registry.register("name")`` or ``registry.add("name", obj)``."""

    def __init__(self, kind: str, items: dict[str, T] | None = None) -> None:
        self.kind, self._items = kind, {}
        for name, item in (items or {}).items():
            self.add(name, item)

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise DWFError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        return lambda item: self.add(name, item)

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            raise unknown(self.kind, name, list(self._items))
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        return tuple(self._items)
