"""Building a scorer with the inputs of the run that uses it, one way for every caller.

The FGD scorers take a seed (their tie-breaking) and a target workload; the simulator knows
both from its trace and seed, the extender from its settings. Building them in one place keeps
the two from scoring the same state differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from phalanx.scheduler.gang import MemberRequest
from phalanx.scheduler.interfaces import PlacementScorer


def build_scorer(
    name: str,
    options: Mapping[str, object],
    seed: int,
    requests: Iterable[MemberRequest] = (),
) -> PlacementScorer:
    """A scorer by name; ``seed`` and the workload of ``requests`` (the default workload when
    there are none) go to the parts that take them, the user's options to all."""
    from phalanx.policies.registry import PolicyOptionError, get_scorer
    from phalanx.policies.scoring.fgd_workload import Workload

    requests = list(requests)
    workload = Workload.from_requests(requests) if requests else Workload.default()
    for extra in ({"seed": seed, "workload": workload}, {"seed": seed}, {"workload": workload}):
        try:
            return get_scorer(name, **{**extra, **options})
        except PolicyOptionError:
            continue
    return get_scorer(name, **options)
