"""Gangs (PodGroups): what a job asks for, member by member, and its topology constraints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from phalanx.topology.model import MILLI_PER_GPU


class GangSpecError(ValueError):
    """A gang that can never be valid, whatever the cluster's state (names the field)."""


@dataclass(frozen=True)
class MemberRequest:
    """Resources of one gang member (one pod).

    Either ``gpus`` whole GPUs or a ``gpu_milli`` share (1..999) of one GPU, never both; a
    member with neither is CPU-only.
    """

    gpus: int = 0
    gpu_milli: int = 0
    cpu_milli: int = 0
    memory_mib: int = 0
    gpu_products: tuple[str, ...] = ()
    """Acceptable GPU models (GFD ``nvidia.com/gpu.product`` values); empty means any."""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    """Labels a node must carry, matched exactly."""
    tolerations: tuple[str, ...] = ()
    """Taint keys this member tolerates; a node with any other taint is not eligible."""

    @property
    def is_fractional(self) -> bool:
        return self.gpu_milli > 0

    @property
    def gpu_milli_total(self) -> int:
        """GPU demand in milli-GPU (a whole GPU is 1000)."""
        return self.gpus * MILLI_PER_GPU + self.gpu_milli

    def validate(self, where: str) -> None:
        if self.gpus < 0 or self.gpu_milli < 0 or self.cpu_milli < 0 or self.memory_mib < 0:
            raise GangSpecError(f"{where}: resource requests must not be negative")
        if self.gpus and self.gpu_milli:
            raise GangSpecError(f"{where}: ask for whole 'gpus' or a 'gpu_milli' share, not both")
        if self.gpu_milli >= MILLI_PER_GPU:
            raise GangSpecError(
                f"{where}: gpu_milli {self.gpu_milli} must be below {MILLI_PER_GPU}; "
                "use 'gpus' for whole GPUs"
            )


@dataclass(frozen=True)
class Member:
    name: str
    request: MemberRequest


@dataclass(frozen=True)
class Gang:
    """A group of members placed all-or-nothing.

    ``min_members`` is the quorum: the gang may start with its first ``min_members`` members
    placed (Volcano/coscheduling ``minMember``); by default every member is required.
    ``nvlink_group`` = k > 0 means every k consecutive members (a tensor-parallel group) must sit
    in one NVLink domain (one NVSwitch node, one bridge pair, or one NVL72 clique).
    """

    name: str
    members: tuple[Member, ...]
    min_members: int = 0
    priority: int = 0
    queue: str = "default"
    tenant: str = "default"
    required_level: str | None = None
    """All members inside one domain of this level, or the gang does not start."""
    preferred_level: str | None = None
    """Try one domain of this level first, then widen level by level."""
    nvlink_group: int = 0
    comm_intensity: float = 1.0
    """How much the job's speed depends on its links, 0..1 (LLM ~1, CNN ~0.2)."""
    submit_time_s: float = 0.0
    runtime_estimate_s: float | None = None
    job_class: str = ""
    """What kind of job it is (the application, a recurring job's name); runtime estimates
    learn from the history of their class inside the queue before the whole queue's."""

    @property
    def quorum(self) -> int:
        return self.min_members or len(self.members)

    @property
    def gpu_milli_total(self) -> int:
        return sum(m.request.gpu_milli_total for m in self.members)

    @classmethod
    def uniform(cls, name: str, count: int, request: MemberRequest, **kwargs: object) -> Gang:
        """``count`` identical members named ``<name>-0`` .. ``<name>-<count-1>``."""
        members = tuple(Member(f"{name}-{i}", request) for i in range(count))
        return cls(name, members, **kwargs)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Checks that need no cluster; :func:`scheduler.validation.validate_gang_for_cluster`
        checks the rest (levels, GPU models, node sizes)."""
        where = f"gang {self.name!r}"
        if not self.name:
            raise GangSpecError("gang has no name")
        if not self.members:
            raise GangSpecError(f"{where}: has zero members")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise GangSpecError(f"{where}: member names repeat")
        if not 0 <= self.min_members <= len(self.members):
            raise GangSpecError(
                f"{where}: min_members {self.min_members} is outside 0..{len(self.members)}"
            )
        if self.nvlink_group < 0:
            raise GangSpecError(f"{where}: nvlink_group must not be negative")
        if not 0.0 <= self.comm_intensity <= 1.0:
            raise GangSpecError(f"{where}: comm_intensity must be within 0..1")
        for m in self.members:
            m.request.validate(f"{where} member {m.name!r}")
