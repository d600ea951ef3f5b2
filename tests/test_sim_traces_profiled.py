"""The Pollux and Sia loaders on a bundled, generated sample (``tests/data/pollux_sample``).

The public workloads live outside the repository; this sample keeps both loaders and the run
time model (:mod:`simulator.traces.app_profiles`) tested in a fresh clone. Its numbers are
small enough that every expected run time below is worked out by hand in the comments.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from phalanx.simulator.job import TraceError
from phalanx.simulator.traces import TraceOptions, load_trace
from phalanx.simulator.traces.pollux import load_pollux

SAMPLE = Path(__file__).resolve().parent / "data" / "pollux_sample"
WORKLOAD = SAMPLE / "workloads" / "workload-1.csv"

# max local batch 128 (largest profiled); 3 epochs (shortest validation file), so the
# iterations are each validation file's third row: 300 at batch 64, 40 at batch 1024.
EXPECTED_S = {
    # 2 replicas on one node ("2"), local batch 128: step 0.20 s; iterations interpolated at
    # 256: 300 + (256 - 64) / 960 * (40 - 300) = 248
    "toy-0": 248 * 0.20,
    # 8 replicas = two full 4-GPU nodes ("44"), local batch 128: step 0.30 s, 40 iterations
    "toy-1": 40 * 0.30,
    # 1 replica, local batch 64: step 0.10 s, 300 iterations
    "toy-2": 300 * 0.10,
    # 1 replica, batch 512 > 128: 3 accumulation steps of 128 (step 0.18 s, sync 0):
    # 0.18 + 3 * 0.18 = 0.72 s; iterations 300 + 448 / 960 * (40 - 300)
    "toy-3": (300 + 448 / 960 * (40 - 300)) * 0.72,
}
RTX_TIME_FACTOR = 2.0
"""The sample's ``-rtx`` profiles double every step and sync time."""


def test_pollux_sample_run_times_follow_the_profiles():
    workload = load_trace(f"pollux:{WORKLOAD}")
    assert workload.name == "pollux-workload-1" and workload.skipped.total == 0
    got = {j.name: j.duration_s for j in workload.jobs}
    assert got == pytest.approx(EXPECTED_S)
    assert [j.gpus for j in workload.jobs] == [2, 8, 1, 1]
    assert [j.submit_time_s for j in workload.jobs] == [0.0, 30.0, 60.0, 90.0]
    assert {j.job_class for j in workload.jobs} == {"toy"}


def test_sia_sample_reads_the_per_gpu_profile():
    shared = load_trace(f"sia:{WORKLOAD}")
    assert {j.name: j.duration_s for j in shared.jobs} == pytest.approx(EXPECTED_S)
    rtx = load_trace(f"sia:{WORKLOAD}", TraceOptions(gpu_profile="rtx"))
    assert rtx.name == "sia-workload-1"
    scaled = {name: RTX_TIME_FACTOR * s for name, s in EXPECTED_S.items()}
    assert {j.name: j.duration_s for j in rtx.jobs} == pytest.approx(scaled)


def test_a_folder_with_one_workload_is_read_and_unknown_apps_are_bad_rows(tmp_path: Path):
    assert len(load_trace(f"pollux:{WORKLOAD.parent}").jobs) == len(EXPECTED_S)
    bad = tmp_path / "workload-9.csv"
    bad.write_text(
        "name,time,application,num_replicas,batch_size\nx-0,0,toy,1,64\nx-1,5,nosuch,1,64\n"
    )
    workload = load_pollux(bad, profiles=SAMPLE / "app_profiles")
    assert [j.name for j in workload.jobs] == ["x-0"]
    assert "has no profile" in "\n".join(workload.skipped.lines())
    with pytest.raises(TraceError, match="app_profiles"):
        load_pollux(bad)
