"""soak.png: each worker process's idle RSS (its baseline) over the soak, one colour per process,
with its fitted growth in the legend and the faults and replacements marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from membench.jsonfile import replaced_atomically
from membench.units import MIB

if TYPE_CHECKING:
    from membench.soak.analysis import Analysis
    from membench.soak.faults import Fault


def plot_baselines(
    analysis: Analysis, faults: Sequence[Fault], verdict: str, limit: float, path: Path
) -> None:
    """The baselines of `analysis`, the `faults` marked, titled with the `verdict` at --max-growth
    `limit` (MB/h)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 7.5))
    origin = analysis.start
    for process in analysis.processes:
        g = process.growth
        rate = "-" if g.mb_per_hour is None else f"{g.mb_per_hour:+.2f}"
        ci = ""
        if g.mb_per_hour is not None and g.high_mb_per_hour is not None:
            ci = f" +- {g.high_mb_per_hour - g.mb_per_hour:.2f}"
        label = f"{process.name}: {rate}{ci} MB/h ({g.status})"
        colour = None
        for segment in process.segments:
            line = ax.plot(
                [(t - origin) / 60 for t, _ in segment],
                [v / MIB for _, v in segment],
                marker=".",
                markersize=2,
                linewidth=0.8,
                color=colour,
                label=label if colour is None else None,
            )
            colour = line[0].get_color()
        for t in process.replaced_at:
            ax.axvline((t - origin) / 60, color=colour, linewidth=0.6, linestyle="--")
    for fault in faults:
        ax.axvline((fault.at - origin) / 60, color="red", linewidth=0.8, linestyle=":")
        ax.annotate(
            fault.kind,
            ((fault.at - origin) / 60, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            fontsize=7,
            color="red",
        )
    ax.set_title(
        f"Idle RSS per worker process (MB; samples with no task running, warm-up "
        f"{analysis.warmup_s:g} s after each start left out); verdict {verdict} "
        f"at --max-growth {limit:g} MB/h",
        fontsize=9,
    )
    ax.set_xlabel("Minutes since the soak began (dashed: a process replaced; red: a fault)")
    ax.set_ylabel("RSS (MB = 2^20 bytes)")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Below the axes: inside, it would hide the samples and the fault labels.
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.1), ncol=2, fontsize=7, frameon=False)
    fig.tight_layout()
    try:
        # A full disk leaves the old plot or none, never half a PNG.
        with replaced_atomically(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
