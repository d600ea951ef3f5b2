"""``phalanx simulate`` and ``phalanx sweep`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from phalanx.simulator.cli import command as simulate_command
from phalanx.simulator.sweep import aggregate, parse_seeds
from phalanx.simulator.sweep_cli import command as sweep_command

from phalanx.cli import main

REQUIRED_KEYS = {
    "gpu_allocation_ratio",
    "gpu_utilisation",
    "fragmentation_ratio",
    "jct_mean_s",
    "jct_p50_s",
    "jct_p99_s",
    "queue_delay_mean_s",
    "makespan_s",
    "jain_fairness",
    "ftf_rho_max",
    "preemptions",
    "jobs_completed",
    "jobs_total",
}


def run(args: list[str], cmd=simulate_command):
    return CliRunner().invoke(cmd, args, catch_exceptions=False)


def test_no_arguments_runs_the_bundled_sample():
    result = CliRunner().invoke(main, ["simulate"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "philly_sample on dgx-h100:12 (96 GPUs)" in result.output
    assert "JCT p99" in result.output and "jobs completed                300" in result.output


def test_json_has_the_documented_keys():
    result = run(["--json"])
    assert result.exit_code == 0
    summary = json.loads(result.output)
    assert summary.keys() >= REQUIRED_KEYS
    assert summary["jobs_completed"] == summary["jobs_total"] == 300
    assert 0 < summary["gpu_allocation_ratio"] <= 1


def test_out_writes_csv_timeseries_plots_and_report(tmp_path: Path):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "name,submit_time_s,duration_s,gpus,tenant\n"
        "a,0,100,8,x\nb,10,50,16,y\nc,20,30,4,x\nd,25,5,1,y\n"
    )
    out = tmp_path / "out"
    result = run(
        ["--trace", f"generic:{trace}", "--cluster", "dgx-h100:2", "--out", str(out), "--slowdown"]
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"jobs.csv", "timeseries.csv", "tenants.csv", "summary.json", "report.md"} <= names
    assert {"allocation_over_time.png", "queue_over_time.png", "jct_cdf.png"} <= names
    jobs = (out / "jobs.csv").read_text().splitlines()
    assert jobs[0].startswith("name,tenant,") and len(jobs) == 5
    assert "## Tenants" in (out / "report.md").read_text()


def test_fill_protocol_on_an_openb_style_folder(tmp_path: Path):
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,2,T4\nn1,32000,65536,4,T4\n"
    )
    (tmp_path / "openb_pod_list_default.csv").write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
        "p0,1000,1024,1,500\np1,1000,1024,1,1000\np2,1000,1024,2,1000\np3,1000,0,0,0\n"
    )
    result = run(["--trace", f"openb:{tmp_path}", "--policy", "fgd", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["protocol"] == "fill 1.3"
    assert summary["arrived_demand"] <= 1.3
    assert (
        summary["jobs_unplaced"] + summary["jobs_running"] + summary["jobs_rejected"]
        == (summary["jobs_total"])
    )


def test_bad_input_is_an_error_line_and_status_2(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,submit_time_s,duration_s\nx,zero,5\n")
    good = tmp_path / "good.csv"
    good.write_text("name,submit_time_s,duration_s\nx,0,5\n")
    cases = [
        (["--trace", "nosuch:thing"], "expected FORMAT:PATH"),
        (["--trace", f"generic:{bad}", "--cluster", "dgx-h100:1", "--strict"], "bad.csv:2"),
        (["--policy", "nosuch"], "unknown queue policy 'nosuch'"),
        (["--cluster", "nosuch-gpu:4"], "neither a preset nor a file"),
        (["--trace", f"generic:{good}"], "no cluster of its own"),
        (["--trace", f"generic:{bad}", "--cluster", "dgx-h100:1"], "bad.csv: has no usable job"),
        (["--reserve-ttl", "5", "--bind-delay", "9"], "bind delay"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(simulate_command, args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_skipped_rows_are_reported(tmp_path: Path):
    trace = tmp_path / "t.csv"
    trace.write_text("name,submit_time_s,duration_s,gpus\nok,0,10,1\nbad,0,-1,1\n")
    result = CliRunner().invoke(
        simulate_command, ["--trace", f"generic:{trace}", "--cluster", "dgx-h100:1"]
    )
    assert result.exit_code == 0
    assert "note: 1 skipped: duration must be positive (e.g. t.csv:3)" in result.output


def test_sweep_compares_policies_and_clusters(tmp_path: Path):
    out = tmp_path / "sweep"
    result = run(
        [
            "--policy",
            "fifo",
            "--policy",
            "sjf",
            "--cluster",
            "small=dgx-h100:8",
            "--cluster",
            "big=dgx-h100:16",
            "--seeds",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
        cmd=sweep_command,
    )
    assert result.exit_code == 0, result.output
    assert {"runs.csv", "comparison.csv", "comparison.md", "gpu_allocation_ratio.png"} <= {
        p.name for p in out.iterdir()
    }
    table = (out / "comparison.md").read_text()
    assert table.count("| generic:") == 4
    assert "small" in table and "big" in table


def test_sweep_without_ray_says_how_to_get_it(tmp_path: Path):
    result = CliRunner().invoke(
        sweep_command, ["--ray", "auto", "--out", str(tmp_path / "o"), "--workers", "1"]
    )
    assert result.exit_code == 2
    assert "pip install 'phalanx[ray]'" in result.output


def test_seeds_and_aggregation():
    assert parse_seeds("42-44,7") == [42, 43, 44, 7]
    rows = [
        {"trace": "t", "cluster": "c", "policy": "p", "scorer": "", "gpu_allocation_ratio": v}
        for v in (0.5, 0.7)
    ]
    (row,) = aggregate(rows)
    assert row["runs"] == 2
    assert row["gpu_allocation_ratio"] == 0.6
    assert abs(row["gpu_allocation_ratio_std"] - 0.1) < 1e-12


def test_json_stays_json_and_skipped_rows_still_show_on_stderr(tmp_path: Path):
    trace = tmp_path / "t.csv"
    trace.write_text("name,submit_time_s,duration_s,gpus\nok,0,10,1\nbad,0,abc,1\n")
    result = CliRunner().invoke(
        simulate_command, ["--trace", f"generic:{trace}", "--cluster", "dgx-h100:1", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_skipped"] == 1
    assert "note: 1 skipped: field 'duration_s' is not a number (e.g. t.csv:3)" in result.stderr


def test_sweep_takes_comma_lists_and_reports_skipped_rows(tmp_path: Path):
    trace = tmp_path / "t.csv"
    trace.write_text("name,submit_time_s,duration_s,gpus\nok,0,10,1\nlate,5,20,2\nbad,0,-1,1\n")
    out = tmp_path / "sweep"
    args = ["--trace", f"generic:{trace}", "--cluster", "dgx-h100:1", "--policy", "fifo,sjf"]
    result = CliRunner().invoke(sweep_command, [*args, "--workers", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "comparison.md").read_text()
    assert "| fifo |" in table and "| sjf |" in table
    why = "1 trace rows skipped: 1 skipped: duration must be positive (e.g. t.csv:4)"
    assert why in table
    assert f"note: generic:{trace}: {why}" in result.stderr
    assert "rows_skipped_why" in (out / "runs.csv").read_text().splitlines()[0]


def test_sweep_on_ray_submits_every_run_and_collects_the_rows(tmp_path: Path, monkeypatch):
    # A stand-in for Ray's task API (init, remote, wait, get), running tasks in this process:
    # Ray itself is an optional extra, so this checks the wiring of ``--ray ADDRESS``.
    import sys
    import types

    calls: dict[str, object] = {}

    class Ref:
        def __init__(self, value):
            self.value = value

    def remote(fn):
        return types.SimpleNamespace(remote=lambda *a: Ref(fn(*a)))

    def wait(refs, num_returns):
        return refs[:num_returns], refs[num_returns:]

    fake = types.SimpleNamespace(
        init=lambda address, **kw: calls.setdefault("address", address),
        remote=remote,
        wait=wait,
        get=lambda ref: ref.value,
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    out = tmp_path / "sweep"
    args = ["--policy", "fifo,sjf", "--seeds", "1-2", "--ray", "ray://head:10001"]
    result = CliRunner().invoke(sweep_command, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert calls["address"] == "ray://head:10001"
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 4
    assert "| fifo |" in (out / "comparison.md").read_text()


def node_list_file(tmp_path: Path) -> Path:
    """What ``kubectl get nodes -o json`` saves: a NodeList of two 8-GPU H100 nodes."""
    from tests.topology_strategies import gfd_labels, kube_node

    items = [kube_node(f"gpu-{i}", labels=gfd_labels()) for i in range(2)]
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": items}))
    return path


def test_simulate_and_sweep_take_a_kubernetes_node_list_as_the_cluster(tmp_path: Path):
    nodes = node_list_file(tmp_path)
    result = run(["--cluster", str(nodes), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["cluster"] == "nodes" and summary["cluster_gpus"] == 16
    out = tmp_path / "sweep"
    args = ["--cluster", f"kube={nodes}", "--workers", "1", "--out", str(out), "--json"]
    result = CliRunner().invoke(sweep_command, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["cluster"] == "kube" and row["runs"] == 1


def test_a_malformed_node_list_is_one_error_line(tmp_path: Path):
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"kind": "NodeList", "items": "not a list"}))
    result = CliRunner().invoke(simulate_command, ["--cluster", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "items" in result.stderr
    assert "Traceback" not in result.output


def test_sweep_progress_goes_to_stderr_when_asked_even_if_piped(tmp_path: Path):
    args = ["--policy", "fifo,sjf", "--workers", "1", "--out", str(tmp_path), "--json"]
    shown = CliRunner().invoke(sweep_command, [*args, "--progress"])
    assert shown.exit_code == 0, shown.output
    assert "sweep: 100%" in shown.stderr and "2/2" in shown.stderr
    assert len(json.loads(shown.stdout)) == 2
    for quiet in ([*args, "--no-progress"], args):  # CliRunner's stderr is no terminal
        result = CliRunner().invoke(sweep_command, quiet)
        assert result.exit_code == 0 and "sweep:" not in result.stderr
