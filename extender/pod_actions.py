"""What the planner asks of pods besides binding them: nominate a planned member's node, evict
the members of a gang it preempts, and requeue the members of a gang whose link hold ended.

**Nomination.** kube-scheduler tries a pod's ``status.nominatedNodeName`` first and offers the
extender exactly that node (``schedule_one.go``, ``evaluateNominatedNode``); since 1.35
(``NominatedNodeNameForExpectation``, beta) that field is how other components tell it where a pod
is expected to go. Writing it does three things for a planned member: the status update moves the
pod out of kube-scheduler's unschedulable queue at once (instead of the 5-minute flush), its next
cycle is offered its planned node and nothing else (so a narrowed offer cannot drop the plan),
and kube-scheduler counts the member's resources as taken on that node for pods of lower or equal
priority while it waits.

**Eviction.** A preempted gang is evicted whole, pod by pod, through the Eviction API, which
honours PodDisruptionBudgets (a refusal is reported back so that the planner gives the victim its
place again).

**Requeue.** A member Phalanx rejected waits in kube-scheduler's unschedulable queue until a
cluster event (a pod leaving, a node changing) or the periodic flush (5 minutes by default) sends
it back. The end of a ``link-hold`` is no such event: in a quiet real cluster a held gang whose
hold ran out was bound 322 s after it was created with a 5 s hold. Writing a condition of the
pod's own status (``phalanx.io/LinkHold``, status False, reason ``HoldEnded``) is one: with it
the gang was bound 0.1 s after the write (kube-scheduler 1.37.2, ``tests/cluster``). It needs
the ``pods/status`` patch the nominations already use.

The planner calls these under its lock, so implementations must not block: the Kubernetes one
queues the calls for a small pool of workers, the recording one (dry-run, tests) just records.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from phalanx.extender.api_retry import CONNECT_TIMEOUT_S
from phalanx.extender.api_workers import ApiWorkers

log = logging.getLogger(__name__)

DEFAULT_ACTION_WORKERS = 8
"""Parallel status patches and evictions: a 64-member gang is nominated in a few round trips."""
ACTION_TIMEOUT_S = 10.0
HTTP_NOT_FOUND = 404
HTTP_TOO_MANY_REQUESTS = 429
"""The Eviction API's answer when a PodDisruptionBudget does not allow the eviction now."""


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


EvictionFailed = Callable[[PodRef, str], None]
"""Called (from a worker thread) when an eviction was refused or failed, with the reason."""


class PodActions(Protocol):
    def nominate(self, pod: PodRef, node: str) -> None:
        """Set the pod's ``status.nominatedNodeName`` to ``node`` ('' clears it)."""
        ...

    def evict(self, pod: PodRef, grace_period_s: int | None) -> None:
        """Evict the pod (Eviction API), with ``grace_period_s`` (None: the pod's own)."""
        ...

    def requeue(self, pod: PodRef, message: str) -> None:
        """Make kube-scheduler try the pod again now: write the ``phalanx.io/LinkHold``
        condition (False, ``HoldEnded``, ``message``) into its status."""
        ...


ACTIONS_KEPT = 10_000
"""Dry-run nominations, evictions and requeues kept (the newest)."""
HOLD_CONDITION = "phalanx.io/LinkHold"
HOLD_ENDED = "HoldEnded"


@dataclass
class RecordingPodActions:
    """Records what would be done (``phalanx serve --dry-run`` and tests), the newest only."""

    nominations: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=ACTIONS_KEPT))
    evictions: deque[tuple[str, int | None]] = field(
        default_factory=lambda: deque(maxlen=ACTIONS_KEPT)
    )

    def nominate(self, pod: PodRef, node: str) -> None:
        self.nominations.append((pod.key, node))

    requeues: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=ACTIONS_KEPT))

    def evict(self, pod: PodRef, grace_period_s: int | None) -> None:
        self.evictions.append((pod.key, grace_period_s))

    def requeue(self, pod: PodRef, message: str) -> None:
        self.requeues.append((pod.key, message))


@dataclass
class PodActionStats:
    nominations: int = 0
    nomination_failures: int = 0
    evictions: int = 0
    evictions_refused: int = 0
    requeues: int = 0
    requeue_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class KubePodActions:
    """Posts nominations and evictions from worker threads (:class:`ApiWorkers`). Nominations
    of one pod coalesce: only the latest node asked for is written."""

    def __init__(
        self,
        api_client: client.ApiClient,
        workers: int = DEFAULT_ACTION_WORKERS,
        timeout_s: float = ACTION_TIMEOUT_S,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.timeout_s = timeout_s
        self.stats = PodActionStats()
        self.on_eviction_failed: EvictionFailed | None = None
        self._workers = ApiWorkers("pod-actions", workers, self._handle)

    def nominate(self, pod: PodRef, node: str) -> None:
        self._workers.submit("nominate", pod.key, (pod, node))

    def evict(self, pod: PodRef, grace_period_s: int | None) -> None:
        self._workers.put("evict", (pod, grace_period_s))

    def requeue(self, pod: PodRef, message: str) -> None:
        self._workers.submit("requeue", pod.key, (pod, message))

    def stop(self) -> None:
        self._workers.stop()

    def _handle(self, kind: str, arg: tuple[PodRef, object]) -> None:
        pod, value = arg
        if kind == "nominate":
            self._nominate(pod, value if isinstance(value, str) else "")
        elif kind == "requeue":
            self._requeue(pod, str(value))
        else:
            self._evict(pod, value if isinstance(value, int) else None)

    def _nominate(self, pod: PodRef, node: str) -> None:
        body = {"status": {"nominatedNodeName": node or None}}
        try:
            self.core.patch_namespaced_pod_status(
                pod.name,
                pod.namespace,
                body,
                _request_timeout=(CONNECT_TIMEOUT_S, self.timeout_s),
            )
            self.stats.nominations += 1
        except ApiException as exc:
            self.stats.nomination_failures += 1
            if exc.status != HTTP_NOT_FOUND:
                log.warning("nominating %s for %r: %s %s", pod.key, node, exc.status, exc.reason)

    def _requeue(self, pod: PodRef, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        condition = {
            "type": HOLD_CONDITION,
            "status": "False",
            "reason": HOLD_ENDED,
            "message": message,
            "lastTransitionTime": now,
        }
        try:
            self.core.patch_namespaced_pod_status(
                pod.name,
                pod.namespace,
                {"status": {"conditions": [condition]}},
                _request_timeout=(CONNECT_TIMEOUT_S, self.timeout_s),
            )
            self.stats.requeues += 1
        except ApiException as exc:
            self.stats.requeue_failures += 1
            if exc.status != HTTP_NOT_FOUND:
                log.warning("requeueing %s: %s %s", pod.key, exc.status, exc.reason)

    def _evict(self, pod: PodRef, grace_period_s: int | None) -> None:
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace),
            delete_options=client.V1DeleteOptions(
                grace_period_seconds=grace_period_s,
                preconditions=client.V1Preconditions(uid=pod.uid) if pod.uid else None,
            ),
        )
        try:
            self.core.create_namespaced_pod_eviction(
                pod.name,
                pod.namespace,
                body,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_S, self.timeout_s),
            )
            self.stats.evictions += 1
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                return  # already gone: what the eviction was for
            self.stats.evictions_refused += 1
            why = f"eviction of {pod.key} refused: {exc.status} {exc.reason}"
            if exc.status == HTTP_TOO_MANY_REQUESTS:
                why = f"eviction of {pod.key} refused by a PodDisruptionBudget"
            log.warning("%s", why)
            if self.on_eviction_failed is not None:
                self.on_eviction_failed(pod, why)
