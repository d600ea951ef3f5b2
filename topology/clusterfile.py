"""Cluster files: a YAML or JSON description of node pools and fabric levels -> :class:`Cluster`.

The schema is documented in ``docs/cluster-file.md``. Loading validates the whole file and
raises one :class:`ClusterFileError` listing every problem with its location
(``file:line: node_pools[1].count: must be at least 1``), so a user fixes a file in one pass.

This module reads files and reports problems; the document itself is read by
:mod:`topology.clusterfile_parser` (pools, node shapes and fabric levels in their own modules)
and name patterns by :mod:`topology.name_patterns`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from phalanx.topology.clusterfile_parser import ClusterFileParser
from phalanx.topology.field_lines import DocumentShapeError, field_lines
from phalanx.topology.fields import Problems
from phalanx.topology.model import Cluster
from phalanx.topology.name_patterns import PATTERN_VARIABLES, NamePattern, PatternError

__all__ = [
    "PATTERN_VARIABLES",
    "ClusterFileError",
    "DocumentFile",
    "NamePattern",
    "PatternError",
    "ProblemEntry",
    "cluster_from_document",
    "load_cluster_file",
    "read_document_file",
]


@dataclass(frozen=True)
class ProblemEntry:
    """One problem, structured for machine-readable output (``topology validate --json``):
    its line (``None`` when unknown), field path (``""`` for the whole file) and message."""

    line: int | None
    field: str
    message: str


class ClusterFileError(ValueError):
    """A cluster file that cannot be used; ``problems`` lists every one with its location,
    ``entries`` the same problems as :class:`ProblemEntry` records."""

    def __init__(
        self, source: str, problems: list[str], entries: list[ProblemEntry] | None = None
    ) -> None:
        self.source = source
        self.problems = problems
        self.entries = (
            entries if entries is not None else [ProblemEntry(None, "", p) for p in problems]
        )
        super().__init__(
            _named(source, problems[0])
            if len(problems) == 1  # one problem, one line
            else f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems)
        )


def _named(source: str, problem: str) -> str:
    return problem if problem.startswith(source) else f"{source}: {problem}"


# ---------------------------------------------------------------------------- entry points
@dataclass(frozen=True)
class DocumentFile:
    """A parsed YAML/JSON file and where each of its fields sits."""

    source: str
    stem: str
    doc: Any
    lines: dict[str, int]
    duplicate_keys: list[str]


def read_document_file(path: str | Path) -> DocumentFile:
    """Parse a ``.json`` file as JSON and anything else as YAML, keeping field line numbers."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterFileError(source, [f"cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise _unreadable(source, None, message) from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        doc = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
        lines, duplicates = _yaml_positions(text)
    except json.JSONDecodeError as exc:
        raise _unreadable(source, exc.lineno, f"invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]  # one line
        line = mark.line + 1 if mark else None
        raise _unreadable(source, line, f"invalid YAML: {problem}") from None
    except DocumentShapeError as exc:
        raise _unreadable(source, exc.line, str(exc)) from None
    except RecursionError:
        raise _unreadable(source, None, f"nested too deeply to read as {kind}") from None
    except ValueError as exc:  # a number too long to convert, a date that does not exist
        raise _unreadable(source, None, f"invalid {kind}: {exc}") from None
    return DocumentFile(source, path.stem, doc, lines, duplicates)


def _unreadable(source: str, line: int | None, message: str) -> ClusterFileError:
    where = f"{source}:{line}" if line else source
    return ClusterFileError(source, [f"{where}: {message}"], [ProblemEntry(line, "", message)])


def load_cluster_file(path: str | Path) -> Cluster:
    """Read and validate a ``.yaml``/``.yml``/``.json`` cluster file."""
    parsed = read_document_file(path)
    return cluster_from_document(
        parsed.doc,
        source=parsed.source,
        default_name=parsed.stem,
        lines=parsed.lines,
        duplicate_keys=parsed.duplicate_keys,
    )


def cluster_from_document(
    doc: object,
    source: str = "<document>",
    default_name: str = "cluster",
    lines: Mapping[str, int] | None = None,
    duplicate_keys: list[str] | None = None,
) -> Cluster:
    """Build a cluster from an already parsed document (a dict), validating all of it."""
    problems = Problems()
    for path in duplicate_keys or ():
        problems.add(path, "is given twice")
    cluster = ClusterFileParser(problems, default_name).parse(doc)
    if problems or cluster is None:
        where = dict(lines or {})
        located = [(_line_of(where, p.path), p) for p in problems.items]
        located.sort(key=lambda item: item[0] or 0)
        formatted = [f"{source}:{line}: {p}" if line else f"{source}: {p}" for line, p in located]
        entries = [ProblemEntry(line, p.path, p.message) for line, p in located]
        raise ClusterFileError(source, formatted, entries)
    return cluster


# ---------------------------------------------------------------------------- locations
def _yaml_positions(text: str) -> tuple[dict[str, int], list[str]]:
    """Line of every field path in a YAML (or JSON) text, and paths given twice; raises
    :class:`DocumentShapeError` for aliases without bound (:mod:`topology.field_lines`)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}, []
    return field_lines(root)


_LAST_STEP = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")


def _line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    probe = path
    while probe and probe not in lines:
        shorter = _LAST_STEP.sub("", probe)
        probe = "" if shorter == probe else shorter
    return lines.get(probe) if probe else None
