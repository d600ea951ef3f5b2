"""A scorer's say in which fabric domains a multi-node gang uses.

Node scores (:class:`scheduler.interfaces.PlacementScorer`) rank nodes; where a gang has to
span several domains of a level above the node (scalable units under a spine, pods under a
core), the engine asks the scorer too, if it has a view. A scorer that implements
:class:`DomainScorer` and answers with scores has the children filled in its order;
otherwise (``None``, or a scorer without the method, such as ``binpack``) the engine keeps its
own rule, the fewest children (:func:`scheduler.spread.fewest_children`). The choice of the
level itself stays with the placement cost, which every scorer shares: a gang goes to the
lowest level with a domain that holds it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from phalanx.scheduler.gang import MemberRequest
from phalanx.topology.compiled import CompiledCluster


@runtime_checkable
class DomainScorer(Protocol):
    """A scorer that ranks the fabric domains a gang spanning several of them draws from."""

    def score_domains(
        self,
        compiled: CompiledCluster,
        request: MemberRequest,
        domains: np.ndarray,
        room: np.ndarray,
    ) -> np.ndarray | None:
        """float64 scores aligned with ``domains`` (flat domain ids of one level, each with
        ``room`` > 0 items of ``request`` free), higher filled first; None for no view."""
        ...


def domain_scores(
    scorer: object,
    compiled: CompiledCluster,
    request: MemberRequest,
    domains: np.ndarray,
    room: np.ndarray,
) -> np.ndarray | None:
    """The scorer's scores for ``domains``, or None when it has no view on domains."""
    if scorer is None or not isinstance(scorer, DomainScorer):
        return None
    scores = scorer.score_domains(compiled, request, domains, room)
    if scores is None:
        return None
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != domains.shape:
        raise ValueError(
            f"scorer {getattr(scorer, 'name', scorer)!r} gave {scores.shape[0]} domain scores "
            f"for {domains.shape[0]} domains"
        )
    return scores
