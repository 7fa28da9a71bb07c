"""The instrument's bounds and limits on real workers: the task-name bound and its overflow value,
an OOM kill in a memory cgroup with a limit (v1 and v2, wherever one can be made here), and the
series count of a prefork -c 8 worker against the formula of exporter/budget.py."""

from __future__ import annotations

import contextlib
import secrets
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import samples
from instrumented import ExampleWorker, start_example_worker, task_value

from membench.cgroup import V1, V2, find_memory_cgroup
from membench.exporter import names
from membench.exporter.budget import worker_series
from membench.processes import wait_for
from membench.units import MIB

pytestmark = pytest.mark.slow

LIMIT = 256 * MIB
SLEEP = "proj.sleep"


@pytest.fixture
def workers() -> Iterator[list[ExampleWorker]]:
    started: list[ExampleWorker] = []
    yield started
    for worker in started:
        if not worker.stopped:
            worker.stop()


def run(worker: ExampleWorker, task: str, *args: object) -> object:
    return worker.send(task, *args).get(timeout=60, propagate=False)


# ---- the task-name bound -------------------------------------------------------------------

MANY_TASKS = """
import os
from celery import Celery
from membench.celery import instrument

URL = os.environ["CELERY_BROKER_URL"]
app = Celery("many", broker=URL, backend=URL)
instrument(app, max_task_names=2)


def _noop():
    return None


for _i in range(5):
    app.task(name=f"many.t{_i}")(_noop)
"""


def test_task_names_past_the_bound_or_unregistered_add_only_the_overflow_value(
    redis_url: str, tmp_path: Path, workers: list[ExampleWorker]
) -> None:
    (tmp_path / "many.py").write_text(textwrap.dedent(MANY_TASKS))
    worker = start_example_worker(
        redis_url, tmp_path, tmp_path / "targets", "solo", app="many", app_dir=tmp_path
    )
    workers.append(worker)
    for i in range(5):
        run(worker, f"many.t{i}")
    worker.send("many.unregistered")  # Celery refuses it: no run, no series
    run(worker, "many.t4")

    def tasks() -> set[str]:
        found = samples(worker.metrics()).get(names.TASK_RUNS_TOTAL, [])
        return {labels[names.TASK_LABEL] for labels, _ in found}

    wait_for(lambda: names.OTHER_TASK in tasks(), 30, what="the overflow value")
    assert tasks() == {"many.t0", "many.t1", names.OTHER_TASK}
    other = names.OTHER_TASK
    wait_for(
        lambda: task_value(worker.metrics(), names.TASK_RUNS_TOTAL, other, outcome="success") == 4,
        30,
        what="4 runs under the overflow value",
    )
    text = worker.metrics()
    assert task_value(text, names.TASK_RUNS_TOTAL, "many.t0", outcome="success") == 1
    assert "Received unregistered task" in worker.log()


# ---- OOM kills in a memory cgroup ------------------------------------------------------------


def _v1_parent() -> Path | None:
    own = find_memory_cgroup()
    return own.directory if own is not None and own.files == V1 else None


def _v2_parent() -> Path | None:
    own = find_memory_cgroup()
    if own is not None and own.files == V2:
        return own.directory
    unified = Path("/sys/fs/cgroup/unified")
    controllers = unified / "cgroup.controllers"
    if controllers.is_file() and "memory" in controllers.read_text().split():
        return unified
    return None


@contextlib.contextmanager
def memory_cgroup(parent: Path, version: str) -> Iterator[Path]:
    """A child memory cgroup with LIMIT and no swap, removed afterwards even when a test fails."""
    path = parent / f"membench-test-{secrets.token_hex(4)}"
    try:
        path.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a v{version} memory cgroup under {parent}: {exc}")
    try:
        if version == "1":
            (path / "memory.limit_in_bytes").write_text(str(LIMIT))
            with contextlib.suppress(OSError):
                (path / "memory.swappiness").write_text("0")
        else:
            (path / "memory.max").write_text(str(LIMIT))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
        yield path
    finally:
        # Its processes are gone once the worker is stopped; the directory goes last.
        deadline = time.monotonic() + 30
        while (path / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)  # poll interval of the deadline loop
        path.rmdir()


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_oom_kill_in_a_limited_cgroup_is_counted(
    version: str, redis_url: str, tmp_path: Path, workers: list[ExampleWorker]
) -> None:
    parent = _v1_parent() if version == "1" else _v2_parent()
    if parent is None:
        pytest.skip(f"no writable v{version} memory controller here (this process's cgroup)")
    with memory_cgroup(parent, version) as cgroup:
        # The shell moves itself into the cgroup, then becomes the worker: every process of the
        # worker is in it from the start.
        enter = ("sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "sh")
        worker = start_example_worker(
            redis_url, tmp_path, tmp_path / "targets", "prefork", 1, argv_prefix=enter
        )
        workers.append(worker)
        text = worker.metrics()
        assert samples(text)[names.CGROUP_MEMORY_LIMIT_BYTES][0][1] == LIMIT
        assert samples(text)[names.CGROUP_OOM_KILLS_TOTAL][0][1] == 0
        run(worker, "proj.allocate", 2 * LIMIT / MIB)  # the child outgrows the limit

        def oom_kills() -> float:
            found = samples(worker.metrics())[names.CGROUP_OOM_KILLS_TOTAL]
            return found[0][1]

        assert wait_for(oom_kills, 30, what="the OOM kill counted") >= 1
        wait_for(
            lambda: (
                task_value(worker.metrics(), names.TASK_RUNS_TOTAL, "proj.allocate", outcome="lost")
                == 1
            ),
            30,
            what="the run lost with its child",
        )
        died = [
            v
            for labels, v in samples(worker.metrics())[names.CHILD_RECYCLES_TOTAL]
            if labels[names.REASON_LABEL] == "died"
        ]
        assert died == [1]
        worker.stop()


# ---- the series budget -------------------------------------------------------------------------


def test_a_prefork_worker_exports_the_series_the_formula_says(
    redis_url: str, tmp_path: Path, workers: list[ExampleWorker]
) -> None:
    worker = start_example_worker(redis_url, tmp_path, tmp_path / "targets", "prefork", 8)
    workers.append(worker)
    for task, args in (
        ("proj.allocate", (1,)),
        ("proj.leak", (1,)),
        ("proj.fail", ()),
        ("proj.sleep", (0,)),
    ):
        run(worker, task, *args)
    wait_for(
        lambda: task_value(
            worker.metrics(), names.TASK_RUNS_TOTAL, "proj.sleep", outcome="success"
        ),
        30,
        what="the last run counted",
    )
    addresses = worker.addresses()
    assert len(addresses) == 9
    counts = {c: sum(len(s) for s in samples(worker.metrics(c)).values()) for c in addresses}
    main = samples(worker.metrics())
    cgroup = sum(1 for name in main if name.startswith("membench_cgroup_"))
    expected = worker_series(8, 4, cgroup=cgroup)
    assert sum(counts.values()) == expected, counts
