"""``python -m phalanx``: the ``phalanx`` command, for environments without the console script."""

from phalanx.cli import main

main()
