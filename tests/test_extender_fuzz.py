"""Hostile input for the webhook, in process: mutated kube-scheduler bodies for every verb and
odd requests for the read-only endpoints never get a 500 or log a traceback, every rejection
names the field, and the ledger stays what the pods say (:mod:`extender.consistency`).

Hypothesis drives the generator of :mod:`bench.fuzz_bodies` (derandomized and without a
database, so the run is the same every time; a failure is reported with its draws, unshrunk,
as shrinking one took minutes); ``python -m phalanx.bench.fuzz_extender`` is the long run of
the same checks.
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from phalanx.bench.fuzz_bodies import READ_PATHS, FuzzRequest, seed_pod
from phalanx.bench.fuzz_extender import Fuzzer, LogCapture, call, check
from phalanx.extender import wire
from phalanx.extender.binding import PlanFormatError, decode_plan, encode_plan
from phalanx.extender.consistency import ledger_problems
from phalanx.extender.gangs import resolve_gang
from phalanx.extender.podspec import PodSpecError, member_request
from phalanx.extender.rejection import REJECTION_KEY
from phalanx.scheduler.placement import CostBreakdown, MemberPlacement, Placement
from phalanx.topology.model import NODE_LEVEL

from tests.fake_apiserver import kube_pod, phalanx_gang

FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # shrinking a failure here takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REQUESTS_PER_EXAMPLE = 25


def _drawer(data: st.DataObject):
    return lambda n: data.draw(st.integers(0, n - 1)) if n > 1 else 0


def _no_traceback(logs: LogCapture) -> None:
    assert not logs.records, [f"{r.name}: {r.getMessage()}" for r in logs.records][:5]


@FUZZ
@given(st.data())
def test_mutated_bodies_for_every_verb_are_answered_by_the_contract(data):
    fuzzer = Fuzzer()
    draw = _drawer(data)

    async def run() -> None:
        for _ in range(REQUESTS_PER_EXAMPLE):
            await fuzzer.step(draw)
        await fuzzer.close()

    with LogCapture() as logs:
        asyncio.run(run())
        problems = fuzzer.ledger_problems()
    assert fuzzer.tally.problems == []
    _no_traceback(logs)
    assert problems == []


@FUZZ
@given(
    method=st.sampled_from(["GET", "GET", "HEAD", "DELETE", "PUT", "OPTIONS", "POST"]),
    path=st.one_of(
        st.sampled_from(READ_PATHS),
        st.builds(lambda p, s: p + s, st.sampled_from(READ_PATHS), st.text(max_size=30)),
        st.text(max_size=40).map(lambda s: "/" + s),
    ),
    query=st.binary(max_size=300),
    body=st.binary(max_size=100),
)
def test_read_only_endpoints_take_any_path_method_and_query(method, path, query, body):
    fuzzer = Fuzzer()
    planner = fuzzer.backend.planner
    before = planner.compiled.mutable_state_bytes()
    raw = path.encode("utf-8", "surrogatepass")
    req = FuzzRequest(method, path, body, query, raw_path=raw, verb="get")
    if method == "POST" and path in ("/filter", "/prioritize", "/preempt", "/bind"):
        req.verb = path[1:]
    with LogCapture() as logs:
        reply = asyncio.run(call(fuzzer.app, req))
        problems = check(req, reply)
    assert problems == []
    _no_traceback(logs)
    if req.verb == "get":
        assert planner.compiled.mutable_state_bytes() == before and not planner.pods


def test_the_measured_crashes_are_rejections_naming_the_field():
    """Issue #16's two tracebacks: a NaN GPU quantity (decimal.InvalidOperation) and
    annotations that are not an object (AttributeError in the Volcano source)."""
    fuzzer = Fuzzer()
    nan = kube_pod("nan-0", annotations=phalanx_gang("g", 1))
    nan["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "NaN"
    listed = kube_pod("ann-0")
    listed["metadata"]["annotations"] = ["scheduling.k8s.io/group-name"]
    sent = {
        "preempt-nan": ("/preempt", {"Pod": nan, "NodeNameToMetaVictims": {}}),
        "filter-nan": ("/filter", {"Pod": nan, "NodeNames": fuzzer.nodes}),
        "preempt-annotations": ("/preempt", {"Pod": listed, "NodeNameToMetaVictims": {}}),
        "filter-annotations": ("/filter", {"Pod": listed, "NodeNames": fuzzer.nodes}),
    }
    replies = {}
    with LogCapture() as logs:
        for name, (path, doc) in sent.items():
            req = FuzzRequest("POST", path, orjson.dumps(doc), verb=path[1:])
            reply = asyncio.run(call(fuzzer.app, req))
            assert check(req, reply) == [], name
            replies[name] = reply
    _no_traceback(logs)
    assert replies["preempt-nan"].status == 200
    assert orjson.loads(replies["preempt-nan"].body) == {"NodeNameToMetaVictims": {}}
    reasons = orjson.loads(replies["filter-nan"].body)["FailedAndUnresolvableNodes"]
    assert "limits['nvidia.com/gpu']: 'NaN' is not a finite quantity" in reasons[REJECTION_KEY]
    assert replies["preempt-annotations"].status == 400
    error = orjson.loads(replies["preempt-annotations"].body)["Error"]
    assert error == "bad preempt request: Pod.metadata.annotations must be an object, got list"
    error = orjson.loads(replies["filter-annotations"].body)["Error"]
    assert error.startswith("bad filter request: Pod.metadata.annotations must be an object")


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("NaN", "is not a finite quantity"),
        ("sNaN", "is not a finite quantity"),
        ("Infinity", "is not a finite quantity"),
        ("-1", "is negative"),
        ("1e100000", "beyond the int64 range"),
        ("1e999999Ei", "is not a quantity"),
        (True, "is not a quantity"),
        ("2e18", "larger than any node could hold"),
        (["1"], "is not a quantity"),
        ({"a": 1}, "is not a quantity"),
        ("1.5", "must be a whole number"),
    ],
)
def test_hostile_gpu_quantities_are_spec_errors(quantity, message):
    pod = kube_pod("q")
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = quantity
    pod["spec"]["containers"][0]["resources"]["requests"].pop("nvidia.com/gpu")
    for _ in range(2):  # parsed quantities are remembered; failures are not
        with pytest.raises(PodSpecError, match=message):
            member_request(pod)


def test_long_quantities_are_parsed_but_not_remembered():
    """A valid quantity padded to megabytes parses as any other, and is not kept in memory."""
    from phalanx.extender import podspec

    sizes = []
    for padding in (100_000, 100_001):
        pod = kube_pod("long")
        resources = pod["spec"]["containers"][0]["resources"]
        resources["limits"]["nvidia.com/gpu"] = "0" * padding + "2"
        resources["requests"].pop("nvidia.com/gpu")
        assert member_request(pod).gpus == 2
        sizes.append(podspec._remembered_quantity.cache_info().currsize)
    assert sizes[1] == sizes[0]  # the second long text was not remembered


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        (("metadata", "labels"), ["a"], "Pod.metadata.labels must be an object"),
        (("metadata", "annotations"), {"a": 1}, "Pod.metadata.annotations['a'] must be a string"),
        (("metadata", "name"), "a/b", "Pod.metadata.name 'a/b' is not a valid object name"),
        (("metadata", "namespace"), "ML", "Pod.metadata.namespace 'ML' is not a valid"),
        (("spec", "priority"), 2**40, "Pod.spec.priority must be a 32-bit integer"),
        (("spec", "containers"), {}, "Pod.spec.containers must be a list"),
        (("spec", "tolerations"), [3], "Pod.spec.tolerations[0] must be an object"),
        (("spec", "nodeName"), 5, "Pod.spec.nodeName must be a string"),
        (("spec", "schedulingGroup"), "g", "Pod.spec.schedulingGroup must be an object"),
        (("status", "phase"), [], "Pod.status.phase must be a string, got list"),
    ],
)
def test_pod_fields_of_the_wrong_type_are_wire_errors(where, value, message):
    pod = kube_pod("w")
    pod[where[0]][where[1]] = value
    with pytest.raises(wire.WireError, match=message.replace("[", r"\[").replace("]", r"\]")):
        wire.parse_pod(pod)


def test_values_too_deep_to_repr_are_described_not_printed():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(wire.WireError, match="PodName must be a non-empty string, got list"):
        wire.parse_binding_args({"podname": deep, "podnamespace": "ml", "node": "n"})
    node = {"metadata": {"name": "n"}, "status": {"deep": deep}}
    doc = {"pod": kube_pod("d"), "nodes": {"items": [node]}}
    with pytest.raises(wire.WireError, match=r"Nodes.items\[0\] cannot be written back"):
        wire.parse_extender_args(doc)


def test_group_names_that_could_read_as_another_key_make_the_pod_wait():
    for name in ("g#1", "pod/x", "a b", "\u00e9"):
        ref = resolve_gang(kube_pod("p", annotations=phalanx_gang(name, 2)), lambda *a: None)
        assert ref.min_member is None and "not a valid name" in ref.problem
        assert ref.key == "ml/pod/p"


@pytest.mark.parametrize(
    ("member", "key", "message"),
    [
        ({"gpus": [-1]}, "ml/g", "gpus must be distinct GPU indices"),
        ({"gpus": [8]}, "ml/g", "gpus must be distinct GPU indices"),
        ({"gpus": [1, 1]}, "ml/g", "gpus must be distinct GPU indices"),
        ({"cpuMilli": -5}, "ml/g", "cpuMilli must be an integer"),
        ({"memoryMiB": 2**70}, "ml/g", "memoryMiB must be an integer"),
        ({"gpuMilli": 0}, "ml/g", "gpuMilli must be in 1..1000"),
        ({}, "ml/other", "key must be 'ml/g'"),
        ({}, "ml/g#\u00b2", "key must be 'ml/g'"),
    ],
)
def test_forged_gang_plans_are_refused_field_by_field(member, key, message):
    fuzzer = Fuzzer()
    compiled = fuzzer.backend.planner.compiled
    entry = {"pod": "w-0", "node": fuzzer.nodes[0], "gpus": [0], "gpuMilli": 1000, **member}
    with pytest.raises(PlanFormatError, match=message):
        decode_plan(json.dumps({"key": key, "members": [entry]}), compiled, "ml/g")


def test_consistency_check_sees_a_leaked_reservation_and_a_gpu_counted_twice():
    fuzzer = Fuzzer()
    planner = fuzzer.backend.planner
    pods = [kube_pod(f"c-{i}", gpus=4, annotations=phalanx_gang("c", 2)) for i in range(2)]
    for pod in pods:
        planner.observe_pod(pod)
    node = planner.filter(pods[0], fuzzer.nodes).passing[0]
    assert planner.bind("ml", "c-0", "", node, fuzzer.backend.binder) == ""
    assert ledger_problems(planner) == []
    leak = MemberPlacement("ghost", node, planner.compiled.node_index[node], (), 1000, 1, 1)
    planner.state.reserve(Placement("ml/ghost", (leak,), NODE_LEVEL, node, CostBreakdown()), 0)
    assert any("has no pod" in p for p in ledger_problems(planner))
    planner.state.release("ml/ghost")
    planner.compiled.gpu_used_milli[planner.compiled.node_index[node], 0] = 0
    assert any(p.startswith("arrays:") for p in ledger_problems(planner))


def test_seed_pods_are_valid_requests():
    """The generator's starting points pass the wire checks: mutations are what is hostile."""
    for i in range(200):
        values = iter(range(i, i + 10_000))
        pod = seed_pod(lambda n, v=values: next(v) % n, ["h100-00000"])
        assert wire.parse_pod(pod) is pod


def test_a_pod_sent_again_after_its_bind_keeps_its_place_and_its_annotations():
    """Found by the ledger check: a dry-run request for a bound pod carries none of the
    Binding's annotations (the plan a restart rebuilds the pod's place from), and may ask for
    other amounts, which the apiserver never allows: such a pod is seen anew (pending), and a
    pod bound by someone else is charged what it asks now."""
    fuzzer = Fuzzer()
    planner, nodes = fuzzer.backend.planner, fuzzer.nodes
    node = planner.filter(kube_pod("k-0", gpus=2), nodes).passing[0]
    assert planner.bind("ml", "k-0", "", node, fuzzer.backend.binder) == ""
    planner.filter(kube_pod("k-0", gpus=2), nodes)
    assert "phalanx.io/gang-plan" in planner.pods["ml/k-0"].pod["metadata"]["annotations"]
    assert planner.pods["ml/k-0"].node == node
    assert ledger_problems(planner) == []
    planner.observe_pod(kube_pod("k-0", gpus=4))
    assert planner.pods["ml/k-0"].node == "" and not planner.state.holdings
    other = kube_pod("x-0", gpus=1)
    other["spec"]["nodeName"] = nodes[1]
    planner.observe_pod(other)
    other = kube_pod("x-0", gpus=4)
    other["spec"]["nodeName"] = nodes[1]
    planner.observe_pod(other)
    held = planner.state.holdings[planner.external["ml/x-0"]].placement.members[0]
    assert len(held.gpus) == 4
    assert ledger_problems(planner) == []


def _gang_of_two(fuzzer: Fuzzer, name: str, gpus: int = 4):
    planner, nodes = fuzzer.backend.planner, fuzzer.nodes
    pods = [kube_pod(f"{name}-{i}", gpus=gpus, annotations=phalanx_gang(name, 2)) for i in (0, 1)]
    for pod in pods:
        planner.observe_pod(pod)
    planned = {p["metadata"]["name"]: planner.filter(p, nodes).passing[0] for p in pods}
    return planner, pods, planned


def test_a_rank_bound_by_someone_else_is_not_reserved_again_after_a_restart():
    """Recovery re-reserved every rank of a bound rank's plan that had no place yet, also one
    whose pod was already accounted as bound by someone else: its GPUs counted twice."""
    fuzzer = Fuzzer()
    planner, pods, planned = _gang_of_two(fuzzer, "r")
    assert planner.bind("ml", "r-0", "", planned["r-0"], fuzzer.backend.binder) == ""
    elsewhere = next(n for n in fuzzer.nodes if n != planned["r-1"])
    pods[1]["spec"]["nodeName"] = elsewhere
    planner.observe_pod(pods[1])
    assert "ml/r-1" in planner.external
    assert ledger_problems(planner) == []


def test_a_pods_own_gpu_ids_win_over_an_older_plan_of_another_rank():
    """After a restart, a member planned again after the first rank bound (here: other GPUs
    of the same node) is held where its own Binding put it, not where the first rank's older
    plan annotation says."""
    fuzzer = Fuzzer()
    node = fuzzer.nodes[0]
    index = fuzzer.backend.planner.compiled.node_index[node]

    def bound(name: str, ledger_key: str, gpus_by_pod: dict[str, tuple[int, ...]]):
        members = [
            MemberPlacement(pod, node, index, gpus, 1000, 4000, 32768, rank)
            for rank, (pod, gpus) in enumerate(gpus_by_pod.items())
        ]
        pod = kube_pod(name, gpus=2, annotations=phalanx_gang("s", 2))
        pod["spec"]["nodeName"] = node
        pod["metadata"]["annotations"].update(
            {
                "phalanx.io/gang-key": "ml/s",
                "phalanx.io/gpu-ids": ",".join(map(str, gpus_by_pod[name])),
                "phalanx.io/gang-plan": encode_plan(ledger_key, members),
            }
        )
        return pod

    first = bound("s-0", "ml/s", {"s-0": (0, 1), "s-1": (2, 3)})
    second = bound("s-1", "ml/s#1", {"s-1": (4, 5)})
    planner = fuzzer.backend.planner
    planner.recover([first, second])
    held = {m.member: m.gpus for h in planner.state.holdings.values() for m in h.placement.members}
    assert held == {"s-0": (0, 1), "s-1": (4, 5)}
    assert ledger_problems(planner) == []


def test_a_plan_member_without_gpus_reads_back():
    """Phalanx writes ``gpuMilli: 0`` for a member that asks for no GPU."""
    compiled = Fuzzer().backend.planner.compiled
    entry = {"pod": "w-0", "node": "h100-00000", "gpus": [], "gpuMilli": 0, "cpuMilli": 5}
    key, (member,) = decode_plan(json.dumps({"key": "ml/g", "members": [entry]}), compiled, "ml/g")
    assert key == "ml/g" and member.gpus == () and member.cpu_milli == 5
