"""The compiled first-fit baseline of the placement benchmarks against its numpy twin."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from phalanx.bench.first_fit import compiled_first_fit, reference_first_fit

N = 30


@settings(max_examples=100, deadline=None)
@given(
    eligible=hnp.arrays(np.bool_, N),
    masks=hnp.arrays(np.uint64, N, elements=st.integers(0, 255)),
    cpu=hnp.arrays(np.int64, N, elements=st.integers(0, 64_000)),
    memory=hnp.arrays(np.int64, N, elements=st.integers(0, 10**6)),
    members=st.integers(1, 40),
    gpus=st.integers(0, 8),
    cpu_milli=st.sampled_from((0, 4000, 16_000)),
    memory_mib=st.sampled_from((0, 65_536)),
)
def test_first_fit_matches_numpy(
    eligible, masks, cpu, memory, members, gpus, cpu_milli, memory_mib
):
    count = np.bitwise_count(masks).astype(np.int32)
    args = (eligible, count, masks, cpu, memory, members, gpus, cpu_milli, memory_mib)
    nodes, taken = compiled_first_fit(*args)
    want_nodes, want_taken = reference_first_fit(*args)
    assert nodes.tolist() == want_nodes.tolist()
    assert taken.tolist() == want_taken.tolist()


def test_placement_scaling_smoke(capsys):
    """The scaling benchmark's small version: every column filled, the written-ledger column
    included (one member's groups catch up inside the timed call)."""
    from phalanx.bench.placement_scaling import main

    assert main(["--nodes", "64", "--members", "1,4", "--repeats", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert len(cells) == 7 and all(cells), cells
