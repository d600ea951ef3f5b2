"""Trace loaders: the schema they read, the errors they give, and what they skip."""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.job import Job, TraceError
from phalanx.simulator.traces import TraceOptions, load_trace
from phalanx.simulator.traces.generic import load_generic, write_generic
from phalanx.simulator.traces.openb import load_openb
from phalanx.simulator.traces.philly import load_philly
from phalanx.simulator.traces.synthetic import TIME_LIMIT_STEPS_S, generate, parse_spec

NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,2,T4\nn1,64000,131072,8,V100M32\n"
PODS_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def openb_dir(tmp_path: Path) -> Path:
    write(tmp_path / "openb_node_list_gpu_node.csv", NODES)
    write(
        tmp_path / "openb_pod_list_default.csv",
        PODS_HEADER
        + "p0,4000,8192,1,500,,LS,Running,0,100,0\n"
        + "p1,8000,8192,2,1000,T4|V100M32,BE,Running,5,50,5\n"
        + "p2,2000,1024,0,0,,BE,Running,6,60,6\n",
    )
    return tmp_path


def test_openb_pods_become_jobs_with_shares_models_and_cpu_only(openb_dir: Path):
    workload = load_openb(openb_dir)
    share, pair, cpu = workload.jobs
    assert (share.gpus, share.gpu_milli) == (0, 500)
    assert (pair.gpus, pair.gpu_products) == (2, ("T4", "V100M32"))
    assert (cpu.gpus, cpu.gpu_milli, cpu.cpu_milli) == (0, 0, 2000)
    assert all(math.isinf(j.duration_s) for j in workload.jobs)
    assert workload.cluster is not None
    assert [n.gpu_count for n in workload.cluster.nodes] == [2, 8]
    assert workload.cluster.nodes[1].product == "V100M32"
    compiled = workload.cluster.compile()
    assert compiled.level_names == ["node", "cluster"]


def test_openb_replay_uses_creation_and_deletion(openb_dir: Path):
    workload = load_openb(openb_dir, replay=True)
    pair = next(j for j in workload.jobs if j.name == "p1")
    assert (pair.submit_time_s, pair.duration_s) == (5.0, 45.0)


def test_openb_lists_are_found_by_short_name(openb_dir: Path):
    assert load_trace(f"openb:{openb_dir}", TraceOptions(pod_list="default")).name.endswith(
        "default"
    )
    with pytest.raises(TraceError, match="no such pod list"):
        load_openb(openb_dir, "gpushare40")


def test_bad_rows_are_skipped_with_a_summary_or_fatal_when_strict(tmp_path: Path):
    write(tmp_path / "openb_node_list_gpu_node.csv", NODES)
    pods = write(
        tmp_path / "openb_pod_list_default.csv",
        PODS_HEADER
        + "ok,1000,1024,1,1000,,LS,Running,0,10,0\n"
        + "bad,1000,1024,two,1000,,LS,Running,0,10,0\n"
        + "frac,1000,1024,2,500,,LS,Running,0,10,0\n",
    )
    workload = load_openb(tmp_path)
    assert [j.name for j in workload.jobs] == ["ok"]
    assert workload.skipped.total == 2
    lines = "\n".join(workload.skipped.lines())
    assert "field 'num_gpu' is not a number" in lines
    assert "field 'gpu_milli' is a share (below 1000), which needs num_gpu 1" in lines
    assert "openb_pod_list_default.csv:3" in lines
    with pytest.raises(TraceError) as err:
        load_openb(tmp_path, strict=True)
    assert err.value.line == 3 and err.value.field == "num_gpu"
    assert f"{pods}:3: field 'num_gpu': 'two' is not a number" in str(err.value)


def test_missing_columns_name_the_file(tmp_path: Path):
    path = write(tmp_path / "jobs.csv", "name,duration_s\nx,5\n")
    with pytest.raises(TraceError, match=r"jobs.csv:1: missing column\(s\) \['submit_time_s'\]"):
        load_generic(path)


def test_generic_csv_round_trip_and_parquet(tmp_path: Path):
    jobs = [
        Job("a", 0.0, 10.0, gpus=16, tenant="t1", job_class="LM", runtime_estimate_s=12.0),
        Job("b", 5.0, 3.0, gpu_milli=250, gpu_products=("A100", "H100"), priority=2),
        Job("c", 6.0, 3.0, gpus=4, pods=2, comm_intensity=0.5, cpu_milli=2000),
    ]
    csv_path = tmp_path / "jobs.csv"
    write_generic(jobs, csv_path)
    assert load_generic(csv_path).jobs == [
        Job(**{**j.__dict__, "source": f"jobs.csv:{i + 2}"}) for i, j in enumerate(jobs)
    ]
    table = pa.table(
        {
            "name": ["x", "y"],
            "submit_time_s": [0.0, 1.0],
            "duration_s": [5.0, -1.0],
            "gpus": [2, 1],
        }
    )
    parquet = tmp_path / "jobs.parquet"
    pq.write_table(table, parquet)
    workload = load_generic(parquet)
    assert [j.name for j in workload.jobs] == ["x"]
    assert workload.skipped.lines() == [
        "1 skipped: duration must be positive (e.g. jobs.parquet:2)"
    ]


def test_duplicate_names_are_bad_rows(tmp_path: Path):
    path = write(tmp_path / "j.csv", "name,submit_time_s,duration_s\na,0,1\na,1,1\n")
    with pytest.raises(TraceError, match=r"j.csv:3: job name repeats"):
        load_generic(path, strict=True)


def test_philly_times_are_relative_and_sorted(tmp_path: Path):
    path = tmp_path / "philly_jobs_test.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(
            "timestamp,duration,num_gpus,gpu_time,cluster\n"
            "2017-10-01 00:00:10,100.0,8,800.0,vc1\n"
            "2017-10-01 00:00:00,50.0,1,50.0,vc2\n"
            "2017-10-01 0x:00:00,50.0,1,50.0,vc2\n"
        )
    write(tmp_path / "philly_vc_node_counts.csv", "vc,node num\nvc1,3\nvc2,1\n")
    workload = load_philly(tmp_path)
    assert [(j.submit_time_s, j.gpus, j.tenant) for j in workload.jobs] == [
        (0.0, 1, "vc2"),
        (10.0, 8, "vc1"),
    ]
    assert workload.tenant_guarantees == {"vc1": 0.75, "vc2": 0.25}
    assert "field 'timestamp'" in workload.skipped.lines()[0]


def test_gavel_duration_is_steps_over_throughput(tmp_path: Path):
    table = {
        "v100": {
            "('LM (batch size 20)', 1)": {"null": 50.0},
            "('LM (batch size 20)', 2)": {"null": 80.0},
        }
    }
    with gzip.open(tmp_path / "simulation_throughputs.json.gz", "wt") as handle:
        json.dump(table, handle)
    trace = tmp_path / "vc.trace"
    write(
        trace,
        "LM (batch size 20)\tcmd\t-n\t0\t1000\t0.0\t1\n"
        "LM (batch size 20)\tcmd\t-n\t0\t1600\t7.0\t2\n"
        "LM (batch size 20)\tcmd\t-n\t0\t1600\t9.0\t4\n",
    )
    workload = load_trace(f"gavel:{trace}")
    assert [j.duration_s for j in workload.jobs] == [20.0, 20.0, 10.0]
    assert [j.tenant for j in workload.jobs] == ["vc"] * 3
    assert any("scaled linearly" in note for note in workload.notes)


def test_synthetic_is_seeded_and_follows_the_spec():
    spec = parse_spec("jobs=300,rate_per_h=120,gpus=1:1/8:1,tenants=a:3/b:1,seed=5")
    first, again = generate(spec), generate(spec)
    assert first.jobs == again.jobs
    assert {j.gpus for j in first.jobs} == {1, 8}
    tenants = [j.tenant for j in first.jobs]
    assert 0.6 < tenants.count("a") / len(tenants) < 0.9
    span_h = first.jobs[-1].submit_time_s / 3600
    assert 1.5 < span_h < 3.5
    with pytest.raises(TraceError, match="unknown setting"):
        parse_spec("jobz=3")


def test_synthetic_time_limits_round_up_overestimates_of_the_same_jobs():
    plain = generate(parse_spec("jobs=200,seed=5"))
    limited = generate(parse_spec("jobs=200,seed=5,time_limit_max_factor=4"))
    assert [replace(j, runtime_estimate_s=None) for j in limited.jobs] == plain.jobs
    assert all(j.runtime_estimate_s is None for j in plain.jobs)
    for job in limited.jobs:
        limit = job.runtime_estimate_s
        assert limit >= job.duration_s
        assert limit in TIME_LIMIT_STEPS_S or limit % TIME_LIMIT_STEPS_S[-1] == 0
        assert limit <= 2.4 * max(4 * job.duration_s, TIME_LIMIT_STEPS_S[0])  # widest step 2.33x
    for bad in ("0.5", "inf", "nan", "-2"):
        with pytest.raises(TraceError, match="time_limit_max_factor"):
            parse_spec(f"time_limit_max_factor={bad}")


def test_unknown_format_is_explained():
    with pytest.raises(TraceError, match="expected FORMAT:PATH"):
        load_trace("csv:/nowhere")
    with pytest.raises(TraceError, match="no such file or folder"):
        load_trace("philly:/nowhere/at/all")


def shared_trace(*parts: str) -> Path:
    """A path under the public traces, or a skip naming what is missing (a fresh clone has
    no ``shared/`` folder; ``PHALANX_SHARED_DIR`` points elsewhere)."""
    path = trace_path(*parts)
    reason = missing_reason(path)
    if reason:
        pytest.skip(reason)
    return path


def test_real_openb_cluster_matches_the_paper():
    workload = load_openb(shared_trace("alibaba-gpu-v2023-openb"))
    assert workload.cluster is not None
    assert len(workload.cluster.nodes) == 1213
    assert workload.cluster.gpu_count == 6212
    assert len(workload.jobs) == 8152
    assert workload.skipped.total == 0


def test_real_traces_load_without_skips():
    philly = load_trace(f"philly:{shared_trace('philly')}")
    assert len(philly.jobs) == 74_167 and philly.skipped.total == 0
    gavel = load_trace(f"gavel:{shared_trace('gavel', 'msr', 'seed=0')}")
    assert len(gavel.jobs) == 15_264
    pollux = load_trace(f"pollux:{shared_trace('pollux-adaptdl', 'workloads', 'workload-6.csv')}")
    sia = load_trace(f"sia:{shared_trace('sia', 'workloads', 'newtrace', 'workload-1.csv')}")
    assert len(pollux.jobs) == 160 and len(sia.jobs) == 960
    assert all(j.duration_s > 0 for j in pollux.jobs + sia.jobs)


def test_trace_cluster_assumptions_are_reported_only_for_that_cluster(tmp_path: Path):
    from phalanx.simulator.clusters import resolve_cluster
    from phalanx.simulator.config import SimulationConfig
    from phalanx.simulator.run import simulate

    path = write(
        tmp_path / "philly_jobs_x.csv",
        "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-01 00:00:00,60.0,8,480.0,vc1\n",
    )
    workload = load_philly(path)
    own = simulate(workload, resolve_cluster(None, workload), SimulationConfig())
    assert any("352 8-GPU PCIe hosts" in note for note in own.notes)
    other = simulate(workload, resolve_cluster("philly:4", workload), SimulationConfig())
    assert not any("352 8-GPU" in note for note in other.notes)
    assert "cluster philly:4 given instead of the trace's own (philly:352)" in other.notes
    assert any("relative to the first job" in note for note in other.notes)
