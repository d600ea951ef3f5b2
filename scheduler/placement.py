"""What the placement engine answers: where each member goes and why, or why not."""

from __future__ import annotations

from dataclasses import dataclass

_new_object = object.__new__


@dataclass(frozen=True)
class MemberPlacement:
    member: str
    node: str
    node_index: int
    gpus: tuple[int, ...]
    """GPU indices on the node (one index for a fractional share)."""
    gpu_milli: int
    """Share taken of each GPU in ``gpus``: 1000 for whole GPUs."""
    cpu_milli: int = 0
    memory_mib: int = 0
    rank: int = 0


@dataclass(frozen=True)
class CostBreakdown:
    """Terms of the placement cost (lower is better), so users can see why a gang went where
    it did. ``communication`` is the bottleneck link cost weighted by the gang's communication
    intensity, ``fragmentation`` the capacity the choice strands, ``misalignment`` rail/NUMA
    penalties, ``latency`` network hops."""

    communication: float = 0.0
    fragmentation: float = 0.0
    misalignment: float = 0.0
    latency: float = 0.0

    @classmethod
    def of(
        cls, communication: float, fragmentation: float, misalignment: float, latency: float
    ) -> CostBreakdown:
        """The same breakdown as the constructor's, built without the frozen ``__init__``'s
        four ``object.__setattr__`` calls: every placement priced builds one, and for one
        member that was a quarter of its pricing."""
        cost = _new_object(cls)
        fields = cost.__dict__
        fields["communication"] = communication
        fields["fragmentation"] = fragmentation
        fields["misalignment"] = misalignment
        fields["latency"] = latency
        return cost

    @property
    def total(self) -> float:
        return self.communication + self.fragmentation + self.misalignment + self.latency

    def as_dict(self) -> dict[str, float]:
        return {
            "communication": self.communication,
            "fragmentation": self.fragmentation,
            "misalignment": self.misalignment,
            "latency": self.latency,
            "total": self.total,
        }


@dataclass(frozen=True)
class Placement:
    gang: str
    members: tuple[MemberPlacement, ...]
    level: str
    """Lowest level with one domain holding every placed member."""
    domain: str
    cost: CostBreakdown
    solver: str = "fast"
    optimal: bool | None = None
    """For the exact solver: whether CP-SAT proved the cost optimal."""

    @property
    def node_names(self) -> list[str]:
        return sorted({m.node for m in self.members})


@dataclass(frozen=True)
class Unplaceable:
    """The gang does not fit now; ``constraint`` names what failed, ``level`` where."""

    gang: str
    reason: str
    constraint: str = "capacity"
    level: str | None = None
    proven: bool = False
    """True when the exact solver proved that no placement exists."""


PlacementResult = Placement | Unplaceable
