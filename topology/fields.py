"""Typed reads of untrusted documents (cluster files, discovery documents) that collect every
problem with its location instead of stopping at the first.

A location is a path such as ``node_pools[1].count``; readers return ``None`` for a bad or
missing field after recording why, so a validator can carry on and report everything at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MISSING: Any = object()
"""Default marker: the field is required."""
MAX_INTEGER = 2**63 - 1
"""Whole numbers a document may hold: what the compiled int64 arrays store. JSON and YAML read
integers of any length, and one of hundreds of digits cannot even become a float."""


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def join(path: str, key: str | int) -> str:
    """``join("node_pools", 1) -> "node_pools[1]"``, ``join("a", "b") -> "a.b"``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class Problems:
    """The problems found so far, in the order they were found."""

    items: list[Problem] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)


def _type_name(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class Reader:
    """Reads fields of one mapping at ``path``, recording problems in ``problems``."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: Problems) -> None:
        self.data = data
        self.path = path
        self.problems = problems

    @classmethod
    def of(cls, value: object, path: str, problems: Problems) -> Reader | None:
        """A reader for ``value`` if it is a mapping, else ``None`` after recording why."""
        if not isinstance(value, Mapping):
            problems.add(path, f"must be a mapping, got {_type_name(value)}")
            return None
        return cls(value, path, problems)

    def at(self, key: str | int) -> str:
        return join(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data

    def allow_only(self, keys: Iterable[str]) -> None:
        """Record every unknown key (usually a typo) with the list of known ones."""
        known = set(keys)
        for key in self.data:
            if key not in known:
                self.problems.add(
                    self.at(str(key)), f"unknown field; expected one of {', '.join(sorted(known))}"
                )

    def _raw(self, key: str, default: Any) -> tuple[Any, bool]:
        """``(value, present)``; a missing field gives its default (``None`` if required)."""
        if key in self.data and self.data[key] is not None:
            return self.data[key], True
        if default is MISSING:
            self.problems.add(self.at(key), "is required")
            return None, False
        return default, False

    def integer(self, key: str, default: Any = MISSING, minimum: int | None = None) -> int | None:
        value, present = self._raw(key, default)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.add(self.at(key), f"must be an integer, got {_type_name(value)}")
            return None
        if abs(value) > MAX_INTEGER:
            self.problems.add(self.at(key), f"must be within -{MAX_INTEGER}..{MAX_INTEGER}")
            return None
        if minimum is not None and value < minimum:
            self.problems.add(self.at(key), f"must be at least {minimum}, got {value}")
            return None
        return value

    def number(
        self,
        key: str,
        default: Any = MISSING,
        minimum: float | None = None,
        positive: bool = False,
    ) -> float | None:
        value, present = self._raw(key, default)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or _is_nan(value):
            self.problems.add(self.at(key), f"must be a number, got {_type_name(value)}")
            return None
        if (isinstance(value, int) and abs(value) > MAX_INTEGER) or not math.isfinite(value):
            self.problems.add(self.at(key), "must be finite")
            return None
        if positive and value <= 0:
            self.problems.add(self.at(key), f"must be positive, got {value}")
            return None
        if minimum is not None and value < minimum:
            self.problems.add(self.at(key), f"must be at least {minimum}, got {value}")
            return None
        return float(value)

    def string(self, key: str, default: Any = MISSING, non_empty: bool = True) -> str | None:
        value, present = self._raw(key, default)
        if not present:
            return value
        if not isinstance(value, str):
            self.problems.add(self.at(key), f"must be a string, got {_type_name(value)}")
            return None
        if non_empty and not value:
            self.problems.add(self.at(key), "must not be empty")
            return None
        return value

    def boolean(self, key: str, default: Any = MISSING) -> bool | None:
        value, present = self._raw(key, default)
        if not present:
            return value
        if not isinstance(value, bool):
            self.problems.add(self.at(key), f"must be true or false, got {_type_name(value)}")
            return None
        return value

    def choice(self, key: str, options: Iterable[str], default: Any = MISSING) -> str | None:
        allowed = list(options)
        value = self.string(key, default)
        if value is None or value in allowed or key not in self.data:
            return value
        self.problems.add(self.at(key), f"must be one of {', '.join(allowed)}, got {value!r}")
        return None

    def mapping(self, key: str, default: Any = MISSING) -> Reader | None:
        value, present = self._raw(key, default)
        if not present:
            return value
        return Reader.of(value, self.at(key), self.problems)

    def items(self, key: str, default: Any = MISSING) -> list[Any] | None:
        value, present = self._raw(key, default)
        if not present:
            return value
        if not isinstance(value, list):
            self.problems.add(self.at(key), f"must be a list, got {_type_name(value)}")
            return None
        return value

    def string_map(self, key: str) -> dict[str, str]:
        """An optional mapping of strings to strings (labels)."""
        sub = self.mapping(key, default=None)
        if sub is None:
            return {}
        out: dict[str, str] = {}
        for k, v in sub.data.items():
            if isinstance(k, str) and isinstance(v, str):
                out[k] = v
            else:
                self.problems.add(sub.at(str(k)), "keys and values must be strings")
        return out

    def string_list(self, key: str) -> tuple[str, ...]:
        """An optional list of non-empty strings."""
        values = self.items(key, default=None) or []
        out = []
        for i, v in enumerate(values):
            if isinstance(v, str) and v:
                out.append(v)
            else:
                self.problems.add(join(self.at(key), i), "must be a non-empty string")
        return tuple(out)
