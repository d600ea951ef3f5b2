"""Reproduce the FGD paper's allocation table (Weng et al., ATC '23, Fig. 9a and 11-14).

For every openb pod list in the authors' result tables, every policy and every seed, run the
fill protocol to 130% arrived GPU demand on the 1,213-node openb cluster, and print our mean
allocation ratio next to the paper's (the authors' own per-run results,
``fgd_expected_results/analysis_allo_discrete.csv.gz``, column 130). A policy whose mean is
more than 1 percentage point from the paper's is listed with its gap.

    python -m phalanx.bench.fgd_table --save runs.jsonl     # 17 lists x 6 policies x seeds 42-51
    python -m phalanx.bench.fgd_table --lists default,cpu050 --seeds 42-43 --workers 2
    python -m phalanx.bench.fgd_table --load runs.jsonl     # the table from saved runs
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from phalanx.bench.shared_data import missing_reason, trace_path
from phalanx.simulator.config import SimulationConfig
from phalanx.simulator.fill import FGD_DEMAND
from phalanx.simulator.sweep import expand, parse_seeds, run_local
from phalanx.simulator.traces import TraceOptions

OPENB_DIR = "alibaba-gpu-v2023-openb"
PAPER_TABLE = ("fgd_expected_results", "analysis_allo_discrete.csv.gz")
"""The authors' per-run results, under the openb trace folder."""
DEMAND_COLUMN = "130"
POLICIES = {
    "01-Random": "random",
    "02-DotProd": "dotprod",
    "03-GpuClustering": "gpu-clustering",
    "04-GpuPacking": "gpu-packing",
    "05-BestFit": "bestfit",
    "06-FGD": "fgd",
}
BAND_PCT = 1.0
"""The reproduction target: each mean within 1 percentage point of the paper's."""
LIST_PREFIX = "openb_pod_list_"
EXIT_NO_DATA = 2
"""Exit status when the public trace is absent: bad input, as for every phalanx command."""


def openb_dir() -> Path:
    """The public openb trace (``$PHALANX_SHARED_DIR/traces/...``; not in a fresh clone)."""
    return trace_path(OPENB_DIR)


def paper_table() -> Path:
    return openb_dir().joinpath(*PAPER_TABLE)


def paper_means(path: Path | None = None) -> dict[tuple[str, str], float]:
    """(pod list, our policy name) -> the paper's mean allocation ratio (%) over its seeds."""
    path = path or paper_table()
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["workload"].removeprefix(LIST_PREFIX), POLICIES[row["sc_policy"]])
            values[key].append(float(row[DEMAND_COLUMN]))
    return {k: float(np.mean(v)) for k, v in values.items()}


def run(
    lists: list[str],
    policies: list[str],
    seeds: list[int],
    workers: int | None,
    save: Path | None = None,
) -> list[dict]:
    """Run every (seed, list, policy), seed by seed so that a partial run already covers
    every cell; with ``save``, each finished run is appended to that JSON-lines file and runs
    already in it are not repeated."""
    done_rows = _load_rows(save) if save and save.exists() else []
    done = {(r["trace"].rsplit("#", 1)[-1], r["policy"], r["seed"]) for r in done_rows}
    specs = [
        spec
        for seed in seeds
        for spec in expand(
            [f"openb:{openb_dir()}"],
            policies,
            [seed],
            [None],
            base=SimulationConfig(),
            trace_options=TraceOptions(),
            demand=FGD_DEMAND,
            pod_lists=lists,
        )
        if (spec.trace_options.pod_list, spec.config.policy, seed) not in done
    ]
    started = time.perf_counter()
    finished = 0

    def progress(row: dict) -> None:
        nonlocal finished
        finished += 1
        if save is not None:
            with save.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
        elapsed = time.perf_counter() - started
        print(
            f"\r{finished}/{len(specs)} runs, {elapsed:.0f} s", end="", file=sys.stderr, flush=True
        )

    rows = run_local(specs, workers, on_done=progress) if specs else []
    print(file=sys.stderr)
    return done_rows + rows


def _load_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ours_by_key(rows: list[dict]) -> dict[tuple[str, str], tuple[float, float, int, float]]:
    """(list, policy) -> (mean %, std %, runs, mean seconds per run)."""
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        grouped[(row["trace"].rsplit("#", 1)[-1], row["policy"])].append(row)
    return {
        key: (
            100 * float(np.mean([r["gpu_allocation_ratio"] for r in group])),
            100 * float(np.std([r["gpu_allocation_ratio"] for r in group])),
            len(group),
            float(np.mean([r["wall_s"] for r in group])),
        )
        for key, group in grouped.items()
    }


def render(
    ours: dict, paper: dict[tuple[str, str], float], lists: list[str], policies: list[str]
) -> str:
    head = "| pod list | " + " | ".join(policies) + " |"
    lines = [
        "Allocation ratio (%) at 130% arrived demand: ours / paper (gap, points)",
        "",
        head,
        "|---|" + "---|" * len(policies),
    ]
    misses = []
    for name in lists:
        cells = []
        for policy in policies:
            mine = ours.get((name, policy))
            theirs = paper.get((name, policy))
            if mine is None or theirs is None:
                cells.append("-")
                continue
            gap = mine[0] - theirs
            mark = "" if abs(gap) <= BAND_PCT else " **x**"
            cells.append(f"{mine[0]:.2f} / {theirs:.2f} ({gap:+.2f}){mark}")
            if abs(gap) > BAND_PCT:
                misses.append((name, policy, gap))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = sum(1 for n in lists for p in policies if (n, p) in ours and (n, p) in paper)
    lines += ["", f"within {BAND_PCT:g} point: {total - len(misses)} of {total} cells"]
    by_policy: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for name, policy, gap in misses:
        by_policy[policy].append((name, gap))
    for policy in policies:
        missed = by_policy.get(policy)
        if missed:
            listed = ", ".join(f"{name} {gap:+.2f}" for name, gap in missed)
            lines.append(f"- {policy} misses the band on {len(missed)} list(s): {listed}")
    runs = [v[2] for v in ours.values()]
    secs = [v[3] for v in ours.values()]
    if runs:
        lines.append(
            f"runs per cell: {min(runs)}-{max(runs)}; mean time per run {np.mean(secs):.1f} s"
        )
    return "\n".join(lines)


def openb_parser(description: str) -> argparse.ArgumentParser:
    """The options every openb pod-list report takes (lists, seeds, workers, save, load)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--lists", help="pod lists (short names; default: every list)")
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument(
        "--save",
        type=Path,
        help="JSON-lines file: finished runs are appended, and skipped when run again",
    )
    parser.add_argument("--load", type=Path, help="only print the table from a saved file")
    return parser


def paper_and_lists(args: argparse.Namespace) -> tuple[dict, list[str]] | None:
    """The paper's means and the pod lists ``--lists`` names (every list of the paper's table
    by default); None, with the reason printed, when the table is absent."""
    reason = missing_reason(paper_table())
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return None
    paper = paper_means()
    all_lists = sorted({name for name, _ in paper})
    return paper, [x for x in (args.lists or ",".join(all_lists)).split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = openb_parser(__doc__.splitlines()[0])
    parser.add_argument("--policies", default=",".join(POLICIES.values()))
    args = parser.parse_args(argv)
    chosen = paper_and_lists(args)
    if chosen is None:
        return EXIT_NO_DATA
    paper, lists = chosen
    policies = [x for x in args.policies.split(",") if x]
    if args.load:
        rows = _load_rows(args.load)
    else:
        rows = run(lists, policies, parse_seeds(args.seeds), args.workers, args.save)
    print(render(ours_by_key(rows), paper, lists, policies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
