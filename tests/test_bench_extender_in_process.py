"""The in-process bench of the extender's request path runs the app's handlers and reports
CPU time per filter + prioritize pair (a small run; the figures are in README)."""

from __future__ import annotations

import logging

from phalanx.bench.extender_in_process import run
from phalanx.extender import decision_log


def test_a_small_run_reports_cpu_time_per_pair():
    saved = (logging.root.handlers[:], logging.root.level, decision_log._direct_lines)
    try:
        report = run(nodes=64, pairs=5, repeats=2, gpus=1, gap_ms=0.1)
    finally:
        handlers, level, direct = saved
        logging.basicConfig(level=level, handlers=handlers, force=True)
        decision_log._direct_lines = direct
    blocks = report["cpu_ms_per_pair_by_block"]
    assert len(blocks) == 2 and all(ms > 0 for ms in blocks)
    assert report["pairs_per_cpu_s"] > 0 and report["nodes"] == 64
    assert 0 < report["server_ms_median"] <= report["server_ms_p99"]
