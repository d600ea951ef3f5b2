"""The policy comparison reports stop with one error line when the public traces are absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from phalanx.bench import policy_table, sia_fairness
from phalanx.bench.shared_data import SHARED_DIR_ENV


@pytest.mark.parametrize("report", [policy_table, sia_fairness])
def test_reports_without_the_traces_say_what_is_missing(
    report: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    assert report.main([]) == 2  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert err.startswith("error: public trace data not found") and SHARED_DIR_ENV in err


def test_unknown_policy_names_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    reason = policy_table.missing_reason(policy_table.trace_path("philly"))
    if reason:
        pytest.skip(reason)
    assert policy_table.main(["--policies", "fifo,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
