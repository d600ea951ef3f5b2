"""The beat-FGD report's table and verdict, from made-up runs (no trace needed)."""

from __future__ import annotations

from phalanx.bench.beat_fgd import render, unallocated_by_seed


def row(pod_list: str, policy: str, seed: int, allocated: float) -> dict:
    return {
        "trace": f"openb:x#{pod_list}",
        "policy": policy,
        "seed": seed,
        "gpu_allocation_ratio": allocated,
    }


def test_table_and_verdict() -> None:
    rows = [
        row("default", "fgd", 42, 0.955),
        row("default", "fgd", 43, 0.953),
        row("default", "fgd-cpu", 42, 0.960),
        row("default", "fgd-cpu", 43, 0.952),
        row("cpu250", "fgd", 42, 0.93),
        row("cpu250", "fgd-cpu", 42, 0.92),
    ]
    assert unallocated_by_seed(rows)[("default", "fgd")] == {
        42: 100 * (1 - 0.955),
        43: 100 * (1 - 0.953),
    }
    paper = {("default", "fgd"): 95.39}
    text = render(rows, paper, ["default", "cpu250", "gpushare40"])
    assert "| default | 4.61 | 4.60 | 4.40 | -0.20 | 1 of 2 |" in text
    assert "| cpu250 | - | 7.00 | 8.00 | +1.00 | 0 of 1 |" in text
    assert "| gpushare40 | - | - | - | - | - |" in text
    assert "default list: fgd-cpu leaves 4.40% unallocated; goal <= 3.5%: not met" in text
    assert text.endswith("lists where fgd-cpu's mean is worse than fgd's: cpu250")
