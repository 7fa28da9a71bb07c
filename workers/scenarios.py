"""Scenarios: a Celery worker pool plus the way a task runs its subtasks.

Names are stable identifiers used in queues, metric labels, files and flags.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    pool: str  # celery -P value
    strategy: str  # how process_batch runs its subtasks: threads | sequential | greenlets
    label: str  # the seed benchmark's wording for the table

    @property
    def concurrent(self) -> bool:
        """Whether subtasks hold their data at the same time."""
        return self.strategy != "sequential"

    def approach(self, subtasks: int, size_mb: float) -> str:
        return f"{self.label} {subtasks}x{size_mb:.1f}MB"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("prefork_threads", "prefork", "threads", "prefork (multithreading)"),
        Scenario("prefork_sequential", "prefork", "sequential", "prefork (sequential)"),
        Scenario("gevent_threads", "gevent", "threads", "gevent (multithreading)"),
        Scenario("gevent_greenlets", "gevent", "greenlets", "gevent (gevent pool)"),
        # Beyond the seed: the threads pool (tasks on OS threads of one process) and solo (the
        # task in the main process: prefork + threads without the parent's second interpreter).
        Scenario("threads_threads", "threads", "threads", "threads pool (multithreading)"),
        Scenario("solo_threads", "solo", "threads", "solo (multithreading)"),
    )
}
# The seed's four approaches: what `membench run` and `membench stack up` use by default.
SEED_SCENARIOS = ("prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets")


def parse_scenarios(text: str) -> list[Scenario]:
    """Parse a comma list of scenario names (or `all`); raises ValueError naming the unknown one."""
    chosen: list[Scenario] = []
    names = list(SCENARIOS) if text.strip() == "all" else [p.strip() for p in text.split(",")]
    for name in names:
        if name not in SCENARIOS:
            raise ValueError(
                f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)} or all)"
            )
        if SCENARIOS[name] not in chosen:
            chosen.append(SCENARIOS[name])
    return chosen
