"""The waiting-gangs filter benchmark runs and reports its fields (figures are README's)."""

from __future__ import annotations

import json

from phalanx.bench import filter_waiting


def test_report_fields(capsys):
    filter_waiting.main(
        ["--nodes", "16", "--waiting", "0,5", "--repeats", "20", "--rate", "1000", "--json"]
    )
    report = json.loads(capsys.readouterr().out)
    assert [r["waiting_gangs"] for r in report["rows"]] == [0, 5]
    assert all(r["p99_ms"] >= r["median_ms"] > 0 for r in report["rows"])


def test_churn_keeps_the_cluster_full_while_pods_turn_over(capsys):
    argv = "--nodes 4 --waiting 0,3 --repeats 5 --rate 1000 --churn --json"
    filter_waiting.main(argv.split())
    report = json.loads(capsys.readouterr().out)
    assert report["churn"] is True
    assert [r["running_plans"] for r in report["rows"]] == [4 * 8 - 4, 4 * 8 - 4]
