"""The running gangs one scheduling cycle sees, without copying the caller's.

A cycle hands its policies the gangs that hold resources and appends those it starts, so that
a later gang of the same cycle sees them. It used to copy the caller's sequence for that: a
service that has placed thousands of gangs copied thousands of entries on every request (the
extender's filter), although most cycles start one gang and no policy reads the rest. This view
reads the caller's sequence in place and keeps the started gangs beside it.

Policies also derive figures from the running gangs (usage per queue, their priorities) for
every waiting gang they are asked about; :func:`derived` computes such a figure once per state
of a view and forgets it when the view changes.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from itertools import chain, islice
from typing import Any, TypeVar, overload

from phalanx.scheduler.interfaces import RunningGang

V = TypeVar("V")
TAIL_READ = 8
"""Items this close to the end are read by walking back (what a policy that checks the last
gangs started does), the others from a list made on the first such read."""


T = TypeVar("T")


def derived(running: Sequence[RunningGang], key: Hashable, compute: Callable[[Any], T]) -> T:
    """``compute(running)``, remembered under ``key`` while ``running`` is a view of this module
    that has not changed since (a plain sequence, which may change unseen, is computed every
    time). The result is shared: read it, do not change it."""
    memo: dict[Hashable, Any] | None = getattr(running, "_derived", None)
    if memo is None:
        return compute(running)
    if key not in memo:
        memo[key] = compute(running)
    return memo[key]


class _ReadOnlySequence(Sequence[V]):
    """Indexing as a list reads it (negative from the end, slices as lists); a subclass gives
    the item at a position in ``range(len(self))``."""

    @abstractmethod
    def _at(self, at: int) -> V:
        """The item at ``at``, already checked to lie in ``range(len(self))``."""

    @overload
    def __getitem__(self, index: int) -> V: ...

    @overload
    def __getitem__(self, index: slice) -> list[V]: ...

    def __getitem__(self, index: int | slice) -> V | list[V]:
        if isinstance(index, slice):
            return list(self)[index]
        size = len(self)
        at = index + size if index < 0 else index
        if not 0 <= at < size:
            raise IndexError("index out of range")
        return self._at(at)


class CycleRunning(_ReadOnlySequence[RunningGang]):
    """``base`` (read, never written: the caller must not change it during the cycle)
    followed by the gangs the cycle started; a preemption rewrites it (:meth:`keep`)."""

    def __init__(self, base: Sequence[RunningGang]) -> None:
        self._base = base
        self._started: list[RunningGang] = []
        self._derived: dict[Hashable, Any] = {}

    def append(self, running: RunningGang) -> None:
        self._started.append(running)
        self._derived.clear()

    def keep(self, wanted: Callable[[RunningGang], bool]) -> None:
        """Only the gangs ``wanted`` accepts, in order (the caller's sequence stays as it is)."""
        self._base = [r for r in self if wanted(r)]
        self._started = []
        self._derived.clear()

    def __len__(self) -> int:
        return len(self._base) + len(self._started)

    def _at(self, at: int) -> RunningGang:
        first = len(self._base)
        return self._base[at] if at < first else self._started[at - first]

    def __iter__(self) -> Iterator[RunningGang]:
        return chain(self._base, self._started)

    def __bool__(self) -> bool:
        return bool(self._base) or bool(self._started)

    def __repr__(self) -> str:
        return f"CycleRunning({len(self._base)} running, {len(self._started)} started)"


class ValuesInPlace(_ReadOnlySequence[V]):
    """The values of ``by_key`` as a read-only sequence, in its order, without copying them
    (the extender keeps its plans by ledger key; a cycle reads them all, or only the last
    ones, and a copy per request grew with the plans). The mapping must not change while the
    view is in use: iterating it then raises, as iterating a changed dict does."""

    def __init__(self, by_key: Mapping[object, V]) -> None:
        self._by_key = by_key
        self._listed: list[V] | None = None
        self._derived: dict[Hashable, Any] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[V]:
        return iter(self._by_key.values())

    def __bool__(self) -> bool:
        return bool(self._by_key)

    def _at(self, at: int) -> V:
        back = len(self._by_key) - 1 - at
        if back < TAIL_READ and self._listed is None:
            return next(islice(reversed(self._by_key.values()), back, None))
        if self._listed is None:
            self._listed = list(self._by_key.values())
        return self._listed[at]
