"""solver="exact" and "auto": the exact path gets the fast answer as a hint, and auto keeps
the cheaper answer and skips the solver where it cannot help."""

import phalanx.scheduler.exact
import pytest
from phalanx.scheduler.engine import place
from phalanx.scheduler.gang import Gang, MemberRequest
from phalanx.scheduler.placement import Placement, Unplaceable
from phalanx.scheduler.state import ClusterState
from phalanx.topology.presets import cluster_preset

from tests.placement_helpers import assert_valid_placement, fill_nodes


@pytest.fixture
def state() -> ClusterState:
    return ClusterState(cluster_preset("superpod-h100:16").compile())


@pytest.fixture
def calls(monkeypatch):
    """Record the exact solver's calls (still running it)."""
    seen = []
    real = phalanx.scheduler.exact.solve

    def spy(gang, state, **kwargs):
        seen.append((gang.name, kwargs.get("hint")))
        return real(gang, state, **kwargs)

    monkeypatch.setattr(phalanx.scheduler.exact, "solve", spy)
    return seen


def test_exact_solver_gets_the_fast_hint(state, calls):
    gang = Gang.uniform("g", 2, MemberRequest(gpus=4))
    result = place(gang, state, solver="exact")
    assert isinstance(result, Placement) and result.solver == "exact"
    assert_valid_placement(gang, result, state)
    ((name, hint),) = calls
    assert name == "g" and isinstance(hint, Placement) and hint.solver == "fast"


def test_auto_keeps_easy_gangs_on_the_fast_path(state, calls):
    result = place(Gang.uniform("g", 1, MemberRequest(gpus=2)), state, solver="auto")
    assert isinstance(result, Placement) and result.solver == "fast"
    assert calls == []


def test_auto_checks_hard_gangs_and_keeps_the_cheaper(state, calls):
    gang = Gang.uniform("tp", 8, MemberRequest(gpus=2), nvlink_group=4)
    fast = place(gang, state)
    result = place(gang, state, solver="auto")
    assert [name for name, _ in calls] == ["tp"]
    assert isinstance(result, Placement)
    assert result.cost.total <= fast.cost.total
    assert_valid_placement(gang, result, state)


def test_auto_skips_the_solver_when_the_cluster_is_short(state, calls):
    fill_nodes(state, range(14))
    result = place(Gang.uniform("g", 4, MemberRequest(gpus=8)), state, solver="auto")
    assert isinstance(result, Unplaceable) and result.constraint == "capacity"
    assert calls == []


def test_auto_tries_the_solver_when_the_fast_path_fails_a_level(state, calls):
    gang = Gang.uniform("g", 3, MemberRequest(gpus=4), required_level="node")
    result = place(gang, state, solver="auto")
    assert isinstance(result, Unplaceable) and result.constraint == "required_level"
    assert [name for name, _ in calls] == ["g"]
