"""The gang protocol with an unmodified kube-scheduler: nominations, narrowed offers and the
bind barrier.

- **Nominations** (:mod:`extender.pod_actions`): every planned member that is not on its way to
  bind gets its planned node as ``status.nominatedNodeName``, and gets it again whenever
  kube-scheduler clears it (it does after each failed cycle). The status update wakes the pod,
  and its next cycle offers the extender its planned node alone.
- **Narrowed offers**: kube-scheduler offers a window of nodes (``percentageOfNodesToScore``), a
  nominated node alone, or every feasible node. A member whose planned node is missing keeps its
  place and is told to retry, unless the offer shows that the node really is unusable for it: the
  offer was complete (kube-scheduler searched every node), or it was the nominated-node pass for
  that very node, which kube-scheduler's own filters rejected.
- **Bind barrier**: while no member of a gang is bound, a member's bind waits until every planned
  member has reached bind (:class:`extender.bind_barrier.BindBarrier` does the waiting), so that
  the gang's Bindings are posted together and a gang that cannot complete holds no node.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.extender.masking import Offer
from phalanx.extender.pod_actions import PodRef
from phalanx.extender.records import GangRecord, PodRecord

MIN_FEASIBLE_NODES_TO_FIND = 100
"""kube-scheduler's ``minFeasibleNodesToFind`` (``schedule_one.go``)."""
MIN_FEASIBLE_PERCENTAGE = 5
"""kube-scheduler's ``minFeasibleNodesPercentageToFind``."""
ADAPTIVE_PERCENTAGE_BASE = 50
ADAPTIVE_NODES_PER_PERCENT = 125
"""With ``percentageOfNodesToScore`` unset (0), kube-scheduler searches
``50 - nodes / 125`` per cent of the nodes, at least 5 % and 100 nodes."""
PERCENT = 100


def feasible_nodes_to_find(all_nodes: int, percentage: int) -> int:
    """How many feasible nodes kube-scheduler looks for before it stops filtering
    (``numFeasibleNodesToFind``): an offer that long may be a window of the cluster, a shorter
    one is everything that passed its filters."""
    if all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return all_nodes
    if percentage <= 0:
        percentage = max(
            MIN_FEASIBLE_PERCENTAGE,
            ADAPTIVE_PERCENTAGE_BASE - all_nodes // ADAPTIVE_NODES_PER_PERCENT,
        )
    return max(MIN_FEASIBLE_NODES_TO_FIND, all_nodes * percentage // PERCENT)


def nominated_node_of(pod: dict) -> str:
    return str((pod.get("status") or {}).get("nominatedNodeName") or "")


@dataclass(frozen=True)
class Arrival:
    """A member at the bind barrier: ``complete`` when its gang may bind now."""

    gang_key: str
    complete: bool
    missing: tuple[str, ...] = ()


class ProtocolMixin:
    """Mixed into :class:`extender.planner.Planner`, whose lock the callers hold."""

    # ------------------------------------------------------------------ offers
    def offer_is_complete(self, offer: Offer, pod: dict) -> bool:
        """Did kube-scheduler offer every node that passed its filters? Not for the
        nominated-node pass (one node, tried before the others), nor for a list as long as
        the window kube-scheduler stops at."""
        names = offer.names
        if len(names) == 1 and names[0] == nominated_node_of(pod):
            return False
        all_nodes = self.scheduler_node_count or self.compiled.n_nodes
        window = feasible_nodes_to_find(all_nodes, self.config.percentage_of_nodes_to_score)
        return len(names) < window

    def _planned_node_missing(self, rec: PodRecord, node: str, offer: Offer) -> str:
        """The member is planned on ``node`` and the offer lacks it: '' when the node is
        really unusable for it (re-plan the member), else why it should retry."""
        leaving = self._leaving_on(node)
        if leaving:
            return f"waiting for {len(leaving)} evicted pod(s) to leave node {node}"
        if self._recently_left(node):
            return f"evicted pods just left node {node}; kube-scheduler is yet to see it free"
        if nominated_node_of(rec.pod) == node or self.offer_is_complete(offer, rec.pod):
            return ""
        if len(self.gangs[rec.gang_key].members) == 1:
            return ""  # a lone pod has no gang to stay near: planned again within the offer
        self._nominate(rec, node, force=True)
        return f"planned on node {node}, which this offer left out; nominated it for the next try"

    # ------------------------------------------------------------------ nominations
    def _nominate_plan(self, gang: GangRecord, ledger_key: str, skip: str = "") -> None:
        """Nominate every member of a new plan that is not already on its way to bind (a
        lone pod is not: missing from an offer, it is planned again within it)."""
        if len(gang.members) == 1:
            return
        for m in self.state.holdings[ledger_key].placement.members:
            rec = gang.members.get(m.member)
            if rec is None or m.member == skip or rec.node:
                continue
            if m.member in gang.arrived or m.member in gang.binding:
                continue
            self._nominate(rec, m.node)

    def _nominate(self, rec: PodRecord, node: str, *, force: bool = False) -> None:
        if not force and rec.nominated == node and nominated_node_of(rec.pod) == node:
            return
        rec.nominated = node
        self.actions.nominate(PodRef(rec.namespace, rec.name, rec.uid), node)

    def _keep_nomination(self, rec: PodRecord, seen_before: str) -> None:
        """A watch update of a pending member: nominate its planned node again when someone
        (kube-scheduler, after a failed cycle) cleared or changed the nomination."""
        if rec.node:
            return
        slot = self._slot(rec)
        if slot is None:
            return
        gang = self.gangs[rec.gang_key]
        if rec.name in gang.arrived or rec.name in gang.binding:
            return
        planned, seen = slot[1].node, nominated_node_of(rec.pod)
        if seen != planned and (rec.nominated != planned or seen_before == planned):
            self._nominate(rec, planned, force=True)

    def _unnominate(self, gang: GangRecord, names: set[str]) -> None:
        """Members that lost their place: take back the nomination Phalanx made."""
        for name in names:
            rec = gang.members.get(name)
            if rec is not None and not rec.node and rec.nominated and rec.key in self.pods:
                rec.nominated = ""
                if nominated_node_of(rec.pod):
                    self.actions.nominate(PodRef(rec.namespace, rec.name, rec.uid), "")

    # ------------------------------------------------------------------ bind barrier
    def arrive(self, namespace: str, name: str) -> Arrival:
        """A member reached bind. Its gang is complete when some member is bound already (a
        late member or a retried bind joins a running gang) or every planned member has
        arrived; pods the planner does not hold go straight on (bind sorts them out)."""
        with self.lock:
            rec = self.pods.get(f"{namespace}/{name}")
            if rec is None or rec.node or self._slot(rec) is None:
                return Arrival("", True)
            gang = self.gangs[rec.gang_key]
            gang.arrived[name] = self.clock()
            missing = self._barrier_missing(gang)
            return Arrival(gang.key, not missing, missing)

    def depart(self, namespace: str, name: str) -> None:
        """A member gave up waiting at the barrier (its bind answered with an error)."""
        with self.lock:
            rec = self.pods.get(f"{namespace}/{name}")
            gang = self.gangs.get(rec.gang_key) if rec is not None else None
            if gang is not None:
                gang.arrived.pop(name, None)

    def barrier_missing(self, gang_key: str) -> tuple[str, ...] | None:
        """Members the gang still waits for at the barrier, None when the gang is gone."""
        with self.lock:
            gang = self.gangs.get(gang_key)
            return None if gang is None else self._barrier_missing(gang)

    def _barrier_missing(self, gang: GangRecord) -> tuple[str, ...]:
        if any(p.node for p in gang.members.values()):
            return ()
        planned = sorted(gang.slots)
        quorum = gang.ref.min_member or len(gang.members)
        missing = tuple(n for n in planned if n not in gang.arrived)
        if len(planned) < quorum:
            return (*missing, f"{quorum - len(planned)} unplanned member(s)")
        return missing
