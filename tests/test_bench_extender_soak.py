"""The fixed-rate load generator end to end, small: a 64-node dry-run server, 20 pairs/s for
3 s with the default gang mix (gangs bound and finished). It guards the report's shape and
the generator's own correctness (no error against a server that has room for everything)."""

from __future__ import annotations

import subprocess
import sys

import orjson


def test_soak_report_fields() -> None:
    cmd = [
        sys.executable,
        "-m",
        "phalanx.bench.extender_soak",
        "--nodes",
        "64",
        "--rate",
        "20",
        "--duration",
        "3",
        "--hold",
        "1",
        "--rss-every",
        "0.5",
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = orjson.loads(done.stdout)
    assert report["errors"] == 0, report["errors_by_kind"]
    assert report["pairs_done"] >= 40
    assert report["gangs_not_started"] == 0
    latency = report["latency_ms"]
    for verb in ("filter+prioritize", "filter", "prioritize", "bind", "finish"):
        assert latency[verb]["n"] > 0
        assert latency[verb]["round_trip_p99_ms"] >= latency[verb]["round_trip_p50_ms"]
    assert len(report["rss_mib"]) >= 3
    assert all(mib > 0 for _, mib in report["rss_mib"])
    assert report["rss_flatness"]["judged"] is False
