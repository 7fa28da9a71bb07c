"""The generated blocks of the report page, by marker name: the commands and machine, ours beside
the seed's table, the ratios, each peak's terms, the allocator matrix, the arenas step and the
files. The sentences around them are the page's own (page.py)."""

from __future__ import annotations

import json
from typing import Any

from .common import ENV_FILE, ONE_PROCESS, PAYLOADS, SEED_SCENARIOS, ReportInputs
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

NOT_RUN = ["(not run: this step's results are not saved beside the page)"]


def _inherited(value: dict[str, str] | None) -> str:
    return "not recorded" if value is None else (json.dumps(value) if value else "none")


def _measured(data: dict[str, Any]) -> str:
    """When each step ran (UTC)."""
    seed_start, seed_end = data["measured"]["seed_run"]
    parts = [f"Seed use case measured {seed_start} to {seed_end} UTC"]
    for step in ("matrix", "arenas"):
        span = data["measured"].get(step)
        if span:
            parts.append(f"{step} {span[0]} to {span[1]} UTC")
        elif step == "matrix" or data["arenas_doc"] is not None:
            parts.append(f"{step} (time not saved)")
    return "; ".join(parts) + "."


def commands(data: dict[str, Any], argv: str) -> list[str]:
    """The command that ran the steps, each step's `membench run`, when, and the machine."""
    lines = [
        "```bash",
        "# timing-sensitive: run it alone on the machine",
        f"python benchmarks/reproduce_seed.py {argv}",
        "# which ran, in order:",
        " ".join(data["seed_doc"]["command"]),
        " ".join(data["matrix_doc"]["command"]),
    ]
    if data["arenas_doc"] is not None:
        env = (data["environment"].get("arenas") or {}).get("set_by_script") or {}
        lines.append(
            "".join(f"{k}={v} " for k, v in env.items()) + " ".join(data["arenas_doc"]["command"])
        )
    inherited = {
        step: (record or {}).get("inherited") for step, record in data["environment"].items()
    }
    p = data["params"]
    return [
        *lines,
        "```",
        "",
        "Allocator variables the workers inherited (MALLOC_*, GLIBC_TUNABLES, LD_PRELOAD, "
        f"PYTHONMALLOC), recorded in each step's `{ENV_FILE}`: "
        + "; ".join(f"{step}: " + _inherited(value) for step, value in inherited.items())
        + ".",
        "",
        _measured(data)
        + f" {p['runs']} run(s) per scenario, each on a fresh worker, `--concurrency "
        f"{p['concurrency']}`, payload `{p['payload']}`, allocator `{p['malloc']}`, sampled every "
        f"{p['sample_interval_s'] * 1000:.0f} ms, `--malloc-trim` after each run.",
        "",
        *machine_table(data["seed_doc"]["machine"]),
    ]


def ours_vs_seed(data: dict[str, Any], seed: dict[str, Any]) -> list[str]:
    ours = data["seed"]
    punctual = [ours[s]["sampler_on_time_min"] for s in SEED_SCENARIOS]
    methods = sorted({m for s in SEED_SCENARIOS for m in ours[s]["peak_method"]})
    return [
        *seed_table(ours, seed["rows"]),
        "",
        "Runs ok: "
        + ", ".join(f"{short(s)} {ours[s]['runs_ok']}/{ours[s]['runs']}" for s in SEED_SCENARIOS)
        + ". Sampler ticks on time, worst run: "
        + ("n/a" if None in punctual else f"{min(punctual) * 100:.1f}%")
        + "; VmHWM method: "
        + (", ".join(methods) or "n/a")
        + ".",
    ]


def build(
    inputs: ReportInputs, argv: str, files: list[str], method: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Every block of the page; `method` holds the seed-method section's (seedtables.blocks)."""
    data, seed = inputs.data, inputs.seed
    order = [*SEED_SCENARIOS, *[s for s in ONE_PROCESS if s in inputs.deco]]
    cores = data["seed_doc"]["machine"]["cores"]
    return {
        **method,
        "commands": commands(data, argv),
        "ours-vs-seed": ours_vs_seed(data, seed),
        "seed-table": ["```text", seed["table"].rstrip("\n"), "```"],
        "ratios": ratio_table(inputs.ratios),
        "terms": terms_table(inputs.deco, order),
        "after-task": after_task_table(inputs.deco, order),
        **{
            f"matrix-{payload}": matrix_table(inputs.matrix[payload])
            if payload in inputs.matrix
            else NOT_RUN
            for payload in PAYLOADS
        },
        "arenas": arenas_table(inputs.arenas, 8 * cores) if inputs.arenas else NOT_RUN,
        "files": [f"- {line}" for line in files],
    }
