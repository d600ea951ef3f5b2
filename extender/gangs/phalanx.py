"""A plain Phalanx gang for users without any group controller: the ``phalanx.io/gang``
annotation names the gang and ``phalanx.io/gang-size`` gives its quorum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.extender import annotations as keys
from phalanx.extender.gangs.ref import GangRef, GroupLookup, positive_int, seconds

SOURCE = "phalanx"


def match(pod: Mapping[str, Any], lookup: GroupLookup) -> GangRef | None:
    meta = pod["metadata"]
    annotations = meta.get("annotations") or {}
    name = annotations.get(keys.GANG)
    if not name:
        return None
    namespace = meta.get("namespace") or "default"
    size = positive_int(annotations.get(keys.GANG_SIZE))
    if size is None:
        return GangRef(
            SOURCE,
            namespace,
            name,
            None,
            problem=f"gang {namespace}/{name}: annotation {keys.GANG_SIZE} is "
            f"{annotations.get(keys.GANG_SIZE)!r}, expected a positive integer",
        )
    return GangRef(
        SOURCE,
        namespace,
        name,
        size,
        timeout_s=seconds(annotations.get(keys.GANG_TIMEOUT_SECONDS)),
    )
