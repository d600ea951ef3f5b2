"""Command-line plumbing shared by ``phalanx simulate`` and ``phalanx sweep``: option values,
user-facing errors, and the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import yaml
from phalanx.simulator.job import TraceError

EXIT_USAGE = 2
YAML_BOOLEAN_WORDS = ("true", "false", "yes", "no")
"""The YAML booleans kept as booleans in ``KEY=VALUE`` options (not ``on``/``off``)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input, reported as ``error: ...`` with exit status 2."""
    from phalanx.policies.registry import PolicyOptionError, UnknownPolicyError
    from phalanx.scheduler.gang import GangSpecError
    from phalanx.simulator.clusters import ClusterChoiceError
    from phalanx.simulator.sweep import RayMissingError
    from phalanx.topology.clusterfile import ClusterFileError

    return (
        TraceError,
        ClusterChoiceError,
        ClusterFileError,
        UnknownPolicyError,
        PolicyOptionError,
        GangSpecError,
        RayMissingError,
        ValueError,
        OSError,
    )


@contextmanager
def reported_errors() -> Iterator[None]:
    try:
        yield
    except user_errors() as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_USAGE)


def parse_options(pairs: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values read as YAML scalars (numbers, booleans, lists).

    YAML 1.1 also reads ``on``/``off`` as booleans; those stay text, so that a boolean option
    takes only the spellings the policy registry accepts (true/false/yes/no/1/0) and anything
    else is an error naming the option rather than a silent guess.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=flag)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, bool) and value.strip().lower() not in YAML_BOOLEAN_WORDS:
            parsed = value.strip()
        options[key.strip()] = parsed
    return options


def progress_bar(
    label: str, enabled: bool | None
) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A tqdm bar on stderr (shown only on a terminal unless forced) as an (update, close)
    pair; ``update(done, total)`` sizes the bar on first use. (None, no-op) when off."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="job", file=sys.stderr, leave=False)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done)

    return update, bar.close
