"""Sizing from an --app run's rows, and what each pool did to the task in plain words.

Memory a concurrency needs: the peak tree PSS measured at it (shared pages once). Prefork's
--max-memory-per-child: the largest exact per-run peak of a child (Celery compares the child's
ru_maxrss, KiB, after each task), plus sizing.THRESHOLD_MARGIN_PERCENT. The container limit:
the peak PSS plus CONTAINER_HEADROOM_PERCENT. Serial: a pool's throughput against solo's times
the tasks it holds in flight.
"""

from __future__ import annotations

from membench.results.model import AppRun, AppSizingRow
from membench.run.sizing import THRESHOLD_MARGIN_PERCENT, tasks_in_flight, threshold_kib
from membench.units import MIB

# Over the peak PSS, for the page cache a container's cgroup also charges (PSS leaves out what
# nobody maps), run-to-run spread and a replacement child forked from a grown parent.
CONTAINER_HEADROOM_PERCENT = 25
# At or under this multiple of solo's throughput, N tasks in flight ran as one: serial.
SERIAL_AT_MOST = 1.3
# At or over this share of solo x N, the pool ran its tasks side by side.
PARALLEL_AT_LEAST = 0.7


def container_limit_bytes(peak_pss: int) -> int:
    """Peak PSS + the headroom, rounded up to a whole MiB."""
    need = peak_pss * (100 + CONTAINER_HEADROOM_PERCENT) // 100
    return -(-need // MIB) * MIB


def size_row(row: AppRun) -> AppSizingRow:
    """results.json's sizing entry of one row (a run entry of an --app run)."""
    sized = AppSizingRow(scenario=row.scenario, pool=row.pool, concurrency=row.concurrency)
    if row.status != "ok" or row.peak_pss_bytes is None:
        sized.note = row.reason or "no successful run"
        return sized
    sized.need_bytes = row.peak_pss_bytes
    sized.container_limit_bytes = container_limit_bytes(row.peak_pss_bytes)
    if row.pool == "prefork":
        peak = row.task_peak_max_rss_bytes
        sized.child_peak_rss_bytes = peak
        sized.max_memory_per_child_kib = threshold_kib(peak) if peak else None
    return sized


def serial_verdict(row: AppRun, solo_rate: float | None) -> tuple[str, str]:
    """(short cell, plain sentence or "") for a row's throughput against solo x tasks in flight."""
    rate = row.throughput_per_s
    slots = tasks_in_flight(row.pool, row.concurrency)
    if row.pool == "solo":
        return ("serial rate", "")
    if not rate or not solo_rate:
        return ("-", "")
    ratio = rate / solo_rate
    cell = f"x{ratio:.1f} of {slots}"
    if slots > 1 and ratio <= SERIAL_AT_MOST:
        sentence = {
            "gevent": "gevent ran this task serially: it never yields to the hub (CPU-bound, or "
            "blocking I/O gevent does not patch)",
            "threads": "threads were serialised (GIL): the task holds it while it runs",
            "prefork": "prefork ran it no faster than solo: the children waited on something "
            "they share (CPU, a lock, the broker)",
        }.get(row.pool, "")
        return (cell + " serial", sentence)
    if slots > 1 and ratio >= PARALLEL_AT_LEAST * slots:
        return (cell + " parallel", "")
    return (cell, "")


def sizing_block(rows: list[AppRun]) -> tuple[list[str], list[AppSizingRow]]:
    """The printed sizing lines and results.json's `sizing.rows`."""
    entries = [size_row(r) for r in rows if r.status != "refused"]
    header = (
        f"{'Sizing (MB)':<28}{'Need (PSS)':>12}{'Container limit':>17}"
        f"{'--max-memory-per-child':>24}"
    )
    lines = ["", header, "-" * len(header)]
    for e in entries:
        name = f"{e.pool} -c {e.concurrency}"
        if e.need_bytes is None or e.container_limit_bytes is None:
            lines.append(f"{name:<28}  -  ({e.note})")
            continue
        kib = e.max_memory_per_child_kib
        lines.append(
            f"{name:<28}{e.need_bytes / MIB:>12.2f}{e.container_limit_bytes / MIB:>17.0f}"
            f"{'-' if kib is None else f'{kib} KiB':>24}"
        )
    lines.append(
        "Need: the peak tree PSS measured at that concurrency (pages shared by prefork's parent "
        "and children counted once).\nContainer limit: Need + "
        f"{CONTAINER_HEADROOM_PERCENT}% headroom (page cache the cgroup charges, spread, a "
        "regrown parent), whole MiB.\n--max-memory-per-child (prefork, KiB, resident): the "
        f"largest exact per-run peak of a child + {THRESHOLD_MARGIN_PERCENT}%; Celery recycles "
        "a child whose\nru_maxrss is over it after a task, so under it a child is not recycled "
        "after every task. docs/app-benchmark.md"
    )
    return lines, entries
