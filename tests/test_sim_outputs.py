"""What ``phalanx simulate`` and ``phalanx sweep`` print and draw, read by a newcomer (issue
#11): counts that add up, goodput told apart from allocation, the scorer that ran, charts with
titles and legends off the data, a glossary and a next step, a notice before compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.figure
import pytest
from click.testing import CliRunner, Result
from phalanx.simulator import compile_notice
from phalanx.simulator.cli import command as simulate_command
from phalanx.simulator.report import TABLE_ROWS
from phalanx.simulator.sweep_cli import command as sweep_command

JOB_COUNT_KEYS = ("jobs_completed", "jobs_running", "jobs_queued", "jobs_rejected", "jobs_unplaced")


def simulate(*args: str) -> Result:
    return CliRunner().invoke(simulate_command, list(args), catch_exceptions=False)


@pytest.fixture
def openb_dir(tmp_path: Path) -> Path:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,2,T4\nn1,32000,65536,4,T4\n"
    )
    (tmp_path / "openb_pod_list_default.csv").write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
        "p0,1000,1024,1,500\np1,1000,1024,1,1000\np2,1000,1024,2,1000\np3,1000,0,0,0\n"
    )
    return tmp_path


def shown(output: str, label: str) -> str:
    """The value column of a results-table row."""
    for line in output.splitlines():
        if line.startswith(label + "  "):
            return line[len(label) :].strip()
    raise AssertionError(f"no row {label!r} in\n{output}")


# ---------------------------------------------------------------- job counts
def test_table_counts_add_up_to_the_total_in_a_replay_and_a_fill(openb_dir: Path):
    labels = {key: label for key, label, _ in TABLE_ROWS}
    for args in ([], ["--trace", f"openb:{openb_dir}", "--policy", "fgd"]):
        result = simulate(*args)
        assert result.exit_code == 0, result.output
        counts = [int(shown(result.output, labels[k])) for k in JOB_COUNT_KEYS]
        assert sum(counts) == int(shown(result.output, labels["jobs_total"]))
    # Under the fill protocol nothing departs: the placed pods are still running.
    assert int(shown(result.output, "jobs still running")) > 0


# ---------------------------------------------------------------- goodput vs allocation
def test_goodput_equal_to_allocation_says_why():
    result = simulate()
    assert shown(result.output, "GPU goodput (useful work)").endswith(
        "(= allocation: no --slowdown and no preempted work lost)"
    )
    assert "(= allocation" not in shown(result.output, "GPU allocation ratio")


def test_goodput_below_allocation_is_shown_bare(tmp_path: Path):
    # a and b leave one GPU free on each of two nodes, so c's two pods must cross the
    # network where, alone, they would share a node: the slowdown model stretches c, and
    # useful work falls below the allocated GPU time.
    trace = tmp_path / "t.csv"
    trace.write_text(
        "name,submit_time_s,duration_s,gpus,pods,job_class\n"
        "a,0,1000,3,1,\nb,0,1000,3,1,\nc,1,1000,2,2,lstm\n"
    )
    cluster = tmp_path / "nodes.csv"
    cluster.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,4,T4\nn1,32000,65536,4,T4\n"
    )
    args = ["--trace", f"generic:{trace}", "--cluster", str(cluster), "--slowdown"]
    summary = json.loads(simulate(*args, "--json").stdout)
    assert summary["gpu_utilisation"] < summary["gpu_allocation_ratio"]
    assert "=" not in shown(simulate(*args).output, "GPU goodput (useful work)")


# ---------------------------------------------------------------- the scorer that ran
def test_fgd_as_policy_reports_fgd_as_the_scorer(openb_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    args = ["--trace", f"openb:{openb_dir}", "--policy", "fgd", "--seed", "3"]
    summary = json.loads(simulate(*args, "--json").stdout)
    assert summary["scorer"] == "fgd" and summary["queue_policy"] == "fifo"
    assert summary["policy"] == "fgd"
    result = simulate(*args, "--out", str(out))
    assert "policy fifo, scorer fgd, fill 1.3, seed 3" in result.output.splitlines()[0]
    report = (out / "report.md").read_text()
    assert "scorer `fgd`" in report and "`None`" not in report
    assert json.loads((out / "summary.json").read_text())["scorer"] == "fgd"


def test_no_scorer_is_said_in_words(tmp_path: Path):
    out = tmp_path / "out"
    simulate("--out", str(out))
    report = (out / "report.md").read_text()
    assert "scorer none (the engine's own placement cost)" in report and "None" not in report


# ---------------------------------------------------------------- glossary, next step
def test_the_main_job_ends_with_terms_and_a_next_command():
    lines = simulate().output.rstrip().splitlines()
    text = "\n".join(lines[-5:])
    assert lines[-1].startswith("next: phalanx simulate --policy backfill --out report/")
    for word in ("replay =", "rho =", "placement cost ="):
        assert word in text
    assert all(len(line) <= 100 for line in lines[-5:])


def test_the_next_command_keeps_the_trace_and_suggests_a_sweep(tmp_path: Path):
    trace = tmp_path / "t.csv"
    trace.write_text("name,submit_time_s,duration_s,gpus\na,0,10,1\n")
    args = ["--trace", f"generic:{trace}", "--cluster", "dgx-h100:1", "--policy", "sjf"]
    last = simulate(*args, "--out", str(tmp_path / "out")).output.rstrip().splitlines()[-1]
    assert last.startswith(f"next: phalanx sweep --trace generic:{trace} --cluster dgx-h100:1")
    assert "--policy sjf,backfill --seeds 1-3" in last


def test_json_output_has_no_glossary():
    result = simulate("--json")
    json.loads(result.stdout)
    assert "terms:" not in result.output and "next:" not in result.output


# ---------------------------------------------------------------- compile notice
def test_a_cold_kernel_cache_is_announced_on_stderr(monkeypatch):
    monkeypatch.setattr(compile_notice, "kernels_cold", lambda: True)
    result = simulate("--json")
    assert result.stderr.startswith("compiling placement kernels (first run")
    json.loads(result.stdout)
    monkeypatch.setattr(compile_notice, "kernels_cold", lambda: False)
    assert "compiling" not in simulate("--json").stderr


def test_kernels_cold_reads_numbas_cache(tmp_path: Path):
    # A fresh cache folder holds nothing compiled; asking must not compile anything either.
    code = "from phalanx.simulator.compile_notice import kernels_cold; print(kernels_cold())"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ---------------------------------------------------------------- charts
@pytest.fixture
def saved_figures(monkeypatch) -> dict[str, Any]:
    """Every figure saved, by file name, as it was when saved."""
    saved: dict[str, Any] = {}
    original = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        ax = fig.axes[0]
        fig.canvas.draw()
        saved[Path(path).name] = {
            "title": ax.get_title(),
            "axes_legend": ax.get_legend(),
            "figure_legends": fig.legends,
            "axes_box": ax.get_window_extent(),
            "legend_boxes": [legend.get_window_extent() for legend in fig.legends],
        }
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    return saved


def test_run_charts_have_titles_and_legends_off_the_data(tmp_path: Path, saved_figures):
    simulate("--policy", "backfill", "--out", str(tmp_path))
    assert {"allocation_over_time.png", "queue_over_time.png", "jct_cdf.png"} <= set(saved_figures)
    for name in ("allocation_over_time.png", "queue_over_time.png", "jct_cdf.png"):
        chart = saved_figures[name]
        title = chart["title"]
        assert "policy backfill" in title and "philly_sample" in title, (name, title)
        assert "dgx-h100:12" in title and "replay" in title
        assert chart["axes_legend"] is None
        for box in chart["legend_boxes"]:
            assert not box.overlaps(chart["axes_box"]), name


def test_sweep_charts_say_what_was_compared_and_what_the_bars_are(tmp_path: Path, saved_figures):
    args = ["--policy", "fifo,backfill", "--seeds", "1-2", "--workers", "1"]
    result = CliRunner().invoke(sweep_command, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("gpu_allocation_ratio.png", "jct_mean_s.png", "queue_delay_mean_s.png"):
        title = saved_figures[name]["title"]
        assert "backfill, fifo" in title and "philly_sample.csv" in title
        assert "dgx-h100:12" in title
        assert "bars: mean over 2 seeds; error bars: ±1 std over seeds" in title


def test_one_seed_sweep_charts_say_there_are_no_error_bars(tmp_path: Path, saved_figures):
    args = ["--policy", "fifo", "--workers", "1", "--out", str(tmp_path)]
    assert CliRunner().invoke(sweep_command, args).exit_code == 0
    assert "bars: one seed each (no error bars)" in saved_figures["jct_mean_s.png"]["title"]
