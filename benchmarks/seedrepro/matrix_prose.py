"""The allocator x payload matrix in words: its findings, and the figures behind them per
combination, each sentence chosen by the numbers it cites."""

from __future__ import annotations

from typing import Any

from .common import (
    ALLOCATORS,
    GREENLETS,
    MANY,
    MANY_ARENAS,
    MATRIX_SCENARIOS,
    OS_THREADS,
    PAYLOADS,
    Cells,
    diff,
    mean,
)
from .fmt import f1, f2, per_scenario, short, signed, value_range


def cell(matrix: Cells, payload: str, malloc: str, scenario: str, key: str) -> float | None:
    return matrix.get(payload, {}).get(malloc, {}).get(scenario, {}).get(key)


def group(
    matrix: Cells, payload: str, malloc: str, key: str, scenarios: tuple[str, ...]
) -> float | None:
    """Mean of `key` over `scenarios`."""
    return mean([cell(matrix, payload, malloc, s, key) for s in scenarios])


def _values(
    matrix: Cells, payload: str, malloc: str, key: str, scenarios: tuple[str, ...]
) -> dict[str, float | None]:
    return {s: cell(matrix, payload, malloc, s, key) for s in scenarios}


def _change(
    matrix: Cells, payload: str, malloc: str, key: str, scenarios: tuple[str, ...]
) -> dict[str, float | None]:
    """`key` under `malloc` minus under glibc, per scenario."""
    return {
        s: diff(cell(matrix, payload, malloc, s, key), cell(matrix, payload, "glibc", s, key))
        for s in scenarios
    }


def matrix_prose(matrix: Cells, n: dict[str, Any]) -> list[str]:
    """What the allocator x payload matrix shows, sentence by sentence from its medians."""
    present = [q for q in PAYLOADS if "glibc" in matrix.get(q, {})]
    n["matrix"] = {}
    m = n["matrix"]
    if not present:
        return ["- No glibc combination in the matrix: nothing to compare against."]
    q0 = present[0]
    threads_os = _values(matrix, q0, "glibc", "max_os_threads", OS_THREADS).values()
    threads_gl = _values(matrix, q0, "glibc", "max_os_threads", GREENLETS).values()
    lines = [
        f"- **OS threads.** With payload `{q0}` and glibc, the process running the task had "
        f"{value_range(threads_os)} OS threads for the OS-thread approaches ("
        + ", ".join(short(s) for s in OS_THREADS)
        + f") and {value_range(threads_gl)} for the greenlet ones ("
        + ", ".join(short(s) for s in GREENLETS)
        + "): greenlets all run on the gevent hub's one OS thread (the extra OS threads are "
        "the exporter's and gevent's own), so they allocate from one glibc arena, while OS "
        "threads that contend get arenas of their own (glibc makes up to 8 x cores arenas on "
        "64-bit: 16 here)."
    ]
    for payload in present:
        os_ex = _values(matrix, payload, "glibc", "excess", OS_THREADS)
        gl_ex = _values(matrix, payload, "glibc", "excess", GREENLETS)
        m[f"{payload}_glibc_excess_os_threads_mean"] = mean(list(os_ex.values()))
        m[f"{payload}_glibc_excess_greenlets_mean"] = mean(list(gl_ex.values()))
        text = (
            f"- **Excess, payload `{payload}`, glibc.** OS threads: "
            f"{per_scenario(os_ex)} MB; greenlets: {per_scenario(gl_ex)} MB."
        )
        for malloc in ("arena2", "jemalloc"):
            if malloc not in matrix[payload]:
                continue
            os_d = _change(matrix, payload, malloc, "excess", OS_THREADS)
            gl_d = _change(matrix, payload, malloc, "excess", GREENLETS)
            m[f"{payload}_{malloc}_minus_glibc_excess_os_threads_mean"] = mean(list(os_d.values()))
            m[f"{payload}_{malloc}_minus_glibc_excess_greenlets_mean"] = mean(list(gl_d.values()))
            name = "MALLOC_ARENA_MAX=2" if malloc == "arena2" else "jemalloc"
            text += (
                f" With {name}, excess changed by {per_scenario(os_d, signed)} "
                f"MB (OS threads) and {per_scenario(gl_d, signed)} MB (greenlets)."
            )
        lines.append(text)
    for payload in present:
        parts = []
        for malloc in [a for a in ALLOCATORS if a in matrix[payload]]:
            released = _values(matrix, payload, malloc, "released_by_trim", MATRIX_SCENARIOS)
            parts.append(f"{malloc}: {per_scenario(released, signed)} MB")
            m[f"{payload}_{malloc}_released_by_trim"] = released
            m[f"{payload}_{malloc}_retained_above_baseline"] = _values(
                matrix, payload, malloc, "retained_above_baseline", MATRIX_SCENARIOS
            )
        lines.append(
            f"- **Trim, payload `{payload}`.** Released by gc + malloc_trim (retained - trimmed): "
            + "; ".join(parts)
            + "."
        )
    if "bytes" in present and "records" in present:
        diffs = {
            s: diff(
                cell(matrix, "records", "glibc", s, "excess"),
                cell(matrix, "bytes", "glibc", s, "excess"),
            )
            for s in MATRIX_SCENARIOS
        }
        m["glibc_records_minus_bytes_excess"] = diffs
        retained = {
            q: _values(matrix, q, "glibc", "retained_above_baseline", MATRIX_SCENARIOS)
            for q in ("bytes", "records")
        }
        lines.append(
            "- **Payload shape (glibc).** Excess with records - excess with bytes: "
            f"{per_scenario(diffs, signed)} MB. Retained - baseline, bytes: "
            f"{per_scenario(retained['bytes'], signed)} MB; records: "
            f"{per_scenario(retained['records'], signed)} MB."
        )
    return lines


def _arena_finding(matrix: Cells, payloads: list[str], f: dict[str, Any]) -> str:
    """1. Per-thread arenas at the peak."""
    parts = []
    for q in payloads:
        os16 = group(matrix, q, "glibc", "excess", OS_THREADS)
        gl16 = group(matrix, q, "glibc", "excess", GREENLETS)
        os2 = group(matrix, q, "arena2", "excess", OS_THREADS)
        gl2 = group(matrix, q, "arena2", "excess", GREENLETS)
        gap = diff(os16, gl16)
        cut = diff(os16, os2)
        share = None if not gap or cut is None else cut / gap * 100
        f[f"{q}_os_minus_greenlet_excess_mb"] = gap
        f[f"{q}_arena2_cut_of_os_excess_mb"] = cut
        f[f"{q}_arena2_cut_share_of_gap_pct"] = share
        f[f"{q}_arena2_change_greenlet_excess_mb"] = diff(gl2, gl16)
        parts.append(
            f"`{q}`: {f1(os16)} against {f1(gl16)} MB, and MALLOC_ARENA_MAX=2 takes "
            f"{f1(cut)} MB off the OS-thread approaches"
            + (f" ({share:.0f}% of the gap)" if share is not None else "")
            + f" while the greenlets' moves by {signed(diff(gl2, gl16))} MB"
        )
    shares = [f.get(f"{q}_arena2_cut_share_of_gap_pct") for q in payloads]
    big = all(s is not None and s >= 40 for s in shares)
    return (
        "- **OS threads cost more excess than greenlets, and per-thread arenas are "
        + ("a large part of it" if big else "only part of it")
        + ".** Mean excess of the OS-thread approaches against the greenlet ones, glibc: "
        + "; ".join(parts)
        + ". The rest of the gap remains with 2 arenas (what else 40 OS threads cost: "
        "stacks, per-thread state; not separated here)."
    )


def _retention_finding(
    matrix: Cells, arenas: Cells, payloads: list[str], f: dict[str, Any], default_arenas: int
) -> str:
    """2. Retention after the task and what malloc_trim returns."""
    gl_ret = group(matrix, "bytes", "glibc", "retained_above_baseline", GREENLETS)
    gl_rel = group(matrix, "bytes", "glibc", "released_by_trim", GREENLETS)
    os_ret = group(matrix, "bytes", "glibc", "retained_above_baseline", OS_THREADS)
    os_rel = group(matrix, "bytes", "glibc", "released_by_trim", OS_THREADS)
    f["bytes_glibc_greenlets_retained_above_baseline_mb"] = gl_ret
    f["bytes_glibc_greenlets_released_by_trim_mb"] = gl_rel
    f["bytes_glibc_os_threads_retained_above_baseline_mb"] = os_ret
    f["bytes_glibc_os_threads_released_by_trim_mb"] = os_rel
    text = (
        "- **What stays resident after the task depends on the number of arenas, and not "
        "monotonically.** With payload `bytes` under glibc the greenlet approaches (one "
        f"arena) still hold {f1(gl_ret)} MB above their baseline once the result is back, "
        f"and malloc_trim returns {f1(gl_rel)} MB of it; the OS-thread approaches (up to "
        f"{default_arenas} arenas here) hold {f1(os_ret)} MB and trim returns {f1(os_rel)} MB."
    )
    rows = [
        arenas.get("bytes", {}).get(s, {}).get(MANY) for s in ("prefork_threads", "solo_threads")
    ]
    if all(r is not None for r in rows):
        ret64 = mean([r["retained_above_baseline"] for r in rows])
        rel64 = mean([r["released_by_trim"] for r in rows])
        f["bytes_64_arenas_os_threads_retained_above_baseline_mb"] = ret64
        f["bytes_64_arenas_os_threads_released_by_trim_mb"] = rel64
        text += (
            f" With {MANY_ARENAS} arenas (one per thread) prefork-threads and solo-threads "
            f"hold {f1(ret64)} MB above baseline and trim returns {f1(rel64)} MB of it"
            + (
                ", consistent with glibc's malloc_trim shrinking only the main arena's "
                "heap top (malloc.c, `mtrim`): a buffer freed at the top of a thread's own "
                "arena stays resident, and a long-lived worker would start its next task "
                "from there."
                if rel64 is not None and ret64 is not None and rel64 < ret64 / 4
                else "."
            )
        )
    a2 = [cell(matrix, q, "arena2", s, "released_by_trim") for q in payloads for s in OS_THREADS]
    f["arena2_os_threads_released_by_trim_mb"] = a2
    return text + (
        " With 2 arenas, trim returns "
        f"{value_range(a2)} MB for the OS-thread approaches, depending on approach and payload "
        "(tables above)."
    )


def _shape_finding(matrix: Cells, records_per_subtask: int) -> str:
    """3. Payload shape."""
    os_b = group(matrix, "bytes", "glibc", "excess", OS_THREADS)
    os_r = group(matrix, "records", "glibc", "excess", OS_THREADS)
    gl_b = group(matrix, "bytes", "glibc", "excess", GREENLETS)
    gl_r = group(matrix, "records", "glibc", "excess", GREENLETS)
    t_b = group(matrix, "bytes", "glibc", "time", MATRIX_SCENARIOS)
    t_r = group(matrix, "records", "glibc", "time", MATRIX_SCENARIOS)
    return (
        "- **Payload shape changes the allocation pattern more than the peak.** A 3 MB "
        "buffer is above glibc's initial mmap threshold (128 KiB), but the threshold rises "
        "to the size of a freed mmapped chunk (mallopt(3)), so after the first frees the "
        "buffers come from the heap and arenas; an mmapped chunk would be unmapped on "
        "free, so the buffers a single arena retains after the task (above) were heap "
        "chunks. Records are ~1 KiB `str` objects, above CPython's 512-byte small-object "
        f"limit, so each is a malloc from an arena, {records_per_subtask:,} per subtask "
        f"instead of one. Under glibc, records against bytes: excess {f1(os_r)} against "
        f"{f1(os_b)} MB (OS threads), {f1(gl_r)} against {f1(gl_b)} MB (greenlets); mean "
        f"time {f2(t_r)} against {f2(t_b)} s."
    )


def _jemalloc_finding(matrix: Cells, payloads: list[str], f: dict[str, Any]) -> str:
    """4. jemalloc."""
    parts, changes = [], []
    for q in payloads:
        d_os = diff(
            group(matrix, q, "jemalloc", "excess", OS_THREADS),
            group(matrix, q, "glibc", "excess", OS_THREADS),
        )
        d_gl = diff(
            group(matrix, q, "jemalloc", "excess", GREENLETS),
            group(matrix, q, "glibc", "excess", GREENLETS),
        )
        changes += [d_os, d_gl]
        f[f"{q}_jemalloc_minus_glibc_excess_os_threads_mb"] = d_os
        f[f"{q}_jemalloc_minus_glibc_excess_greenlets_mb"] = d_gl
        parts.append(f"`{q}` {signed(d_os)} (OS threads) and {signed(d_gl)} MB (greenlets)")

    def baseline(malloc: str) -> float | None:
        return mean(
            [cell(matrix, q, malloc, s, "baseline") for q in payloads for s in MATRIX_SCENARIOS]
        )

    base = diff(baseline("jemalloc"), baseline("glibc"))
    lower = all(c is not None and c <= 0 for c in changes)
    higher = all(c is not None and c >= 0 for c in changes)
    verdict = (
        "jemalloc lowers these peaks"
        if lower
        else "jemalloc does not lower these peaks"
        if higher
        else "jemalloc moves these peaks both ways"
    )
    return (
        f"- **{verdict[0].upper() + verdict[1:]}.** Its excess minus glibc's: "
        + "; ".join(parts)
        + f"; it also adds {signed(base)} MB to the idle baseline. After the task its "
        "arena purge returns part of what it retains (table above)."
    )


def matrix_findings(
    matrix: Cells,
    arenas: Cells,
    n: dict[str, Any],
    default_arenas: int,
    records_per_subtask: int,
) -> list[str]:
    """The matrix's conclusions, each sentence chosen by the numbers it cites."""
    out: list[str] = []
    f = n.setdefault("findings", {})
    payloads = [q for q in PAYLOADS if "glibc" in matrix.get(q, {})]
    if all("arena2" in matrix[q] for q in payloads):
        out.append(_arena_finding(matrix, payloads, f))
    if "bytes" in matrix and "glibc" in matrix["bytes"]:
        out.append(_retention_finding(matrix, arenas, payloads, f, default_arenas))
    if "bytes" in matrix and "records" in matrix:
        out.append(_shape_finding(matrix, records_per_subtask))
    if all("jemalloc" in matrix[q] for q in payloads):
        out.append(_jemalloc_finding(matrix, payloads, f))
    return out
