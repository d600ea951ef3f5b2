"""``phalanx serve --config FILE``: the webhook's settings, validated with errors that name the
field. Every key is optional; see docs/extender.md for the full example.

.. code-block:: yaml

    listen: {host: 0.0.0.0, port: 8888}
    pathPrefix: ""                      # kube-scheduler's urlPrefix path, verbs are appended
    tls: {certFile: /tls/tls.crt, keyFile: /tls/tls.key, clientCAFile: /tls/ca.crt,
          requireClientCert: true}
    maxBodyBytes: 16777216
    bindWorkers: 16
    bindBarrierSeconds: 8               # a gang's members wait at bind for each other (0: off)
    percentageOfNodesToScore: 0         # kube-scheduler's value (the chart passes the same)
    evictionGracePeriodSeconds: null    # evictions of preempted gangs (null: each pod's own)
    reservationTTLSeconds: 300
    solver: fast                        # fast | exact | auto
    solverTimeLimitSeconds: 2
    policies: {queue: fifo, queueOptions: {}, scorer: topology, scorerOptions: {},
               preemption: priority, preemptionOptions: {},
               permit: null, permitOptions: {}}  # permit: link-hold (off by default)
    kube: {kubeconfig: null, context: null, topologyLabels: auto, watchTimeoutSeconds: 300,
           topologyRefreshSeconds: 1, requestTimeoutSeconds: 30, bindTimeoutSeconds: 20,
           statusAndEvents: true,       # PodGroup status and Events written back
           levelCosts: {}}              # e.g. {spine: 22}: a 2:1 oversubscribed spine
    leaderElection: {enabled: false, leaseName: phalanx-extender, leaseNamespace: null,
                     identity: null, leaseDurationSeconds: 10, renewDeadlineSeconds: 7,
                     retryPeriodSeconds: 2}
    logFormat: text                     # text | json (the decision log and every other line)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from phalanx.extender.app import DEFAULT_BIND_WORKERS, DEFAULT_MAX_BODY_BYTES
from phalanx.extender.bind_barrier import DEFAULT_BIND_BARRIER_S
from phalanx.extender.decision_log import LOG_FORMATS
from phalanx.extender.planner import DEFAULT_RESERVATION_TTL_S
from phalanx.policies.registry import (
    get_permit,
    get_preemption_policy,
    get_queue_policy,
    get_scorer,
)
from phalanx.topology.kube import known_level_names

DEFAULT_PORT = 8888
DEFAULT_WATCH_TIMEOUT_S = 300
"""Watches are re-opened this often (the apiserver's own default is 30-60 minutes)."""
DEFAULT_TOPOLOGY_REFRESH_S = 1.0
"""Node changes are folded into the topology at most this often."""
DEFAULT_REQUEST_TIMEOUT_S = 30.0
"""A list or read that has not answered by then is given up and tried again (a hung request)."""
DEFAULT_BIND_TIMEOUT_S = 20.0
"""All tries of one bind; below kube-scheduler's extender httpTimeout (30 s in the chart)."""
MIN_PORT = 1
MAX_PORT = 65535
"""Listen ports a TCP server can bind by number (0, "any free port", would hide the real one)."""
SOLVERS = ("fast", "exact", "auto")


class ConfigError(ValueError):
    """Bad settings; ``problems`` lists every one, each naming the file and the field, so a
    user fixes the file in one pass instead of one error per run."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    require_client_cert: bool = False

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


@dataclass(frozen=True)
class PolicyConfig:
    queue: str = "fifo"
    queue_options: dict[str, Any] = field(default_factory=dict)
    scorer: str | None = "topology"
    scorer_options: dict[str, Any] = field(default_factory=dict)
    preemption: str | None = "priority"
    preemption_options: dict[str, Any] = field(default_factory=dict)
    permit: str | None = None
    """A Permit plugin (``link-hold``) asked before a gang that fits starts; None: none."""
    permit_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    """The scorer's seed (FGD's tie-breaking), as ``phalanx simulate --seed`` gives it."""


@dataclass(frozen=True)
class KubeConfig:
    kubeconfig: str | None = None
    """None: in-cluster service account, else this kubeconfig file."""
    context: str | None = None
    topology_labels: str = "auto"
    watch_timeout_s: int = DEFAULT_WATCH_TIMEOUT_S
    topology_refresh_s: float = DEFAULT_TOPOLOGY_REFRESH_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    bind_timeout_s: float = DEFAULT_BIND_TIMEOUT_S
    status_and_events: bool = True
    """Write gangs' PodGroup status and Events (``extender/status_reporter.py``)."""
    level_costs: dict[str, float] = field(default_factory=dict)
    """Fabric level -> link cost, replacing the label set's default (an oversubscribed spine
    costs more than the default; Node labels cannot say so)."""


DEFAULT_LEASE_NAME = "phalanx-extender"
DEFAULT_LEASE_DURATION_S = 10
"""A standby takes over at most this long (plus one retry period) after the leader stops."""
DEFAULT_RENEW_DEADLINE_S = 7
DEFAULT_RETRY_PERIOD_S = 2
LEASE_NAMESPACE_ENV = "POD_NAMESPACE"
IDENTITY_ENV = "POD_NAME"
DEFAULT_LEASE_NAMESPACE = "phalanx-system"


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Several replicas, one leader through a ``coordination.k8s.io`` Lease: the standbys keep
    their watches warm and report not-ready, so the Service sends kube-scheduler to the leader."""

    enabled: bool = False
    lease_name: str = DEFAULT_LEASE_NAME
    lease_namespace: str | None = None
    """None: the pod's namespace (``POD_NAMESPACE``), else ``phalanx-system``."""
    identity: str | None = None
    """None: the pod's name (``POD_NAME``), else host name and process id."""
    lease_duration_s: int = DEFAULT_LEASE_DURATION_S
    renew_deadline_s: int = DEFAULT_RENEW_DEADLINE_S
    retry_period_s: int = DEFAULT_RETRY_PERIOD_S


@dataclass(frozen=True)
class ServeConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    path_prefix: str = ""
    tls: TlsConfig = field(default_factory=TlsConfig)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    bind_workers: int = DEFAULT_BIND_WORKERS
    bind_barrier_s: float = DEFAULT_BIND_BARRIER_S
    percentage_of_nodes_to_score: int = 0
    eviction_grace_period_s: int | None = None
    reservation_ttl_s: float = DEFAULT_RESERVATION_TTL_S
    solver: str = "fast"
    solver_time_limit_s: float = 2.0
    policies: PolicyConfig = field(default_factory=PolicyConfig)
    kube: KubeConfig = field(default_factory=KubeConfig)
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    log_format: str = "text"
    """``text`` or ``json`` (one JSON object per line, the decision log's fields included)."""


def load_config(path: str | Path) -> ServeConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{at}: not valid YAML: {problem}") from None
    return parse_config(doc or {}, str(path))


def parse_config(doc: Any, where: str = "config") -> ServeConfig:
    """Validate the whole document and raise one :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    r = _Reader(doc, where, problems)
    listen = r.section("listen", {"host", "port"})
    tls = r.section("tls", {"certFile", "keyFile", "clientCAFile", "requireClientCert"})
    pol = r.section(
        "policies",
        {
            "queue",
            "queueOptions",
            "scorer",
            "scorerOptions",
            "preemption",
            "preemptionOptions",
            "permit",
            "permitOptions",
            "seed",
        },
    )
    kube = r.section(
        "kube",
        {
            "kubeconfig",
            "context",
            "topologyLabels",
            "watchTimeoutSeconds",
            "topologyRefreshSeconds",
            "requestTimeoutSeconds",
            "bindTimeoutSeconds",
            "statusAndEvents",
            "levelCosts",
        },
    )
    election = r.section(
        "leaderElection",
        {
            "enabled",
            "leaseName",
            "leaseNamespace",
            "identity",
            "leaseDurationSeconds",
            "renewDeadlineSeconds",
            "retryPeriodSeconds",
        },
    )
    r.known(
        {
            "listen",
            "pathPrefix",
            "tls",
            "maxBodyBytes",
            "bindWorkers",
            "bindBarrierSeconds",
            "percentageOfNodesToScore",
            "evictionGracePeriodSeconds",
            "reservationTTLSeconds",
            "solver",
            "solverTimeLimitSeconds",
            "policies",
            "kube",
            "leaderElection",
            "logFormat",
        }
    )
    port = listen.integer("port", DEFAULT_PORT, MIN_PORT, MAX_PORT)
    tls_cfg = TlsConfig(
        cert_file=tls.string("certFile", None),
        key_file=tls.string("keyFile", None),
        client_ca_file=tls.string("clientCAFile", None),
        require_client_cert=tls.boolean("requireClientCert", False),
    )
    if (tls_cfg.cert_file is None) != (tls_cfg.key_file is None):
        problems.append(f"{where}: tls.certFile and tls.keyFile must be given together")
    if tls_cfg.require_client_cert and tls_cfg.client_ca_file is None:
        problems.append(f"{where}: tls.requireClientCert needs tls.clientCAFile")
    if tls_cfg.client_ca_file is not None and not tls_cfg.enabled:
        problems.append(f"{where}: tls.clientCAFile needs tls.certFile and tls.keyFile")
    solver = r.string("solver", "fast")
    if solver not in SOLVERS:
        problems.append(f"{where}: solver: expected fast, exact or auto, got {solver!r}")
    log_format = r.string("logFormat", "text") or "text"
    if log_format not in LOG_FORMATS:
        problems.append(f"{where}: logFormat: expected text or json, got {log_format!r}")
    config = ServeConfig(
        log_format=log_format,
        host=listen.string("host", "0.0.0.0") or "0.0.0.0",
        port=port,
        path_prefix=r.string("pathPrefix", "") or "",
        tls=tls_cfg,
        max_body_bytes=r.integer("maxBodyBytes", DEFAULT_MAX_BODY_BYTES, 1),
        bind_workers=r.integer("bindWorkers", DEFAULT_BIND_WORKERS, 1),
        bind_barrier_s=r.number("bindBarrierSeconds", DEFAULT_BIND_BARRIER_S, zero=True),
        percentage_of_nodes_to_score=r.integer("percentageOfNodesToScore", 0, 0, 100),
        eviction_grace_period_s=r.optional_integer("evictionGracePeriodSeconds", 0),
        reservation_ttl_s=r.number("reservationTTLSeconds", DEFAULT_RESERVATION_TTL_S),
        solver=solver,
        solver_time_limit_s=r.number("solverTimeLimitSeconds", 2.0),
        policies=PolicyConfig(
            queue=pol.string("queue", "fifo") or "fifo",
            queue_options=pol.mapping("queueOptions"),
            scorer=pol.string("scorer", "topology"),
            scorer_options=pol.mapping("scorerOptions"),
            preemption=pol.string("preemption", "priority"),
            preemption_options=pol.mapping("preemptionOptions"),
            permit=pol.string("permit", None) or None,
            permit_options=pol.mapping("permitOptions"),
            seed=pol.integer("seed", 0, 0),
        ),
        kube=KubeConfig(
            kubeconfig=kube.string("kubeconfig", None),
            context=kube.string("context", None),
            topology_labels=kube.string("topologyLabels", "auto") or "auto",
            watch_timeout_s=kube.integer("watchTimeoutSeconds", DEFAULT_WATCH_TIMEOUT_S, 1),
            topology_refresh_s=kube.number("topologyRefreshSeconds", DEFAULT_TOPOLOGY_REFRESH_S),
            request_timeout_s=kube.number("requestTimeoutSeconds", DEFAULT_REQUEST_TIMEOUT_S),
            bind_timeout_s=kube.number("bindTimeoutSeconds", DEFAULT_BIND_TIMEOUT_S),
            status_and_events=kube.boolean("statusAndEvents", True),
            level_costs=kube.level_costs("levelCosts"),
        ),
        leader_election=LeaderElectionConfig(
            enabled=election.boolean("enabled", False),
            lease_name=election.string("leaseName", DEFAULT_LEASE_NAME) or DEFAULT_LEASE_NAME,
            lease_namespace=election.string("leaseNamespace", None),
            identity=election.string("identity", None),
            lease_duration_s=election.integer("leaseDurationSeconds", DEFAULT_LEASE_DURATION_S, 1),
            renew_deadline_s=election.integer("renewDeadlineSeconds", DEFAULT_RENEW_DEADLINE_S, 1),
            retry_period_s=election.integer("retryPeriodSeconds", DEFAULT_RETRY_PERIOD_S, 1),
        ),
    )
    lease = config.leader_election
    # the kubernetes client's elector needs duration > deadline > 1.2 x retry period
    if not lease.lease_duration_s > lease.renew_deadline_s > 1.2 * lease.retry_period_s:
        problems.append(
            f"{where}: leaderElection: need leaseDurationSeconds > renewDeadlineSeconds > "
            f"1.2 x retryPeriodSeconds, got {lease.lease_duration_s}, "
            f"{lease.renew_deadline_s}, {lease.retry_period_s}"
        )
    _check_policies(config.policies, where, problems)  # bad-typed fields hold their defaults
    if problems:
        raise ConfigError(problems)
    return config


def _check_policies(cfg: PolicyConfig, where: str, problems: list[str]) -> None:
    """Build each named policy once, so an unknown name or option is reported while the file
    is read (with its field) rather than when the server starts."""
    builds: list[tuple[str, Callable[[], object]]] = [
        ("queue", lambda: get_queue_policy(cfg.queue, **cfg.queue_options))
    ]
    if cfg.scorer:
        scorer = cfg.scorer
        builds.append(("scorer", lambda: get_scorer(scorer, **cfg.scorer_options)))
    if cfg.preemption:
        preemption = cfg.preemption
        builds.append(
            ("preemption", lambda: get_preemption_policy(preemption, **cfg.preemption_options))
        )
    if cfg.permit:
        permit = cfg.permit
        builds.append(("permit", lambda: get_permit(permit, **cfg.permit_options)))
    elif cfg.permit_options:
        problems.append(f"{where}: policies.permitOptions: given without policies.permit")
    for key, build in builds:
        try:
            build()
        except ValueError as exc:
            # UnknownPolicyError and PolicyOptionError, and a policy's own check of an
            # option's value (link-hold's ``share: -1``), which would otherwise escape as a
            # traceback instead of one line naming the field
            problems.append(f"{where}: policies.{key}: {exc}")


class _Reader:
    """Typed access to one mapping of the document, naming ``where.key`` in problems.

    A bad value is recorded in the shared ``problems`` list and replaced by the default, so
    parsing carries on and every problem in the file is reported at once.
    """

    def __init__(self, doc: Any, where: str, problems: list[str], prefix: str = "") -> None:
        self.where, self.prefix, self.problems = where, prefix, problems
        if not isinstance(doc, dict):
            problems.append(f"{where}: {prefix.rstrip('.') or 'the document'} must be a mapping")
            doc = {}
        self.doc = doc

    def _name(self, key: str) -> str:
        return f"{self.where}: {self.prefix}{key}"

    def _bad(self, key: str, message: str) -> None:
        self.problems.append(f"{self._name(key)}: {message}")

    def known(self, keys: set[str]) -> None:
        for key in sorted(set(self.doc) - keys, key=str):
            self._bad(str(key), f"unknown setting; known: {', '.join(sorted(keys))}")

    def section(self, key: str, keys: set[str]) -> _Reader:
        reader = _Reader(self.doc.get(key) or {}, self.where, self.problems, f"{self.prefix}{key}.")
        reader.known(keys)
        return reader

    def string(self, key: str, default: str | None) -> str | None:
        value = self.doc.get(key, default)
        if value is not None and not isinstance(value, str):
            self._bad(key, f"expected a string, got {value!r}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.doc.get(key, default)
        if not isinstance(value, bool):
            self._bad(key, f"expected true or false, got {value!r}")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int | None = None) -> int:
        value = self.doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self._bad(key, f"expected an integer, got {value!r}")
            return default
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            self._bad(key, f"{value} is outside {bound}")
            return default
        return value

    def number(self, key: str, default: float, *, zero: bool = False) -> float:
        """A positive number (or zero, where ``zero`` allows it: a feature turned off)."""
        value = self.doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            self._bad(
                key, f"expected a {'non-negative' if zero else 'positive'} number, got {value!r}"
            )
            return default
        if value == 0 and not zero:
            self._bad(key, f"expected a positive number, got {value!r}")
            return default
        return float(value)

    def optional_integer(self, key: str, low: int) -> int | None:
        if self.doc.get(key) is None:
            return None
        return self.integer(key, low, low)

    def level_costs(self, key: str) -> dict[str, float]:
        """Fabric level name -> a non-negative cost; names no label set gives are refused."""
        costs: dict[str, float] = {}
        known = known_level_names()
        for level, cost in self.mapping(key).items():
            if level not in known:
                self._bad(f"{key}.{level}", f"unknown level; known: {', '.join(sorted(known))}")
            elif isinstance(cost, bool) or not isinstance(cost, int | float) or not cost >= 0:
                self._bad(f"{key}.{level}", f"expected a non-negative number, got {cost!r}")
            else:
                costs[str(level)] = float(cost)
        return costs

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.doc.get(key) or {}
        if not isinstance(value, dict):
            self._bad(key, f"expected a mapping, got {value!r}")
            return {}
        return dict(value)
