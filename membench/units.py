"""Size units, each named once: membench's "MB" is the seed's, 2^20 bytes (a MiB), printed "MB"."""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def format_mb(value: float | None) -> str:
    """A byte figure as the tables print it: MB (2^20) to 2 places, `-` when unknown."""
    return "-" if value is None else f"{value / MIB:.2f}"
