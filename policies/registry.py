"""Every policy by name, so the simulator, the extender and the CLI build them the same way.

``get_queue_policy("backfill")``, ``get_scorer("0.7*topology+0.3*fgd", workload=w)``,
``get_preemption_policy("priority+reclaim", quotas=tree)``, ``get_permit("link-hold")``.
Options are the policy's constructor arguments; for a combination each option goes to the
parts that take it, and an option no part takes is an error, as is an unknown name
(:class:`UnknownPolicyError` lists the known ones).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from phalanx.policies.permit.link_hold import LinkHold
from phalanx.policies.preemption.chain import ChainedPreemption, NoPreemption
from phalanx.policies.preemption.guards import EvictionHistory
from phalanx.policies.preemption.priority import PriorityPreemption
from phalanx.policies.preemption.reclaim import FairShareReclaim
from phalanx.policies.preemption.tiresias import TiresiasPreemption
from phalanx.policies.queue.backfill import BackfillPolicy
from phalanx.policies.queue.drf import DrfPolicy
from phalanx.policies.queue.finish_time import FinishTimeFairnessPolicy
from phalanx.policies.queue.quota import QuotaPolicy
from phalanx.policies.queue.simple import FifoPolicy, PriorityPolicy, SjfPolicy
from phalanx.policies.queue.tiresias import LasAlias, TiresiasPolicy
from phalanx.policies.scoring.allocation import BinpackScorer, SpreadScorer
from phalanx.policies.scoring.combined import WeightedScorer
from phalanx.policies.scoring.fgd import FgdScorer
from phalanx.policies.scoring.fgd_baselines import (
    BestFitScorer,
    DotProductScorer,
    GpuClusteringScorer,
    GpuPackingScorer,
    RandomScorer,
)
from phalanx.policies.scoring.fgd_cpu import FgdCpuScorer
from phalanx.policies.scoring.topology import TopologyScorer
from phalanx.scheduler.interfaces import (
    PermitPlugin,
    PlacementScorer,
    PreemptionPolicy,
    QueuePolicy,
)

QUEUE = "queue"
SCORER = "scorer"
PREEMPTION = "preemption"
PERMIT = "permit"
KINDS = (QUEUE, SCORER, PREEMPTION, PERMIT)

_TABLES: dict[str, dict[str, type]] = {
    QUEUE: {
        cls.name: cls
        for cls in (
            FifoPolicy,
            PriorityPolicy,
            SjfPolicy,
            BackfillPolicy,
            DrfPolicy,
            QuotaPolicy,
            LasAlias,
            TiresiasPolicy,
            FinishTimeFairnessPolicy,
        )
    },
    SCORER: {
        cls.name: cls
        for cls in (
            BinpackScorer,
            SpreadScorer,
            TopologyScorer,
            FgdScorer,
            RandomScorer,
            DotProductScorer,
            GpuClusteringScorer,
            GpuPackingScorer,
            BestFitScorer,
            FgdCpuScorer,
        )
    },
    PREEMPTION: {
        cls.name: cls
        for cls in (NoPreemption, PriorityPreemption, FairShareReclaim, TiresiasPreemption)
    },
    PERMIT: {cls.name: cls for cls in (LinkHold,)},
}
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
"""How a boolean option may be written (case-insensitive)."""
_WEIGHTED_TERM = re.compile(
    r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z][a-z0-9-]*)\s*$"
)


class UnknownPolicyError(ValueError):
    """A policy name that is not registered; the message lists the known names."""


class PolicyOptionError(ValueError):
    """An option the named policy does not take, or a malformed combination."""


def list_policies() -> list[tuple[str, str, str]]:
    """(kind, name, one-line description) of every registered policy."""
    return [
        (kind, name, cls.description)
        for kind in KINDS
        for name, cls in sorted(_TABLES[kind].items())
    ]


def get_queue_policy(name: str, **options: Any) -> QueuePolicy:
    return _build(QUEUE, name, options)


def get_scorer(name: str, **options: Any) -> PlacementScorer:
    """One scorer, or a weighted sum such as ``"topology+fgd"`` or ``"0.7*topology+0.3*fgd"``."""
    terms = _parse_terms(name)
    if len(terms) == 1 and terms[0][0] is None:
        return _build(SCORER, terms[0][1], options)
    parts = _split_options(SCORER, [n for _, n in terms], options)
    return WeightedScorer(
        [
            (1.0 if w is None else w, _build(SCORER, n, opts))
            for (w, n), opts in zip(terms, parts, strict=True)
        ]
    )


def get_preemption_policy(name: str, **options: Any) -> PreemptionPolicy:
    """One policy, or a chain such as ``"priority+reclaim"`` (tried in order, sharing one
    eviction history)."""
    names = [n.strip() for n in name.split("+")]
    if len(names) == 1:
        return _build(PREEMPTION, names[0], options)
    history = EvictionHistory()
    parts = _split_options(PREEMPTION, names, options)
    built = []
    for n, opts in zip(names, parts, strict=True):
        if "history" in _option_names(_lookup(PREEMPTION, n)):
            opts = {**opts, "history": history}
        built.append(_build(PREEMPTION, n, opts))
    return ChainedPreemption(built)


def get_permit(name: str, **options: Any) -> PermitPlugin:
    """A Permit plugin by name (``link-hold``)."""
    return _build(PERMIT, name, options)


# ---------------------------------------------------------------------- internals
def _lookup(kind: str, name: str) -> type:
    table = _TABLES[kind]
    if name not in table:
        raise UnknownPolicyError(
            f"unknown {kind} policy {name!r}; known: {', '.join(sorted(table))}"
        )
    return table[name]


def _option_names(cls: type) -> list[str]:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _build(kind: str, name: str, options: Mapping[str, Any]) -> Any:
    cls = _lookup(kind, name)
    accepted = _option_names(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) if accepted else "none"
        raise PolicyOptionError(
            f"{kind} policy {name!r} takes no option {', '.join(map(repr, unknown))} "
            f"(options: {takes})"
        )
    flags = _flag_names(cls)
    options = {k: _flag(kind, name, k, v) if k in flags else v for k, v in options.items()}
    try:
        return cls(**options)
    except TypeError as err:
        raise PolicyOptionError(f"{kind} policy {name!r}: {err}") from None


def _flag_names(cls: type) -> set[str]:
    """Options annotated ``bool`` (annotations are strings under postponed evaluation)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.annotation in (bool, "bool")}


def _flag(kind: str, name: str, option: str, value: Any) -> bool:
    """A boolean option from a command line or config file. Python's truth would take any
    non-empty text (``strict=maybe``) as true and silently change the run, so only the usual
    spellings are accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise PolicyOptionError(
        f"{kind} policy {name!r}: option {option!r} must be true or false "
        f"({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)}), got {value!r}"
    )


def _split_options(kind: str, names: list[str], options: Mapping[str, Any]) -> list[dict[str, Any]]:
    accepted = [set(_option_names(_lookup(kind, n))) for n in names]
    unused = sorted(set(options) - set().union(*accepted))
    if unused:
        raise PolicyOptionError(
            f"no part of {kind} {'+'.join(names)!r} takes option(s) {', '.join(map(repr, unused))}"
        )
    return [{k: v for k, v in options.items() if k in acc} for acc in accepted]


def _parse_terms(spec: str) -> list[tuple[float | None, str]]:
    terms: list[tuple[float | None, str]] = []
    for raw in spec.split("+"):
        match = _WEIGHTED_TERM.match(raw)
        if match is None:
            raise PolicyOptionError(
                f"cannot read scorer {spec!r}: write names joined by '+', each optionally "
                f"weighted as '0.3*name'"
            )
        weight = match.group("weight")
        if weight is not None and not float(weight) > 0:
            raise PolicyOptionError(f"scorer {spec!r}: weights must be positive")
        terms.append((None if weight is None else float(weight), match.group("name")))
    return terms
