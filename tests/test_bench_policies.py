"""The policy benchmarks' set-up, and their answer when the shared traces are absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from phalanx.bench import drf_speed, pollux_tiresias


def test_pollux_cluster_is_16_nodes_of_4_gpus() -> None:
    compiled = pollux_tiresias.pollux_cluster().compile()
    assert compiled.gpu_count.tolist() == [4] * 16


def test_pollux_tiresias_uses_pollux_settings() -> None:
    configs = pollux_tiresias.configs(60.0)
    tiresias = configs["tiresias"]
    assert tiresias.policy_options == {"thresholds_gpu_s": [16 * 3600.0]}
    assert tiresias.restart_delay_s == configs["fifo"].restart_delay_s == 30.0
    assert tiresias.scheduling_interval_s == configs["fifo"].scheduling_interval_s == 60.0


def test_pollux_tiresias_says_when_the_traces_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PHALANX_SHARED_DIR", str(tmp_path))
    assert pollux_tiresias.main([]) == pollux_tiresias.EXIT_NO_DATA
    assert "public trace data not found" in capsys.readouterr().err


def test_drf_speed_runs_the_sample_without_shared_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALANX_SHARED_DIR", str(tmp_path))
    assert [label for label, _, _ in drf_speed.cases(1000)] == [
        "sample, 96 GPUs",
        "sample, 32 GPUs",
    ]
