"""Trace loaders, one per format, behind one entry point: ``load_trace("FORMAT:PATH")``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phalanx.simulator.job import TraceError, TraceWorkload

FORMATS = ("openb", "philly", "gavel", "pollux", "sia", "generic", "synthetic")


@dataclass(frozen=True)
class TraceOptions:
    """Per-format settings the command line passes through."""

    strict: bool = False
    seed: int = 0
    pod_list: str | None = None
    node_list: str | None = None
    replay: bool = False
    worker_type: str | None = None
    gpu_profile: str = ""


def split_spec(spec: str) -> tuple[str, str]:
    fmt, sep, rest = spec.partition(":")
    if not sep or fmt not in FORMATS:
        raise TraceError(spec, f"expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")
    return fmt, rest


def load_trace(spec: str, options: TraceOptions | None = None) -> TraceWorkload:
    """Load ``FORMAT:PATH`` (``synthetic:SPEC`` for the generator).

    A trace without a single usable job is an error naming the file (and why its rows were
    skipped): run anyway, it would print a table of zeros that looks like a result.
    """
    workload = _load(spec, options or TraceOptions())
    if not workload.jobs:
        raise TraceError(workload.source, _why_empty(workload))
    return workload


def _why_empty(workload: TraceWorkload) -> str:
    skipped = workload.skipped
    if not skipped.total:
        return "has no job rows (only a header?), nothing to simulate"
    first = skipped.lines()[0]
    more = f"; {len(skipped.counts) - 1} other reason(s)" if len(skipped.counts) > 1 else ""
    return f"has no usable job: all {skipped.total} rows were skipped ({first}{more})"


def _load(spec: str, opts: TraceOptions) -> TraceWorkload:
    fmt, rest = split_spec(spec)
    if fmt == "synthetic":
        from phalanx.simulator.traces.synthetic import load_synthetic

        return load_synthetic(rest, seed=opts.seed)
    if not rest:
        raise TraceError(spec, f"give a path after '{fmt}:'")
    path = Path(rest).expanduser()
    if not path.exists():
        raise TraceError(str(path), "no such file or folder")
    if fmt == "openb":
        from phalanx.simulator.traces.openb import DEFAULT_NODE_LIST, DEFAULT_POD_LIST, load_openb

        return load_openb(
            path,
            opts.pod_list or DEFAULT_POD_LIST,
            node_list=opts.node_list or DEFAULT_NODE_LIST,
            replay=opts.replay,
            strict=opts.strict,
        )
    if fmt == "philly":
        from phalanx.simulator.traces.philly import load_philly

        return load_philly(path, strict=opts.strict)
    if fmt == "gavel":
        from phalanx.simulator.traces.gavel import DEFAULT_WORKER_TYPE, load_gavel

        return load_gavel(
            path, worker_type=opts.worker_type or DEFAULT_WORKER_TYPE, strict=opts.strict
        )
    if fmt == "pollux":
        from phalanx.simulator.traces.pollux import load_pollux

        return load_pollux(path, strict=opts.strict)
    if fmt == "sia":
        from phalanx.simulator.traces.sia import load_sia

        return load_sia(path, gpu=opts.gpu_profile, strict=opts.strict)
    from phalanx.simulator.traces.generic import load_generic

    return load_generic(path, strict=opts.strict)
