"""celery-membench: memory and duration of Celery workers per pool and in-task concurrency model.

The public API is the instrument for any Celery app, `membench.celery`, re-exported here
(`from membench import instrument`); everything else is reached through the `membench` command.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_PORT",
    "MODES",
    "InstrumentOptions",
    "instrument",
    "process_labels",
    "process_registry",
]


def __getattr__(name: str) -> Any:
    # On first use: every membench module imports this package first, and `membench worker`
    # and the core must not load celery for it.
    if name in __all__:
        from membench import celery

        return getattr(celery, name)
    raise AttributeError(f"module 'membench' has no attribute {name!r}")
