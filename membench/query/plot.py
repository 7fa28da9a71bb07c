"""One memory-over-time PNG per approach, from what Prometheus recorded (matplotlib, Agg)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from membench.query.rows import Approach
from membench.query.timerange import Window
from membench.units import MIB

_LINES = (
    ("rss_bytes", "tree RSS (sum over the worker's processes)"),
    ("pss_bytes", "tree PSS (shared pages counted once)"),
)


def _utc(unix: float) -> float:
    """A unix time as matplotlib's date number: its axes are typed for numbers, not datetimes."""
    from matplotlib.dates import date2num

    return float(date2num(datetime.fromtimestamp(unix, UTC)))


def plot_approach(approach: Approach, window: Window, path: Path) -> None:
    """Tree RSS and PSS over the window, and each run's exact peak (VmHWM) when it was seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import DateFormatter

    fig, ax = plt.subplots(figsize=(11, 5))
    for key, label in _LINES:
        points = approach.timeline.get(key) or []
        ax.plot([_utc(t) for t, _ in points], [v / MIB for _, v in points], label=label)
    peaks = [r for r in approach.runs if r.task_peak_rss_bytes is not None]
    if peaks:
        ax.scatter(
            [_utc(r.seen_at) for r in peaks],
            [r.task_peak_rss_bytes / MIB for r in peaks if r.task_peak_rss_bytes is not None],
            marker="x",
            color="black",
            label="VmHWM of each run (the process that ran it)",
        )
    ax.set_title(f"{approach.label}: {window.describe()}", fontsize=10)
    ax.set_ylabel("MB (2^20 bytes)")
    ax.set_xlabel("time (UTC)")
    # The data's own span: a worker that ran for a minute of a day's window is still readable.
    times = [t for key, _ in _LINES for t, _ in approach.timeline.get(key) or []]
    times += [r.seen_at for r in approach.runs]
    if len(set(times)) > 1:
        ax.set_xlim(_utc(min(times)), _utc(max(times)))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S", tz=UTC))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
