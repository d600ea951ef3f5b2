"""Hostile files for the commands that read them: ``phalanx topology validate FILE``,
``phalanx place --cluster FILE --gang FILE`` and ``phalanx simulate --trace philly:FILE`` /
``openb:FOLDER``. A truncated, binary, wrongly typed, huge-numbered, NaN-holding or deeply
nested file is bad input: exit status 2 with ``error: ...`` on stderr (one line, or one per
problem where the command lists every problem of a document), never a traceback.

Hypothesis (derandomized, no database) draws the mutations; the commands run in process
through click's CliRunner with its standalone mode, as the installed ``phalanx`` runs them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from phalanx.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PHILLY = (
    "timestamp,duration,num_gpus,cluster\n"
    "2017-10-03 10:00:00,3600,8,vc1\n"
    "2017-10-03 10:05:00,60,1,vc2\n"
    "2017-10-03 10:06:00,120,2,vc1\n"
)
OPENB_NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,65536,2,T4\nn1,64000,131072,8,V100M32\n"
OPENB_PODS = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
    "p0,4000,8192,1,500,,LS,Running,0,100,0\n"
    "p1,8000,8192,2,1000,T4|V100M32,BE,Running,5,50,5\n"
)
SEEDS = {
    "cluster.json": (EXAMPLES / "clusters" / "pcie-lab.json").read_bytes(),
    "cluster.yaml": (EXAMPLES / "clusters" / "mixed-h100-l40s.yaml").read_bytes(),
    "gang.json": (EXAMPLES / "gangs" / "llm-16x8.json").read_bytes(),
    "gang.yaml": (EXAMPLES / "gangs" / "tp-groups.yaml").read_bytes(),
    "philly.csv": PHILLY.encode(),
    "openb_pod_list_default.csv": OPENB_PODS.encode(),
    "openb_node_list_gpu_node.csv": OPENB_NODES.encode(),
}
NUMBER = re.compile(rb"(?<![\w.])-?\d+(\.\d+)?(?![\w.])")
DEEP = 3000
HOSTILE_NUMBERS = (
    b"NaN",
    b".nan",
    b"nan",
    b"inf",
    b".inf",
    b"-.inf",
    b"1e400",
    b"9" * 400,
    b"9" * 5000,
    b"99999999999999999999",
    b"-1",
    b"-9223372036854775809",
    b"1e-400",
    b"0",
    b"0x7fffffffffffffff",
    b"1_000",
    b'"8"',
    b"[]",
    b"{}",
    b"null",
    b"true",
    b"2017-13-45",
    b"!!binary xyz",
    b"!!python/object:os.system",
    b"&a [*a, *a]",
    b"[" * DEEP + b"]" * DEEP,
)
"""In place of one number of the file. Huge finite durations are left out: the replay's time
series then takes one sample per coarsening step up to the end (about 16 s for 1e308 s), a
slow run rather than a crash."""
WHOLE_FILES = (
    b"",
    b"\x00" * 16,
    b"null",
    b"[]",
    b'"text"',
    b"- a\n- b\n",
    b"\xff\xfe{\x00}\x00",
    b"{" * DEEP,
    b"[" * DEEP + b"]" * DEEP,
    b"a: &a [*a]\n",
    b'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n".encode()
        for i in range(8)
    ),
)
"""Instead of the file: empty, binary, a bare value, a list that contains itself, and the
"billion laughs" (nine aliases, each repeating the one before nine times)."""

Draw = Callable[[int], int]


def mutate(draw: Draw, data: bytes) -> bytes:
    op = draw(8)
    at = draw(len(data) + 1)
    if op == 0:
        return data[:at]
    if op == 1:
        noise = bytes(draw(256) for _ in range(1 + draw(8)))
        return data[:at] + noise + data[at:]
    if op in (2, 3, 4):
        numbers = list(NUMBER.finditer(data))
        if numbers:
            found = numbers[draw(len(numbers))]
            hostile = HOSTILE_NUMBERS[draw(len(HOSTILE_NUMBERS))]
            return data[: found.start()] + hostile + data[found.end() :]
    if op == 5:
        return data[:at] + b"[" * DEEP + b"]" * DEEP + data[at:]
    if op == 6:
        return b"\xef\xbb\xbf" + data
    return WHOLE_FILES[draw(len(WHOLE_FILES))]


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


def assert_bad_input_is_reported(
    result: Result, allowed: tuple[int, ...], one_line: bool = False
) -> None:
    """Exit status in ``allowed``; for 2, ``error:`` lines only: one, or (unless ``one_line``)
    a count of a document's problems followed by one line each."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-2000:]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in allowed, (result.exit_code, output[-1000:])
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and all(line.startswith("error: ") for line in lines), result.stderr
        if one_line or len(lines) == 1:
            assert len(lines) == 1, result.stderr
        else:  # a document's every problem: a count, then one line each
            count = re.search(r": (\d+) problems:?$", lines[0])
            assert count and int(count[1]) == len(lines) - 1, result.stderr


FILE_FUZZ = settings(
    max_examples=20,
    derandomize=True,
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate),  # shrinking a failure here takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _mutated(data: st.DataObject, seed: str) -> bytes:
    draw: Draw = lambda n: data.draw(st.integers(0, n - 1)) if n > 1 else 0  # noqa: E731
    body = SEEDS[seed]
    for _ in range(1 + draw(2)):
        body = mutate(draw, body)
    return body


@FILE_FUZZ
@given(data=st.data(), seed=st.sampled_from(["cluster.json", "cluster.yaml"]))
def test_topology_validate_reports_a_mutated_cluster_file(data, seed):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / seed
        path.write_bytes(_mutated(data, seed))
        result = invoke(["topology", "validate", str(path)])
    assert_bad_input_is_reported(result, (0, 2), one_line=False)


@settings(FILE_FUZZ, max_examples=12)  # each run loads the placement kernels' cache
@given(
    data=st.data(),
    seed=st.sampled_from(["gang.json", "gang.yaml", "cluster.json", "cluster.yaml"]),
)
def test_place_reports_a_mutated_gang_or_cluster_file(data, seed):
    with tempfile.TemporaryDirectory() as folder:
        gang = Path(folder) / ("gang.json" if seed.startswith("cluster") else seed)
        cluster = Path(folder) / (seed if seed.startswith("cluster") else "cluster.json")
        gang.write_bytes(SEEDS[gang.name])
        cluster.write_bytes(SEEDS[cluster.name])
        (cluster if seed.startswith("cluster") else gang).write_bytes(_mutated(data, seed))
        result = invoke(["place", "--cluster", str(cluster), "--gang", str(gang)])
    assert_bad_input_is_reported(result, (0, 1, 2), one_line=False)


@FILE_FUZZ
@given(data=st.data(), strict=st.booleans())
def test_simulate_reports_a_mutated_philly_trace(data, strict):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "philly.csv"
        path.write_bytes(_mutated(data, "philly.csv"))
        args = ["simulate", "--trace", f"philly:{path}", "--cluster", "dgx-h100:2", "--json"]
        result = invoke([*args, "--strict"] if strict else args)
    assert_bad_input_is_reported(result, (0, 2), one_line=True)


@FILE_FUZZ
@given(
    data=st.data(),
    seed=st.sampled_from(["openb_pod_list_default.csv", "openb_node_list_gpu_node.csv"]),
)
def test_simulate_reports_a_mutated_openb_list(data, seed):
    with tempfile.TemporaryDirectory() as folder:
        for name in ("openb_pod_list_default.csv", "openb_node_list_gpu_node.csv"):
            (Path(folder) / name).write_bytes(SEEDS[name])
        (Path(folder) / seed).write_bytes(_mutated(data, seed))
        result = invoke(["simulate", "--trace", f"openb:{folder}", "--json", "--no-progress"])
    assert_bad_input_is_reported(result, (0, 2), one_line=True)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.yaml", "a: &a [*a, *a]\n", "a YAML alias refers to itself"),
        ("c.yaml", WHOLE_FILES[-1].decode(), "repeat more than 100000 values"),
        ("c.yaml", "[" * DEEP + "]" * DEEP, "nested too deeply to read as YAML"),
        ("c.json", "[" * DEEP + "]" * DEEP, "nested too deeply to read as JSON"),
        ("c.json", '{"name": ' + "9" * 5000 + "}", "invalid JSON: Exceeds the limit"),
        ("c.yaml", "name: x\nnode_pools: [{name: a, count: " + "9" * 400 + "}]\n", "within"),
    ],
)
def test_documents_that_used_to_crash_the_reader(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    result = invoke(["topology", "validate", str(path)])
    assert_bad_input_is_reported(result, (2,), one_line=False)
    assert message in result.stderr


def test_a_huge_openb_count_is_a_row_error(tmp_path):
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(OPENB_NODES)
    pods = OPENB_PODS.replace("p0,4000,", "p0,99999999999999999999,")
    (tmp_path / "openb_pod_list_default.csv").write_text(pods)
    result = invoke(["simulate", "--trace", f"openb:{tmp_path}", "--strict", "--no-progress"])
    assert_bad_input_is_reported(result, (2,), one_line=True)
    assert "cpu_milli" in result.stderr and "beyond 9007199254740992" in result.stderr
