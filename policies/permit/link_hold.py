"""Hold a gang for faster links, at most a multiple of what the slower links would cost it.

A multi-node gang that fits only across a slower fabric level (across scalable units, through
an oversubscribed spine) runs longer for its whole life; a gang that waits for a unit to free
up loses the wait. Slurm makes the user choose (``--switches=N@max-time``: wait up to
max-time for N leaf switches); Kueue's ``podset-required-topology`` waits without bound. This
plugin chooses per gang with the ski-rental rule: it holds a gang while it has been held less
than what the slower placement would cost it,

    hold while  held_s < share * estimate_s * (link_stretch(intensity, r) - 1)

with ``r`` the placement's bottleneck link cost over the cost on the empty cluster (where the
gang would go if nothing else ran), ``intensity`` the gang's communication intensity, the
stretch model of :mod:`scheduler.link_stretch`, and ``estimate_s`` its run time estimate
(:mod:`policies.estimates`: its own, else its class's and queue's history). ``held_s`` counts
from the first cycle in which it fitted only on slower links (``since_fit``; with
``since_fit=false`` from its submission, so time spent waiting for any room counts too).
Waiting at most ``share`` times the loss never costs more than ``1 + share`` times the better
of "go now" and "wait for the unit", whatever the future brings (rent-or-buy: ``share = 1`` is
its break-even rule, 2x; the default is 2, see :data:`DEFAULT_SHARE`); ``max_hold_s`` caps it,
as Slurm's ``max_switch_wait`` does. With ``look_ahead`` (the default)
it holds only when the running gangs' expected ends free a domain of the gang's best level
before the hold would end: no waiting for a unit nothing is expected to free. The nodes that
look-ahead counts on (free now in that domain, or freed by the ends it waited for) are kept
for the held gang (``keep_nodes``, on by default): other gangs are placed around them while
they fit elsewhere, and on them only when they fit nowhere else, so single-GPU work arriving
meanwhile does not take the unit back one GPU at a time (kube-scheduler counts a nominated
pod's resources as taken on its node in the same way). A gang whose
placement is no slower than its best is never held, so single-GPU and single-node work is
untouched.

While it holds, other gangs go ahead (the hold is not a block: strict FIFO does not stop
behind it), and the placement is not reserved: the gang takes whatever a later cycle finds.
The simulator asks :meth:`LinkHold.next_change_s` when the earliest hold ends and runs a cycle
then; the extender re-plans on kube-scheduler's next retry of a member. The time a hold counts
from is kept in memory: a restarted or newly leading extender starts it again.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
from phalanx.policies.estimates import DEFAULT_RUNTIME_ESTIMATE_S, RuntimeEstimator
from phalanx.scheduler.cost import bottleneck_comm_cost
from phalanx.scheduler.empty_cluster import EmptyCluster
from phalanx.scheduler.gang import Gang
from phalanx.scheduler.interfaces import QueueContext
from phalanx.scheduler.link_stretch import link_stretch
from phalanx.scheduler.placement import Placement
from phalanx.topology.compiled import CompiledCluster

DEFAULT_SHARE = 2.0
"""Hold for at most twice the estimated loss. The break-even point of rent-or-buy (1) bounds
the worst case at 2x the better of "go now" and "wait"; 2 bounds it at 3x, but the look-ahead
already drops the holds nothing is expected to end, and with the nodes kept a hold mostly ends
in the unit it waited for, so the longer hold paid on every measured variant (declared run
times, time limits, history; two sets of 20 seeds: lower slowdown, mean JCT no worse than with
1 in five of six; docs/policies.md)."""
DEFAULT_MAX_HOLD_S = 86_400.0
"""No gang is held longer than a day, whatever its estimate says."""
KEPT_NAMES_SHOWN = 8
"""Kept nodes named in a hold's reason; the rest are counted."""
MAX_TRACKED_GANGS = 65_536
"""Gangs whose first slow fit is remembered (far more than wait at once)."""


class LinkHold:
    """``link-hold``: hold a gang whose placement now crosses slower links than its best,
    for at most ``share`` (2) times the run time those links would cost it (module
    docstring)."""

    name = "link-hold"
    description = (
        "Hold a gang that fits only on slower links, for at most share (2) times the run "
        "time they would cost it (share, max_hold_s)."
    )

    def __init__(
        self,
        share: float = DEFAULT_SHARE,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
        default_runtime_s: float = DEFAULT_RUNTIME_ESTIMATE_S,
        look_ahead: bool = True,
        since_fit: bool = True,
        keep_nodes: bool = True,
    ) -> None:
        self.share = _number("share", share)
        self.max_hold_s = _number("max_hold_s", max_hold_s, allow_inf=True)
        self.look_ahead = look_ahead
        self.since_fit = since_fit
        self.keep_nodes = keep_nodes
        self._first_slow_s: OrderedDict[str, float] = OrderedDict()
        """Gang name -> when it first fitted only on slower links (the hold counts from it)."""
        self.estimates = RuntimeEstimator(default_runtime_s)
        self._empty = EmptyCluster()
        self._held_until: dict[str, float] = {}
        """Gang name -> when its current hold ends (for :meth:`next_change_s`)."""
        self._kept: dict[str, np.ndarray] = {}
        """Gang name -> the nodes kept for it while it is held (look-ahead's)."""
        self._kept_union: dict[str | None, np.ndarray] = {}
        """Held gang's name -> the nodes kept for every other held gang (None: for all of
        them, what every gang not held is kept from), made when first asked for and dropped
        whenever a hold starts or ends, or the earliest kept hold's end passes."""
        self._kept_union_until_s = math.inf

    # ------------------------------------------------------------------ the plugin
    def permit(self, gang: Gang, placement: Placement, ctx: QueueContext) -> str | None:
        self._held_until.pop(gang.name, None)
        self._unkeep(gang.name)
        compiled = ctx.state.compiled
        now_cost = bottleneck_comm_cost(compiled, placement.members)
        if now_cost <= 0:
            return None
        best, best_level = self.best_case(gang, compiled)
        if best <= 0 or now_cost <= best:
            self._first_slow_s.pop(gang.name, None)
            return None
        ratio = now_cost / best
        estimate_s = self.estimates.estimate_s(gang)
        loss_s = estimate_s * (link_stretch(gang.comm_intensity, ratio) - 1.0)
        hold_s = min(self.share * loss_s, self.max_hold_s)
        since_s = self._first_slow(gang.name, ctx.now_s) if self.since_fit else gang.submit_time_s
        waited_s = ctx.now_s - since_s
        if waited_s >= hold_s:
            return None
        until_s = since_s + hold_s
        if self.look_ahead:
            room_s, nodes = self.room_expected(gang, compiled, best_level, ctx)
            if room_s > until_s:
                return None
            if self.keep_nodes:
                self._kept[gang.name] = nodes
                self._kept_union.clear()
        self._held_until[gang.name] = until_s
        origin = "it first fitted only on them" if self.since_fit else "its submission"
        kept = self._kept.get(gang.name)
        return (
            f"held for faster links: its links now cost {ratio:.2f}x those it gets on an empty "
            f"cluster, about {loss_s:.0f} s of its estimated {estimate_s:.0f} s run; it waits "
            f"up to {hold_s:.0f} s for better, counted from {origin}"
            + ("" if kept is None or not kept.size else _kept_text(compiled, kept))
        )

    def kept_nodes(self, gang: Gang, now_s: float) -> np.ndarray | None:
        """The nodes kept for the gangs held now other than ``gang`` (the Permit plugin's
        :meth:`scheduler.interfaces.PermitPlugin.kept_nodes`); None when there are none."""
        if not self._kept:
            return None
        if now_s >= self._kept_union_until_s:
            self._kept_union.clear()
        if not self._kept_union:
            ends = (self._held_until.get(name, -math.inf) for name in self._kept)
            self._kept_union_until_s = min((e for e in ends if e > now_s), default=math.inf)
        key = gang.name if gang.name in self._kept else None  # a held gang: the others' only
        union = self._kept_union.get(key)
        if union is None:
            parts = [
                nodes
                for name, nodes in self._kept.items()
                if name != key and self._held_until.get(name, -math.inf) > now_s
            ]
            union = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)
            self._kept_union[key] = union
        return union if union.size else None

    def _unkeep(self, gang: str) -> None:
        if self._kept.pop(gang, None) is not None:
            self._kept_union.clear()

    def _first_slow(self, gang: str, now_s: float) -> float:
        """When ``gang`` first fitted only on slower links; the oldest of more than
        :data:`MAX_TRACKED_GANGS` are forgotten (a gang the caller never reports again)."""
        since_s = self._first_slow_s.setdefault(gang, now_s)
        if len(self._first_slow_s) > MAX_TRACKED_GANGS:
            self._first_slow_s.popitem(last=False)
        return since_s

    def record_completion(self, gang: Gang, runtime_s: float) -> None:
        """Learn run times (:class:`scheduler.interfaces.RuntimeObserver`)."""
        self.estimates.record_completion(gang, runtime_s)
        self._first_slow_s.pop(gang.name, None)

    def next_change_s(self, ctx: QueueContext) -> float | None:
        """When the earliest hold of a gang still waiting ends (None: nothing held). Holds
        that ended are dropped here, also those of gangs no later cycle asked about (they no
        longer fit), so the answer is always in the future."""
        waiting = {g.name for g in ctx.pending}
        for name, until_s in list(self._held_until.items()):
            if name not in waiting or until_s <= ctx.now_s:
                del self._held_until[name]
                self._unkeep(name)
        for name in [n for n in self._first_slow_s if n not in waiting]:
            del self._first_slow_s[name]
        return min(self._held_until.values(), default=None)

    # ------------------------------------------------------------------ the best case
    def best_case(self, gang: Gang, compiled: CompiledCluster) -> tuple[float, int]:
        """Bottleneck link cost of ``gang`` placed on the empty cluster and the fabric level
        that placement spans (0, 0 when it would not fit there), once per shape and cluster."""
        return self._empty.best_case(gang, compiled)

    def room_expected(
        self, gang: Gang, compiled: CompiledCluster, level: int, ctx: QueueContext
    ) -> tuple[float, np.ndarray]:
        """When some domain of ``level`` is expected to have room for the gang's quorum, from
        the running gangs' expected ends (:meth:`RuntimeEstimator.expected_end_s`), and the
        nodes of that domain counted for it (free by then); ``inf`` and no nodes when not even
        all of them ending would make room. Room is counted in members of the gang's largest
        whole-GPU size per node, so a multi-node gang waits for whole nodes; a GPU that shares
        of several gangs use is counted free when the first of them ends (an estimate: the
        look-ahead only decides whether holding is worth it)."""
        member_gpus = max(max(m.request.gpus for m in gang.members), 1)
        free = compiled.free_gpu_count.astype(np.int64)
        domain_of = compiled.node_domain[level]
        domains = len(compiled.domain_gpu_capacity)
        room = np.bincount(domain_of, weights=free // member_gpus, minlength=domains)
        if room.max() >= gang.quorum:
            return ctx.now_s, self._counted(free, member_gpus, domain_of, int(room.argmax()))
        ends = []
        for running in ctx.running:
            end_s = self.estimates.expected_end_s(running, ctx.now_s)
            for member in running.placement.members:
                ends.append((end_s, member.node_index, len(member.gpus)))
        ends.sort()
        gpu_count = compiled.gpu_count
        for end_s, node, gpus in ends:
            before = free[node] // member_gpus
            free[node] = min(free[node] + gpus, gpu_count[node])  # shares of one GPU free it once
            gained = free[node] // member_gpus - before
            if gained:
                domain = domain_of[node]
                room[domain] += gained
                if room[domain] >= gang.quorum:
                    return end_s, self._counted(free, member_gpus, domain_of, int(domain))
        return math.inf, np.empty(0, dtype=np.int64)

    @staticmethod
    def _counted(
        free: np.ndarray, member_gpus: int, domain_of: np.ndarray, domain: int
    ) -> np.ndarray:
        """The nodes of ``domain`` with room for at least one member in ``free``."""
        return np.flatnonzero((domain_of == domain) & (free >= member_gpus))


def _kept_text(compiled: CompiledCluster, nodes: np.ndarray) -> str:
    """The kept nodes by name for the hold's reason (the first :data:`KEPT_NAMES_SHOWN`)."""
    names = [compiled.node_names[n] for n in nodes[:KEPT_NAMES_SHOWN].tolist()]
    more = nodes.size - len(names)
    return f"; nodes kept for it: {', '.join(names)}" + (f" and {more} more" if more else "")


def _number(option: str, value: object, allow_inf: bool = False) -> float:
    """An option as a float >= 0; a clear error naming it otherwise."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not (number >= 0 and (allow_inf or math.isfinite(number))):
        raise ValueError(f"permit 'link-hold': {option} must be a number >= 0, got {value!r}")
    return number
