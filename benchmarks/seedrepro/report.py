"""Assemble the Markdown report: each section's fixed text around its tables and the prose that
the numbers chose (prose.py, why.py, matrix_prose.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import (
    ARENA_SCENARIOS,
    ENV_FILE,
    MANY_ARENAS,
    ONE_PROCESS,
    PAYLOADS,
    SEED_SCENARIOS,
    Cells,
    ReportInputs,
    ideals,
)
from .fmt import short
from .tables import (
    after_task_table,
    arenas_table,
    machine_table,
    matrix_table,
    ratio_table,
    seed_table,
    terms_table,
)


def render_arenas(data: dict[str, Any], arenas: Cells) -> list[str]:
    """The arenas step's subsection: what it changes and its table."""
    cores = data["seed_doc"]["machine"]["cores"]
    default = 8 * cores
    env = data["environment"].get("arenas") or {}
    return [
        "",
        f"### More arenas than this machine's default ({MANY_ARENAS} instead of {default})",
        "",
        f"glibc's default arena limit is 8 x cores on 64-bit, {default} on these {cores} cores: "
        f"fewer than the {data['params']['workers']} threads. A machine with 8 or more cores "
        f"allows {MANY_ARENAS}+, one arena per thread. To see what that does, the `arenas` step "
        f"runs {', '.join(short(s) for s in ARENA_SCENARIOS)} with "
        f"`MALLOC_ARENA_MAX={MANY_ARENAS}` in the environment the worker inherits (membench has "
        "no flag for it: `--malloc arena2` sets 2, so its results.json records `malloc: glibc` "
        "for this step; the variable is recorded in "
        f"`arenas/{ENV_FILE}`: {json.dumps(env.get('set_by_script')) if env else 'not recorded'}"
        "). gevent-greenlets is the control: one OS thread, one arena, whatever the limit.",
        "",
        *arenas_table(arenas, default),
    ]


def _measured(data: dict[str, Any]) -> str:
    """When each step ran (UTC); a summary.json from before the steps' times were kept lacks
    the matrix's and the arenas'."""
    seed_start, seed_end = data["measured"]["seed_run"]
    matrix = data["measured"].get("matrix")
    arenas = data["measured"].get("arenas")
    matrix_text = f"{matrix[0]} to {matrix[1]} UTC" if matrix else "(time not saved)"
    if arenas:
        arenas_text = f"; arenas {arenas[0]} to {arenas[1]} UTC. "
    elif data["arenas_doc"] is not None and matrix is None:
        arenas_text = "; arenas (time not saved). "
    else:
        arenas_text = ". "
    return f"Seed use case measured {seed_start} to {seed_end} UTC; matrix {matrix_text}" + (
        arenas_text
    )


def _commands(data: dict[str, Any], seed: dict[str, Any], argv: str) -> list[str]:
    p, st = data["params"], seed["stated"]
    lines = [
        "",
        "## Commands, date, machine",
        "",
        "```bash",
        "# timing-sensitive: run it alone on the machine",
        f"python benchmarks/reproduce_seed.py {argv}",
        "# which ran, in order:",
        " ".join(data["seed_doc"]["command"]),
        " ".join(data["matrix_doc"]["command"]),
    ]
    if data["arenas_doc"] is not None:
        env = (data["environment"].get("arenas") or {}).get("set_by_script") or {}
        prefix = "".join(f"{k}={v} " for k, v in env.items())
        lines.append(prefix + " ".join(data["arenas_doc"]["command"]))
    inherited = {
        step: (record or {}).get("inherited") for step, record in data["environment"].items()
    }
    lines += [
        "```",
        "",
        "Allocator-related variables the workers inherited (MALLOC_*, GLIBC_TUNABLES, "
        "LD_PRELOAD, PYTHONMALLOC), per step: "
        + "; ".join(
            f"{step}: "
            + ("not recorded" if value is None else (json.dumps(value) if value else "none"))
            for step, value in inherited.items()
        )
        + ".",
        "",
        _measured(data)
        + f"{p['runs']} run(s) per scenario, each on a fresh worker, `--concurrency "
        f"{p['concurrency']}`, payload `{p['payload']}`, allocator `{p['malloc']}`, sampled "
        f"every {p['sample_interval_s'] * 1000:.0f} ms, `--malloc-trim` after each run.",
        "",
        *machine_table(data["seed_doc"]["machine"]),
        "",
        f"The seed's README states its use case: {st['processes']:g} process, "
        f"{st['workers']:g} workers (threads or greenlets), {st['subtasks']:g} subtasks of "
        f"{st['size_mb']:g} MB. It does not state the hold time of the published run, only that "
        f"`--time` defaults to {st['default_time_s']:g} s, which we used. This section's runs use "
        "the `bytes` payload on a fresh worker per run; the seed's own subtask, method and "
        "concurrency are in the section above.",
    ]
    return lines


def _the_table(data: dict[str, Any], seed: dict[str, Any]) -> list[str]:
    ours = data["seed"]
    runs_note = ", ".join(
        f"{short(s)} {ours[s]['runs_ok']}/{ours[s]['runs']}" for s in SEED_SCENARIOS
    )
    punctual = [ours[s]["sampler_on_time_min"] for s in SEED_SCENARIOS]
    methods = sorted({m for s in SEED_SCENARIOS for m in ours[s]["peak_method"]})
    runs_note += (
        ". Sampler ticks on time, worst run: "
        + ("n/a" if None in punctual else f"{min(punctual) * 100:.1f}%")
        + "; VmHWM method: "
        + (", ".join(methods) or "n/a")
    )
    return [
        "",
        "## The table, ours beside the seed's",
        "",
        *seed_table(ours, seed["rows"]),
        "",
        "Peak Memory is the sampled peak of the worker tree's summed RSS (main process + pool "
        "child for prefork, the one process for gevent), the figure the seed's column names. "
        f"Runs ok: {runs_note}.",
        "",
        "The seed's published table, as parsed from its README:",
        "",
        "```text",
        seed["table"].rstrip("\n"),
        "```",
    ]


def _ratios(data: dict[str, Any], seed: dict[str, Any], ratios: list[dict[str, Any]]) -> list[str]:
    p = data["params"]
    ideal_conc, ideal_seq = ideals(p["subtasks"], p["workers"], p["time_s"])
    return [
        "",
        "## Ratios, ours vs the seed's",
        "",
        *ratio_table(ratios),
        "",
        f"Ideal wall time: ceil({p['subtasks']}/{p['workers']}) x {p['time_s']:g} s = "
        f"{ideal_conc:g} s for the concurrent approaches, {p['subtasks']} x {p['time_s']:g} s = "
        f"{ideal_seq:g} s sequentially: only the holds counted. The seed's wall/ideal uses the "
        f"same ideal, which assumes its `--time` was the {seed['stated']['default_time_s']:g} s "
        "default. The seed's Execution Time sums its 3 runs, each plus a 0.5 s pause (section "
        "above): its wall / ideal and its time ratios here compare 3 runs with one.",
    ]


def _decomposition(data: dict[str, Any], deco: dict[str, dict[str, Any]]) -> list[str]:
    p = data["params"]
    floor_conc = min(p["workers"], p["subtasks"]) * p["size_mb"]
    order = [*SEED_SCENARIOS, *[s for s in ONE_PROCESS if s in deco]]
    return [
        "",
        "## Where each peak comes from",
        "",
        f"Peak = baseline + floor + excess. **Baseline**: tree RSS of the idle worker just before "
        f"the task. **Floor**: the data the approach must hold at once, min(workers, subtasks) x "
        f"size = {floor_conc:g} MB concurrently, {p['size_mb']:g} MB sequentially. **Excess**: "
        "peak - baseline - floor, what the allocator and the interpreter add; the term that tells "
        "approaches with the same floor apart. Medians of each term over the runs (each run's "
        "terms add up exactly; medians of terms need not). solo-threads and threads-threads run "
        "the same task in one process, with OS threads (from the matrix's glibc/bytes "
        "combination).",
        "",
        *terms_table(deco, order),
        "",
        "OS threads: the most the task's process had while subtasks held data (median over runs). "
        "PSS counts a page shared by n processes as 1/n in each, so a tree's PSS sum counts "
        "prefork's copy-on-write pages once; the RSS sum counts them in the parent and the child.",
        "",
        *after_task_table(deco, order),
        "",
        "HWM sum: each process's kernel high-water mark (VmHWM, reset by the runner before the "
        "task) summed over the tree, an upper bound of the tree's true peak within the kernel's "
        "RSS accounting, which can put it ~0.2 MB under the sampled peak (the processes need "
        "not peak at the same instant); the sampled peak can only miss what happens between "
        "50 ms samples. Retained: tree RSS once the result is back. Trimmed: retained after "
        "`gc.collect(1)` + `malloc_trim(0)` in the process that ran the task (jemalloc: an arena "
        "purge).",
        "",
    ]


def _matrix(matrix: Cells, notes: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Allocator and payload shape (the matrix)",
        "",
        "The concurrent approaches and the two one-process scenarios, for each allocator: `glibc` "
        "(the default), `arena2` (glibc with `MALLOC_ARENA_MAX=2`) and `jemalloc` (`LD_PRELOAD`), "
        "and each payload: `bytes` (one 3 MB buffer per subtask) and `records` (~1 KiB `str` "
        "objects adding up to 3 MB). Medians in MB; time in s; OS threads as above.",
    ]
    for payload in [q for q in PAYLOADS if q in matrix]:
        lines += ["", f"### payload `{payload}`", "", *matrix_table(matrix[payload])]
    return [
        *lines,
        *notes["arenas_lines"],
        "",
        "What the matrix shows:",
        "",
        *notes["matrix_findings"],
        "",
        "The figures behind it, per combination:",
        "",
        *notes["matrix_prose"],
    ]


def render(inputs: ReportInputs, notes: dict[str, Any]) -> str:
    """The whole page; `notes` holds the prose, the arenas subsection and the Files list."""
    data, seed = inputs.data, inputs.seed
    lines = [
        "# Reproducing the seed benchmark's published table",
        "",
        "Generated by `python benchmarks/reproduce_seed.py` from the JSON of the runs below: every "
        "number on this page is computed from the saved JSON (`numpy-c*.json`, `driver-rss.json`, "
        "`results.json`, `matrix.json`), and the seed's figures "
        f"are parsed from its README (`{Path(seed['path']).name}`). Do not edit by hand; rerun "
        "the script (`--render-only` rebuilds this page from the JSON saved beside it).",
        "",
        "MB are 2^20 bytes. Ours are medians over the runs, with min-max in brackets.",
    ]
    if notes["quick"]:
        lines += ["", "**Development run (`--quick`): tiny settings, not the seed's use case.**"]
    lines += [
        *notes["seed_method_lines"],
        "",
        "## The bytes and records payloads, one process, fresh worker per run",
        "",
        "The decomposition from before the seed's code was read, kept for the payloads it "
        "measured: `--concurrency 1`, a fresh worker per run, no driver counted.",
        *_commands(data, seed, notes["argv"]),
        *_the_table(data, seed),
        *_ratios(data, seed, inputs.ratios),
        *_decomposition(data, inputs.deco),
        *notes["decomposition_prose"],
        *_matrix(inputs.matrix, notes),
        "",
        "## Files",
        "",
        *(f"- {line}" for line in notes["files"]),
        "",
    ]
    return "\n".join(lines)
