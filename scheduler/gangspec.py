"""Gang specs as documents: a JSON/YAML mapping -> :class:`~scheduler.gang.Gang`, and back.

The schema is documented in ``docs/gang-spec.md``. Every problem in a document is reported at
once with its field path (and its line, for files), as one :class:`GangSpecError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phalanx.scheduler.gang import Gang, GangSpecError, Member, MemberRequest
from phalanx.topology.fields import Problems, Reader, join

OPTIONAL_GANG_FIELDS = (
    "min_members",
    "priority",
    "queue",
    "tenant",
    "required_level",
    "preferred_level",
    "nvlink_group",
    "comm_intensity",
    "submit_time_s",
    "runtime_estimate_s",
)
"""Gang fields with defaults; a document may leave them out."""
GANG_FIELDS = ("name", "members", "request", *OPTIONAL_GANG_FIELDS)
MEMBER_FIELDS = ("name", "count", "request")
REQUEST_AMOUNTS = ("gpus", "gpu_milli", "cpu_milli", "memory_mib")
REQUEST_FIELDS = (
    *REQUEST_AMOUNTS,
    "gpu_products",
    "node_selector",
    "tolerations",
)
MAX_MEMBERS = 100_000
"""Guards against a typo such as ``members: 10000000`` exhausting memory."""


def gang_from_dict(
    doc: object, source: str = "<gang spec>", lines: Mapping[str, int] | None = None
) -> Gang:
    """Build and check a gang from a parsed document; ``lines`` maps field paths to lines."""
    problems = Problems()
    gang = _parse_gang(doc, problems)
    if problems or gang is None:
        located = []
        for p in problems.items:
            line = _line_of(lines or {}, p.path)
            located.append(f"{source}:{line}: {p}" if line else f"{source}: {p}")
        if len(located) == 1:
            raise GangSpecError(located[0])
        raise GangSpecError(f"{source}: {len(located)} problems:\n  " + "\n  ".join(located))
    try:
        gang.validate()
    except GangSpecError as exc:
        raise GangSpecError(f"{source}: {exc}") from None
    return gang


def load_gang_file(path: str | Path) -> Gang:
    """Read a ``.json`` (JSON) or other (YAML) gang file."""
    from phalanx.topology.clusterfile import ClusterFileError, read_document_file

    try:
        parsed = read_document_file(path)
    except ClusterFileError as exc:
        raise GangSpecError(file_problems(exc.source, exc.problems)) from None
    return gang_from_dict(parsed.doc, parsed.source, parsed.lines)


def file_problems(source: str, problems: Sequence[str]) -> str:
    """A file's problems one a line, each naming the file (a read error does not by itself)."""
    return "\n".join(p if p.startswith(source) else f"{source}: {p}" for p in problems)


def gang_to_dict(gang: Gang) -> dict[str, Any]:
    """The document form of ``gang`` (compact when every member asks the same and is named
    ``<gang>-<i>``); ``gang_from_dict(gang_to_dict(g)) == g``."""
    doc: dict[str, Any] = {"name": gang.name}
    first = gang.members[0].request if gang.members else MemberRequest()
    uniform = all(
        m.request == first and m.name == f"{gang.name}-{i}" for i, m in enumerate(gang.members)
    )
    if uniform and gang.members:
        doc["members"] = len(gang.members)
        doc["request"] = _request_to_dict(first)
    else:
        doc["members"] = [
            {"name": m.name, "request": _request_to_dict(m.request)} for m in gang.members
        ]
    defaults = Gang(gang.name, gang.members)
    for name in OPTIONAL_GANG_FIELDS:
        value = getattr(gang, name)
        if value != getattr(defaults, name):
            doc[name] = value
    return doc


def _request_to_dict(request: MemberRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in REQUEST_AMOUNTS:
        if getattr(request, name):
            out[name] = getattr(request, name)
    if request.gpu_products:
        out["gpu_products"] = list(request.gpu_products)
    if request.node_selector:
        out["node_selector"] = dict(request.node_selector)
    if request.tolerations:
        out["tolerations"] = list(request.tolerations)
    return out


def _parse_gang(doc: object, problems: Problems) -> Gang | None:
    r = Reader.of(doc, "", problems)
    if r is None:
        return None
    r.allow_only(GANG_FIELDS)
    name = r.string("name")
    default_request = _parse_request(r.mapping("request", default=None), problems)
    members = _parse_members(r, name or "gang", default_request, problems)
    values = {
        "min_members": r.integer("min_members", 0, minimum=0),
        "priority": r.integer("priority", 0),
        "queue": r.string("queue", "default"),
        "tenant": r.string("tenant", "default"),
        "required_level": r.string("required_level", None),
        "preferred_level": r.string("preferred_level", None),
        "nvlink_group": r.integer("nvlink_group", 0, minimum=0),
        "comm_intensity": r.number("comm_intensity", 1.0, minimum=0.0),
        "submit_time_s": r.number("submit_time_s", 0.0),
        "runtime_estimate_s": r.number("runtime_estimate_s", None, positive=True),
    }
    if problems or name is None or members is None:
        return None
    return Gang(name, members, **values)  # type: ignore[arg-type]


def _parse_members(
    r: Reader, gang: str, default_request: MemberRequest | None, problems: Problems
) -> tuple[Member, ...] | None:
    raw = r.data.get("members")
    if isinstance(raw, int) and not isinstance(raw, bool):
        count = r.integer("members", minimum=1)
        if count is None:
            return None
        if count > MAX_MEMBERS:
            problems.add("members", f"must be at most {MAX_MEMBERS}, got {count}")
            return None
        if default_request is None:
            if not r.has("request"):
                problems.add("request", "is required when members is a count")
            return None
        return tuple(Member(f"{gang}-{i}", default_request) for i in range(count))
    entries = r.items("members")
    if entries is None:
        return None
    if not entries:
        problems.add("members", "must not be empty")
        return None
    members: list[Member] = []
    for i, entry in enumerate(entries):
        e = Reader.of(entry, join("members", i), problems)
        if e is None:
            continue
        e.allow_only(MEMBER_FIELDS)
        name = e.string("name")
        count = e.integer("count", 1, minimum=1)
        request = _parse_request(e.mapping("request", default=None), problems)
        if request is None and not e.has("request"):
            request = default_request
            if request is None:
                problems.add(e.at("request"), "is required (no gang-level request is given)")
        if name is None or count is None or request is None:
            continue
        if count == 1:
            members.append(Member(name, request))
        else:
            members.extend(Member(f"{name}-{k}", request) for k in range(count))
    if len(members) > MAX_MEMBERS:
        problems.add("members", f"must list at most {MAX_MEMBERS} members, got {len(members)}")
    return tuple(members)


def _parse_request(r: Reader | None, problems: Problems) -> MemberRequest | None:
    if r is None:
        return None
    before = len(problems)
    r.allow_only(REQUEST_FIELDS)
    numbers = {name: r.integer(name, 0, minimum=0) for name in REQUEST_AMOUNTS}
    products_raw = r.data.get("gpu_products")
    if isinstance(products_raw, str):
        products: tuple[str, ...] = (products_raw,) if products_raw else ()
    else:
        products = r.string_list("gpu_products")
    selector = r.string_map("node_selector")
    tolerations = r.string_list("tolerations")
    if len(problems) > before:
        return None
    return MemberRequest(
        gpu_products=products,
        node_selector=selector,
        tolerations=tolerations,
        **numbers,  # type: ignore[arg-type]
    )


def _line_of(lines: Mapping[str, int], path: str) -> int | None:
    """The line of ``path`` or of its nearest enclosing field that has one."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("")
