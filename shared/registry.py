"""Registries of named plug-ins: a channel or source name → where its implementation lives.

Both sides read the names (to validate, route and describe) without importing any
implementation; the child imports one by its ``"module:attribute"`` path at first use, so
its start-up stays light and a new plug-in is one module plus one registry line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any


class Names(Sequence[str]):
    """The names in ``registry`` (those ``keep`` accepts), read afresh at each use.

    Schemas and validators built at import keep this view, so an entry registered later
    (a test, a deployment's own plug-in) is seen everywhere at once.
    """

    def __init__(self, registry: Mapping[str, Any], keep: Callable[[Any], bool] | None = None):
        self._registry = registry
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, entry in self._registry.items()
                     if self._keep is None or self._keep(entry))

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(self._names())


def resolve(path: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Resolved(Mapping[str, Any]):
    """``registry``'s names → the implementation each entry's ``attribute`` names, imported lazily."""

    def __init__(self, registry: Mapping[str, Any], attribute: str):
        self._registry = registry
        self._attribute = attribute

    def __getitem__(self, name: str) -> Any:
        return resolve(getattr(self._registry[name], self._attribute))

    def __contains__(self, name) -> bool:  # without importing it
        return name in self._registry

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._registry))

    def __len__(self) -> int:
        return len(self._registry)
