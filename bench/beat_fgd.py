"""FGD against a scorer meant to beat it: GPU left unallocated at 130% arrived demand.

Runs the FGD paper's fill protocol (:mod:`phalanx.bench.fgd_table`) for ``fgd`` and the
challenger (``fgd-cpu`` by default) in the same run, over the openb pod lists and seeds, and
prints for each list the unallocated share of GPU capacity (100 - allocation %) of both, the
paper's FGD figure, the difference, and on how many seeds the challenger was at least as good.
The goal it checks (issue #14): at most 3.5% unallocated on the default list, and no list
where the challenger's mean is worse than FGD's.

    python -m phalanx.bench.beat_fgd --workers 2 --save beat.jsonl   # 17 lists x seeds 42-51
    python -m phalanx.bench.beat_fgd --lists default,cpu250 --seeds 42-44
    python -m phalanx.bench.beat_fgd --load beat.jsonl               # the table from saved runs
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np
from phalanx.bench.fgd_table import (
    EXIT_NO_DATA,
    _load_rows,
    openb_parser,
    paper_and_lists,
    run,
)
from phalanx.simulator.sweep import parse_seeds

BASELINE = "fgd"
CHALLENGER = "fgd-cpu"
DEFAULT_LIST = "default"
GOAL_DEFAULT_UNALLOCATED_PCT = 3.5
"""Issue #14's target on the default list (FGD's paper figure is 4.61%)."""


def unallocated_by_seed(rows: list[dict]) -> dict[tuple[str, str], dict[int, float]]:
    """(pod list, policy) -> seed -> unallocated % of GPU capacity at the end of the fill."""
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        key = (row["trace"].rsplit("#", 1)[-1], row["policy"])
        out[key][int(row["seed"])] = 100.0 * (1.0 - float(row["gpu_allocation_ratio"]))
    return out


def render(
    rows: list[dict],
    paper: dict[tuple[str, str], float],
    lists: list[str],
    challenger: str = CHALLENGER,
) -> str:
    """The per-list table and the goal's verdict."""
    by_seed = unallocated_by_seed(rows)
    lines = [
        f"GPU unallocated (%) at 130% arrived demand: {BASELINE} vs {challenger} "
        "(means over the seeds both ran; lower is better)",
        "",
        f"| pod list | FGD paper | {BASELINE} | {challenger} | difference | seeds no worse |",
        "|---|---|---|---|---|---|",
    ]
    worse: list[str] = []
    default_mean: float | None = None
    for name in lists:
        base = by_seed.get((name, BASELINE), {})
        mine = by_seed.get((name, challenger), {})
        seeds = sorted(set(base) & set(mine))
        theirs = paper.get((name, BASELINE))
        paper_cell = f"{100.0 - theirs:.2f}" if theirs is not None else "-"
        if not seeds:
            lines.append(f"| {name} | {paper_cell} | - | - | - | - |")
            continue
        b = float(np.mean([base[s] for s in seeds]))
        m = float(np.mean([mine[s] for s in seeds]))
        no_worse = sum(mine[s] <= base[s] + 1e-9 for s in seeds)
        lines.append(
            f"| {name} | {paper_cell} | {b:.2f} | {m:.2f} | {m - b:+.2f} | "
            f"{no_worse} of {len(seeds)} |"
        )
        if m > b + 1e-9:
            worse.append(name)
        if name == DEFAULT_LIST:
            default_mean = m
    lines.append("")
    if default_mean is not None:
        met = default_mean <= GOAL_DEFAULT_UNALLOCATED_PCT
        lines.append(
            f"default list: {challenger} leaves {default_mean:.2f}% unallocated; goal "
            f"<= {GOAL_DEFAULT_UNALLOCATED_PCT:g}%: {'met' if met else 'not met'}"
        )
    lines.append(
        f"lists where {challenger}'s mean is worse than {BASELINE}'s: "
        + (", ".join(worse) if worse else "none")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = openb_parser(__doc__.splitlines()[0])
    parser.add_argument("--challenger", default=CHALLENGER, help="scorer to compare with fgd")
    args = parser.parse_args(argv)
    chosen = paper_and_lists(args)
    if chosen is None:
        return EXIT_NO_DATA
    paper, lists = chosen
    if args.load:
        rows = _load_rows(args.load)
    else:
        policies = [BASELINE, args.challenger]
        rows = run(lists, policies, parse_seeds(args.seeds), args.workers, args.save)
    print(render(rows, paper, lists, args.challenger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
