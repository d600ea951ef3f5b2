"""Bad input to ``phalanx simulate`` and ``phalanx sweep``: one ``error: ...`` line naming the
file, row or option at fault, exit status 2, never a traceback (issue #11)."""

from __future__ import annotations

import gzip
import json
import pickle
import random
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from phalanx.policies.registry import PolicyOptionError, get_queue_policy
from phalanx.simulator.cli import command as simulate_command
from phalanx.simulator.job import TraceError
from phalanx.simulator.options import parse_options
from phalanx.simulator.sweep_cli import command as sweep_command
from phalanx.simulator.traces import load_trace

HEADER = "name,submit_time_s,duration_s,gpus"
SMALL_CLUSTER = "dgx-h100:1"


def simulate(*args: str) -> Result:
    return CliRunner().invoke(simulate_command, list(args))


def assert_one_error_line(result: Result, *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr, ``error: ...`` holding every needle."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def trace(tmp_path: Path, body: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(f"{HEADER}\n{body}")
    return path


# ---------------------------------------------------------------- infinite durations
@pytest.mark.parametrize("value", ["inf", "1e400", "-inf", "Infinity"])
def test_infinite_durations_are_bad_rows(tmp_path: Path, value: str):
    path = trace(tmp_path, f"ok,0,10,1\nforever,1,{value},1\n")
    workload = load_trace(f"generic:{path}")
    assert [j.name for j in workload.jobs] == ["ok"]
    assert workload.skipped.total == 1
    (line,) = workload.skipped.lines()
    assert "field 'duration_s' is not a finite number (e.g. t.csv:3)" in line
    with pytest.raises(TraceError, match=r"t\.csv:3: field 'duration_s': .* not a finite number"):
        load_trace(f"generic:{path}", options=_strict())
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER, "--strict")
    assert_one_error_line(result, "t.csv:3", "duration_s", "not a finite number")


def test_an_infinite_submit_time_is_a_bad_row_too(tmp_path: Path):
    path = trace(tmp_path, "ok,0,10,1\nnever,1e999,10,1\n")
    assert load_trace(f"generic:{path}").skipped.total == 1


def test_a_skipped_infinite_row_does_not_keep_the_run_going(tmp_path: Path):
    path = trace(tmp_path, "ok,0,10,1\nforever,1,inf,1\n")
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["jobs_total"] == summary["jobs_completed"] == 1
    assert summary["makespan_s"] == 10


def _strict():
    from phalanx.simulator.traces import TraceOptions

    return TraceOptions(strict=True)


# ---------------------------------------------------------------- no usable job
def test_a_trace_whose_rows_are_all_bad_names_the_file(tmp_path: Path):
    path = trace(tmp_path, "a,0,inf,1\nb,x,10,1\n")
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER)
    line = assert_one_error_line(result, "t.csv", "no usable job", "all 2 rows were skipped")
    assert "not a finite number" in line


def test_a_header_only_trace_names_the_file(tmp_path: Path):
    path = trace(tmp_path, "")
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER)
    assert_one_error_line(result, "t.csv", "has no job rows")


def test_an_empty_sweep_trace_is_the_same_error(tmp_path: Path):
    path = trace(tmp_path, "")
    args = ["--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER, "--policy", "fifo,sjf"]
    result = CliRunner().invoke(sweep_command, [*args, "--out", str(tmp_path / "out")])
    assert_one_error_line(result, "t.csv", "has no job rows")


def test_trace_errors_survive_a_worker_process():
    # Sweeps run in a process pool, which pickles the error back to the parent.
    err = pickle.loads(pickle.dumps(TraceError("a.csv", "is bad", line=3, field="gpus")))
    assert str(err) == "a.csv:3: field 'gpus': is bad"
    assert (err.path, err.line, err.field) == ("a.csv", 3, "gpus")


# ---------------------------------------------------------------- boolean options
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("fAlSe", False),
    ],
)
def test_boolean_options_take_the_usual_spellings(text: str, expected: bool):
    options = parse_options((f"strict={text}",), "--policy-option")
    assert get_queue_policy("fifo", **options).strict is expected


@pytest.mark.parametrize("text", ["maybe", "on", "off", "2", "y", "truthy", ""])
def test_other_boolean_spellings_are_errors_naming_the_option(text: str):
    options = parse_options((f"strict={text}",), "--policy-option")
    with pytest.raises(PolicyOptionError, match="option 'strict' must be true or false"):
        get_queue_policy("fifo", **options)
    result = simulate("--policy-option", f"strict={text}")
    assert_one_error_line(result, "'strict'", "true or false")


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=8))
def test_a_boolean_option_is_true_false_or_an_error(text: str):
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        policy = get_queue_policy("fifo", strict=text)
    except PolicyOptionError:
        assert text.strip().lower() not in words
    else:
        assert policy.strict is words[text.strip().lower()]


# ---------------------------------------------------------------- quota without a tree
def test_quota_without_a_tree_on_a_trace_without_guarantees_says_what_to_give():
    line = assert_one_error_line(simulate("--policy", "quota"), "quota", "tree=")
    assert "__init__" not in line and "states no tenant guarantees" in line


def philly_folder(tmp_path: Path, vc_table: bool) -> Path:
    folder = tmp_path / "philly"
    folder.mkdir()
    rows = [
        "2017-10-01 00:00:00,3600,8,28800,vc_a",
        "2017-10-01 00:00:10,3600,8,28800,vc_a",
        "2017-10-01 00:00:20,1800,8,14400,vc_b",
        "2017-10-01 00:00:30,600,4,2400,vc_c",
    ]
    (folder / "philly_jobs_test.csv").write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n" + "\n".join(rows) + "\n"
    )
    if vc_table:
        (folder / "philly_vc_node_counts.csv").write_text("vc,node num\nvc_a,3\nvc_b,1\n")
    return folder


def test_quota_without_a_tree_defaults_to_the_traces_guarantees(tmp_path: Path):
    folder = philly_folder(tmp_path, vc_table=True)
    out = tmp_path / "out"
    args = ["--trace", f"philly:{folder}", "--cluster", "dgx-h100:2", "--policy", "quota"]
    result = simulate(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert "quota tree from the trace's 2 tenant guarantees (share of 16 GPUs each)" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["jobs_completed"] == summary["jobs_total"] == 4


def test_the_default_quota_tree_never_guarantees_more_than_the_cluster():
    from phalanx.policies.queue.quota_tree import QuotaTree
    from phalanx.policies.resources import Resources
    from phalanx.simulator.policy_setup import guarantee_tree

    shares = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    tree = QuotaTree.from_spec(guarantee_tree(shares, ["a", "b", "c", "d"], cluster_gpus=7))
    tree.check_capacity(Resources(7_000, 10**9, 10**9))
    assert tree.queues["d"].guaranteed.gpu_milli == 0


def test_quota_without_a_tree_on_philly_without_its_vc_table_is_an_error(tmp_path: Path):
    folder = philly_folder(tmp_path, vc_table=False)
    result = simulate("--trace", f"philly:{folder}", "--cluster", "dgx-h100:2", "--policy", "quota")
    assert_one_error_line(result, "needs a quota tree", "philly_jobs_test")


# ---------------------------------------------------------------- binary files
def test_random_bytes_as_csv_name_the_file(tmp_path: Path):
    path = tmp_path / "noise.csv"
    path.write_bytes(bytes([0x9C, 0xFF, 0x00, 0xC3]) + random.Random(1).randbytes(4096))
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER)
    assert_one_error_line(result, "noise.csv", "not UTF-8 text")


def test_gzip_bytes_named_csv_say_how_to_read_them(tmp_path: Path):
    path = tmp_path / "jobs.csv"
    path.write_bytes(gzip.compress(f"{HEADER}\na,0,10,1\n".encode()))
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER)
    assert_one_error_line(result, "jobs.csv", "gzip-compressed", "*.gz")
    renamed = path.rename(tmp_path / "jobs.csv.gz")
    result = simulate("--trace", f"generic:{renamed}", "--cluster", SMALL_CLUSTER, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["jobs_completed"] == 1


def test_a_corrupt_gz_names_the_file(tmp_path: Path):
    path = tmp_path / "jobs.csv.gz"
    path.write_bytes(b"this is not gzip at all")
    result = simulate("--trace", f"generic:{path}", "--cluster", SMALL_CLUSTER)
    assert_one_error_line(result, "jobs.csv.gz", "not a readable gzip file")


def test_binary_philly_and_openb_lists_name_the_file(tmp_path: Path):
    philly = tmp_path / "philly_jobs_x.csv"
    philly.write_bytes(b"\xff\xfe\x00garbage\x9c")
    assert_one_error_line(simulate("--trace", f"philly:{philly}"), "philly_jobs_x.csv", "UTF-8")
    (tmp_path / "openb_pod_list_default.csv").write_bytes(b"\x9c\x00\xff")
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(
        "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,2,T4\n"
    )
    result = simulate("--trace", f"openb:{tmp_path}")
    assert_one_error_line(result, "openb_pod_list_default.csv", "UTF-8")
