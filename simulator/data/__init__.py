"""The bundled sample: what ``phalanx simulate`` runs with no arguments (see README.md here)."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
SAMPLE_TRACE = f"generic:{DATA_DIR / 'philly_sample.csv'}"
"""300 consecutive Philly jobs from 2017-10-09 06:00 (cluster-local time), generic schema."""
SAMPLE_CLUSTER = "dgx-h100:12"
"""96 GPUs: below the sample's peak demand of 144 GPUs, so jobs queue and placement matters."""
