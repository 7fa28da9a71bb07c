"""The soak's verdict from its figures and the user's thresholds: fail when a process grew faster
than --max-growth for certain, or more runs were lost than --max-lost, or the kernel OOM-killed a
worker; inconclusive when a growth interval straddles the limit (and how long to run to call it);
pass otherwise. Exit codes follow from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from membench.soak.growth import MIN_POINTS, ProcessGrowth
from membench.units import MIB

EXIT_PASS = 0
EXIT_FAIL = 1  # a fail, or an inconclusive verdict without --allow-inconclusive
EXIT_INTERRUPTED = 130
# A MB is 2^20 bytes, as everywhere in the project.
HOUR = 3600.0


@dataclass(frozen=True)
class Thresholds:
    max_growth_mb_per_hour: float
    max_lost: int
    allow_inconclusive: bool

    @property
    def limit_bytes_per_s(self) -> float:
        return self.max_growth_mb_per_hour * MIB / HOUR


@dataclass
class Verdict:
    status: str  # pass | fail | inconclusive
    reasons: list[str] = field(default_factory=list)
    # The longest any inconclusive process needs, at its measured noise, to resolve the limit.
    seconds_to_resolve: float | None = None

    def exit_code(self, thresholds: Thresholds) -> int:
        if self.status == "fail":
            return EXIT_FAIL
        if self.status == "inconclusive" and not thresholds.allow_inconclusive:
            return EXIT_FAIL
        return EXIT_PASS


def decide(
    processes: list[ProcessGrowth],
    lost: int,
    oom_kills: int,
    thresholds: Thresholds,
    failures: list[str] | None = None,
) -> Verdict:
    """`failures`: what else failed the soak, each in a line (e.g. a fault never recovered from)."""
    reasons = list(failures or [])
    limit = thresholds.max_growth_mb_per_hour
    for p in processes:
        g = p.growth
        if g.status == "fail":
            reasons.append(
                f"{p.name}: grows {g.mb_per_hour:.2f} MB/h (95% CI {g.low_mb_per_hour:.2f} to "
                f"{g.high_mb_per_hour:.2f}) > --max-growth {limit:g}"
            )
    if lost > thresholds.max_lost:
        reasons.append(f"{lost} run(s) lost > --max-lost {thresholds.max_lost}")
    if oom_kills:
        reasons.append(f"{oom_kills} OOM kill(s) in the workers' cgroups")
    if not processes:
        reasons.append("no worker process memory (membench_process_rss_bytes) in the window")
    if reasons:
        return Verdict("fail", reasons)
    open_ = [p for p in processes if p.growth.status == "inconclusive"]
    if not open_:
        return Verdict("pass")
    needed = [p.growth.seconds_to_resolve for p in open_]
    longest = max((n for n in needed if n is not None), default=None)
    lines = []
    for p in open_:
        g = p.growth
        if not g.points:
            lines.append(f"{p.name}: no idle sample past the warm-up (--warmup) of its process")
        elif g.low_mb_per_hour is None or g.points < MIN_POINTS:
            lines.append(f"{p.name}: too few idle samples to call ({g.points} < {MIN_POINTS})")
        else:
            lines.append(
                f"{p.name}: {g.mb_per_hour:.2f} MB/h, 95% CI {g.low_mb_per_hour:.2f} to "
                f"{g.high_mb_per_hour:.2f} straddles --max-growth {limit:g}"
            )
    return Verdict("inconclusive", lines, longest)
