"""The policy registry and ``phalanx policies``: names, options, combinations, errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from phalanx.policies.registry import (
    PolicyOptionError,
    UnknownPolicyError,
    get_preemption_policy,
    get_queue_policy,
    get_scorer,
    list_policies,
)
from phalanx.policies.scoring.combined import WeightedScorer
from phalanx.scheduler.interfaces import PlacementScorer, PreemptionPolicy, QueuePolicy

from phalanx.cli import main

QUEUES = {
    "fifo",
    "priority",
    "sjf",
    "backfill",
    "drf",
    "quota",
    "las",
    "tiresias",
    "finish-time-fairness",
}
SCORERS = {
    "binpack",
    "spread",
    "topology",
    "fgd",
    "random",
    "dotprod",
    "gpu-clustering",
    "gpu-packing",
    "bestfit",
    "fgd-cpu",
}
PREEMPTIONS = {"none", "priority", "reclaim", "tiresias"}
PERMITS = {"link-hold"}
TREE = {"queues": [{"name": "a", "guaranteed": {"gpu": 8}}, {"name": "b"}]}


def test_every_issue_policy_is_registered_with_a_description() -> None:
    rows = list_policies()
    by_kind: dict[str, set[str]] = {}
    for kind, name, description in rows:
        by_kind.setdefault(kind, set()).add(name)
        assert description and "\n" not in description
    assert by_kind == {
        "queue": QUEUES,
        "scorer": SCORERS,
        "preemption": PREEMPTIONS,
        "permit": PERMITS,
    }


@pytest.mark.parametrize("name", sorted(QUEUES - {"quota"}))
def test_queue_policies_build_by_name(name: str) -> None:
    policy = get_queue_policy(name)
    assert isinstance(policy, QueuePolicy)
    assert policy.name == name


def test_quota_policy_needs_its_tree() -> None:
    assert get_queue_policy("quota", tree=TREE).name == "quota"
    with pytest.raises(PolicyOptionError, match="tree"):
        get_queue_policy("quota")


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scorers_build_by_name(name: str) -> None:
    scorer = get_scorer(name)
    assert isinstance(scorer, PlacementScorer)
    assert scorer.name == name


def test_weighted_scorer_specs() -> None:
    even = get_scorer("topology+fgd")
    assert isinstance(even, WeightedScorer)
    assert [(w, s.name) for w, s in even.parts] == [(1.0, "topology"), (1.0, "fgd")]
    weighted = get_scorer(" 0.7*topology + 0.3 * fgd ")
    assert isinstance(weighted, WeightedScorer)
    assert [(w, s.name) for w, s in weighted.parts] == [(0.7, "topology"), (0.3, "fgd")]
    assert weighted.name == "0.7*topology+0.3*fgd"


def test_options_go_to_the_parts_that_take_them() -> None:
    combined = get_scorer("fgd+random", seed=7, artifact_scores=True)
    assert isinstance(combined, WeightedScorer)
    fgd, rnd = (s for _, s in combined.parts)
    assert fgd.artifact_scores is True  # type: ignore[attr-defined]
    fresh = get_scorer("random", seed=7)
    assert rnd.tie_breaker.rng.random() == fresh.tie_breaker.rng.random()  # type: ignore[attr-defined]
    with pytest.raises(PolicyOptionError, match="no part of scorer 'topology\\+binpack' takes"):
        get_scorer("topology+binpack", seed=1)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(UnknownPolicyError, match="unknown queue policy 'lifo'; known: backfill"):
        get_queue_policy("lifo")
    with pytest.raises(UnknownPolicyError, match=r"unknown scorer policy 'fgdd'.*fgd"):
        get_scorer("topology+fgdd")
    with pytest.raises(UnknownPolicyError, match="unknown preemption policy 'kill'"):
        get_preemption_policy("priority+kill")
    assert issubclass(UnknownPolicyError, ValueError)


@pytest.mark.parametrize("spec", ["", "topology+", "0*fgd", "-1*fgd", "2x*fgd", "fgd fgd"])
def test_malformed_scorer_specs_are_rejected(spec: str) -> None:
    with pytest.raises(PolicyOptionError):
        get_scorer(spec)


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(PolicyOptionError, match=r"takes no option 'window'.*strict"):
        get_queue_policy("fifo", window=3)
    with pytest.raises(PolicyOptionError, match="takes no option 'x' \\(options: none\\)"):
        get_preemption_policy("none", x=1)


def test_invalid_option_values_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="backfill order must be one of"):
        get_queue_policy("backfill", order="lifo")
    with pytest.raises(ValueError, match="strictly increasing"):
        get_queue_policy("las", thresholds_gpu_s=[10, 5])
    with pytest.raises(ValueError, match="weight of tenant 'a' must be positive"):
        get_queue_policy("drf", weights={"a": 0})


def test_preemption_chain_shares_one_history() -> None:
    chain = get_preemption_policy("priority+reclaim", quotas=TREE, min_runtime_s=0)
    assert isinstance(chain, PreemptionPolicy)
    assert chain.name == "priority+reclaim"
    first, second = chain.parts  # type: ignore[attr-defined]
    assert first.history is second.history
    assert first.min_runtime_s == second.min_runtime_s == 0


def test_cli_lists_every_policy() -> None:
    result = CliRunner().invoke(main, ["policies"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "DESCRIPTION"]
    listed = {(line.split()[0], line.split()[1]) for line in lines[1:]}
    assert listed == {(k, n) for k, n, _ in list_policies()}


def test_cli_filters_by_kind() -> None:
    result = CliRunner().invoke(main, ["policies", "--kind", "scorer"])
    assert result.exit_code == 0
    assert {line.split()[0] for line in result.output.splitlines()[1:]} == {"scorer"}
    bad = CliRunner().invoke(main, ["policies", "--kind", "nope"])
    assert bad.exit_code == 2
