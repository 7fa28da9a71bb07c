"""The seed's own subtask (`--payload numpy`): a float64 array, every page written, held, then
np.mean and np.std. numpy is imported at first use: workers of other payloads never load it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from membench.units import MIB


def numpy_loaded() -> bool:
    """Whether this process has imported numpy (a worker that ran only data payloads has not)."""
    return "numpy" in sys.modules


def random_array(size_mb: float) -> Any:
    """The seed's data, to the letter: np.random.random fills every element, so every page is
    written. The global RandomState, like the seed's: its lock serialises concurrent builds."""
    import numpy  # here, not at the top: only workers that run a numpy payload load it

    return numpy.random.random(int(size_mb * MIB / 8))


def seed_subtask(
    index: int, size_mb: float, hold_s: float, held: Callable[[int], None]
) -> dict[str, Any]:
    """Build, sleep (cooperative under gevent), then np.mean and np.std: std allocates `x - mean`,
    a temporary the size of the data, so a subtask briefly holds twice its data."""
    import numpy

    data = random_array(size_mb)
    held(index)
    time.sleep(hold_s)
    result = {
        "task_id": index,
        "data_size_mb": size_mb,
        "mean": float(numpy.mean(data)),
        "std_dev": float(numpy.std(data)),
    }
    del data
    return result


def warm_up() -> None:
    """Run the numpy payloads' calls once on 64 KiB, so numpy's code pages and lazy state are
    resident before a baseline is read or a peak is reset (measured: ~3 MB of first use, which
    would otherwise count as the first batch's data)."""
    seed_subtask(0, 1 / 16, 0.0, lambda _: None)
    random_array(1 / 16).sort()
