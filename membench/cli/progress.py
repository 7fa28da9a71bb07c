"""`membench run`'s progress on stderr: one live line on a terminal, else one line per event."""

from __future__ import annotations

import sys
from typing import Any

from membench.run.records import PROMETHEUS_SCRAPE_WAIT_S
from membench.units import MIB

# A sampler tick or two of a stopped state can be a race with a signal; a second is a stall.
STALL_WARNING_S = 1.0


class Progress:
    """Which scenario and run is going, and how far: one live line on a terminal, else a log."""

    def __init__(
        self, total_scenarios: int, runs: int, stream: Any = sys.stderr, warmup: int = 0
    ) -> None:
        self.total = total_scenarios
        self.runs = runs
        self.warmup = warmup
        self.stream = stream
        self.tty = stream.isatty()

    def _run(self, run: int, warmup: bool) -> str:
        return f"warmup {run}/{self.warmup}" if warmup else f"run {run}/{self.runs}"

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "run-start":
            self._line(
                f"[{data['index'] + 1}/{self.total}] {data['scenario']} "
                f"{self._run(data['run'], data.get('warmup', False))}: starting worker",
                final=not self.tty,
            )
        elif event == "escaped":
            self._line(
                f"    {data['scenario']}: WARNING: {len(data['escaped'])} process(es) escaped the "
                f"worker and ran on after it stopped, killed: {'; '.join(data['escaped'])}",
                final=True,
            )
        elif event == "tick" and self.tty:
            expected = f" of ~{data['expected']:.1f}" if data["expected"] else ""
            self._line(
                f"    {data['scenario']} {self._run(data['run'], data.get('warmup', False))}: "
                f"{data['elapsed']:.1f} s{expected} s, tree RSS {data['rss'] / MIB:.0f} MB"
            )
        elif event == "run-end":
            r = data["result"]
            if r.status == "ok":
                text = (
                    f"    {r.scenario} {self._run(r.run, r.warmup)}: ok, {r.duration_s:.2f} s, "
                    f"peak {r.peak_rss_bytes / MIB:.1f} MB"
                )
            else:
                text = f"    {r.scenario} {self._run(r.run, r.warmup)}: FAILED: {r.reason}"
            if r.stalled_s >= STALL_WARNING_S:
                text += (
                    f"; WARNING: a worker process was stopped for {r.stalled_s:.1f} s of this run "
                    "(SIGSTOP or a tracer): its time and memory say nothing about the approach"
                )
            if r.scraped_by_prometheus is False:
                text += (
                    "; WARNING: no Prometheus scraped the worker within "
                    f"{PROMETHEUS_SCRAPE_WAIT_S:.0f} s, its figures of this run are not in it"
                )
            self._line(text, final=True)

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
