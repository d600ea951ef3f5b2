"""``--cluster philly:auto``: a Philly cluster sized from the trace's node-activity series."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.clusters import ClusterChoiceError, resolve_cluster
from phalanx.simulator.data import SAMPLE_TRACE
from phalanx.simulator.traces import load_trace
from phalanx.topology.sources import ClusterSourceError, load_cluster

JOBS = """timestamp,duration,num_gpus,gpu_time,cluster
2017-10-03 00:00:00,36000,8,288000,vc1
2017-10-03 01:00:00,36000,16,576000,vc1
2017-10-03 02:00:00,36000,8,288000,vc2
2017-10-03 10:00:00,60,64,3840,vc2
"""
"""Ten hours of submissions (the last job, 64 GPUs for a minute, ends the window); inside it
the jobs would run 8 x 36,000 + 16 x 32,400 + 8 x 28,800 = 1,036,800 GPU-seconds with no
queue: 28.8 GPUs offered on average."""


def philly_folder(tmp_path: Path, active: int, total: int) -> Path:
    (tmp_path / "philly_jobs_test.csv").write_text(JOBS)
    rows = ["time,active,total"]
    rows += [f"2017-10-03 {h:02d}:{m:02d}:00,{active},{total}" for h in range(11) for m in (0, 30)]
    (tmp_path / "philly_node_sequence_test.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_auto_keeps_the_trace_as_busy_as_the_series_says_philly_was(tmp_path: Path) -> None:
    workload = load_trace(f"philly:{philly_folder(tmp_path, active=50, total=100)}")
    cluster = resolve_cluster("philly:auto", workload)
    # 28.8 GPUs offered; half the nodes busy: 57.6 GPUs, 8 8-GPU nodes
    assert cluster.name == "philly:8"
    assert len(cluster.nodes) == 8
    assert any(n.startswith("cluster philly:auto = philly:8:") for n in workload.notes)


def test_auto_never_goes_below_the_widest_job(tmp_path: Path) -> None:
    workload = load_trace(f"philly:{philly_folder(tmp_path, active=100, total=100)}")
    # every node busy: 28.8 GPUs would be 4 nodes, but the 64-GPU job needs 8
    assert resolve_cluster("philly:auto", workload).name == "philly:8"


def test_auto_sizes_a_slice_for_the_slice(tmp_path: Path) -> None:
    workload = load_trace(f"philly:{philly_folder(tmp_path, active=50, total=100)}")
    first_two = replace(workload, jobs=workload.jobs[:2], notes=[])
    # the hour between them: only the first runs in it, 8 GPUs, 16 at half busy: 2 nodes,
    # which the 16-GPU job needs anyway; a job's work after the window does not count
    assert resolve_cluster("philly:auto", first_two).name == "philly:2"


def test_auto_without_a_node_series_names_what_is_missing() -> None:
    with pytest.raises(ClusterChoiceError, match="node-activity series"):
        resolve_cluster("philly:auto", load_trace(SAMPLE_TRACE))
    with pytest.raises(ClusterChoiceError, match="node-activity series"):
        resolve_cluster("philly:auto")


def test_topology_commands_take_philly_n_and_explain_auto() -> None:
    assert len(load_cluster("philly:40").nodes) == 40
    with pytest.raises(ClusterSourceError, match="only 'phalanx simulate' and 'phalanx sweep'"):
        load_cluster("philly:auto")


def test_auto_on_the_public_philly_trace() -> None:
    philly = trace_path("philly")
    reason = missing_reason(philly)
    if reason:
        pytest.skip(reason)
    workload = load_trace(f"philly:{philly}")
    cluster = resolve_cluster("philly:auto", workload)
    # 500 GPUs offered Oct 3 - Nov 30, 75.6 % of nodes active: 83 nodes (664 GPUs)
    assert cluster.name == "philly:83"
