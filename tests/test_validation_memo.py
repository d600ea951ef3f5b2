"""validate_gang_for_cluster remembers the gangs that passed: by identity and per cluster, so a
remembered pass is never mistaken for another gang's or another cluster's."""

from __future__ import annotations

import gc

import pytest
from phalanx.scheduler import validation
from phalanx.scheduler.gang import Gang, GangSpecError, MemberRequest
from phalanx.scheduler.validation import check_gang_on_cluster, validate_gang_for_cluster
from phalanx.topology.presets import cluster_preset


@pytest.fixture(scope="module")
def clusters():
    return cluster_preset("dgx-h100:2").compile(), cluster_preset("dgx-a100:2").compile()


def counting(monkeypatch) -> list[str]:
    seen: list[str] = []
    inner = validation._check_request

    def spy(request, where, member, compiled):
        seen.append(member)
        inner(request, where, member, compiled)

    monkeypatch.setattr(validation, "_check_request", spy)
    return seen


def test_a_gang_that_passed_is_not_checked_again_on_that_cluster(clusters, monkeypatch):
    h100, a100 = clusters
    seen = counting(monkeypatch)
    gang = Gang.uniform("llm", 2, MemberRequest(gpus=8))
    validate_gang_for_cluster(gang, h100)
    validate_gang_for_cluster(gang, h100)
    assert seen == ["llm-0"]  # one distinct request, checked once
    validate_gang_for_cluster(gang, a100)  # another cluster: checked there
    assert seen == ["llm-0", "llm-0"]
    equal = Gang.uniform("llm", 2, MemberRequest(gpus=8))
    validate_gang_for_cluster(equal, h100)  # an equal but distinct object: checked
    assert len(seen) == 3


def test_a_pass_on_one_cluster_does_not_excuse_the_gang_on_another(clusters):
    h100, a100 = clusters
    gang = Gang.uniform("h100-only", 1, MemberRequest(gpus=8, gpu_products=(h100.products[0],)))
    validate_gang_for_cluster(gang, h100)
    with pytest.raises(GangSpecError, match="unknown GPU product"):
        validate_gang_for_cluster(gang, a100)
    with pytest.raises(GangSpecError, match="unknown GPU product"):
        validate_gang_for_cluster(gang, a100)  # a failure is never remembered


def test_a_gang_that_failed_fails_every_time(clusters):
    h100, _ = clusters
    gang = Gang.uniform("huge", 1, MemberRequest(gpus=16))
    for _ in range(2):
        with pytest.raises(GangSpecError, match="largest node"):
            validate_gang_for_cluster(gang, h100)
    zero = Gang("empty", ())
    for _ in range(2):
        with pytest.raises(GangSpecError, match="zero members"):
            validate_gang_for_cluster(zero, h100)


def test_check_gang_on_cluster_leaves_the_spec_checks_to_the_caller(clusters):
    h100, _ = clusters
    gang = Gang.uniform("llm", 1, MemberRequest(gpus=8))
    check_gang_on_cluster(gang, h100)
    with pytest.raises(GangSpecError, match="largest node"):
        check_gang_on_cluster(Gang.uniform("huge", 1, MemberRequest(gpus=16)), h100)


def test_a_reused_id_never_matches_a_gone_gang(clusters, monkeypatch):
    h100, _ = clusters
    seen = counting(monkeypatch)
    validate_gang_for_cluster(Gang.uniform("first", 1, MemberRequest(gpus=1)), h100)
    gc.collect()
    for i in range(50):  # new gangs, some of them at the first one's address
        validate_gang_for_cluster(Gang.uniform(f"g{i}", 1, MemberRequest(gpus=1)), h100)
    assert len(seen) == 51


def test_the_memo_stays_bounded(clusters):
    h100, _ = clusters
    keep = [Gang.uniform(f"g{i}", 1, MemberRequest(gpus=1)) for i in range(600)]
    for gang in keep:
        validate_gang_for_cluster(gang, h100)
    assert len(validation._valid) <= validation.REMEMBERED_VALID
