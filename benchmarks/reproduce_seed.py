"""Reproduce the seed benchmark's published table, and explain every difference from measurements.

Usage::

    python benchmarks/reproduce_seed.py [--output DIR] [--runs N] [--skip-run]

1. Runs the seed's use case (its four approaches, 1 worker process, 40 threads/greenlets,
   200 subtasks of 3 MB, 0.5 s each) with `membench run ... --malloc-trim`.
2. Runs an explanation matrix on the concurrent approaches plus the two single-process
   scenarios (solo and threads pools): allocator (glibc, MALLOC_ARENA_MAX=2, jemalloc) x payload
   (one 3 MB buffer per subtask, or ~1 KiB str records).
3. Runs prefork-threads, solo-threads and gevent-greenlets (control) with MALLOC_ARENA_MAX=64 in
   the workers' environment: one glibc arena per thread, as a machine with 8+ cores allows
   (the default limit is 8 x cores; membench has no flag for it, so the variable is recorded
   in OUT/arenas/environment.json).
4. Writes docs/results/seed-reproduction.md from the JSON alone (no number in it is typed by
   hand; the seed's table is parsed from the seed's README), copies the raw results into
   docs/results/seed-reproduction/, writes summary.json there and prints a short table.

`--skip-run` regenerates the report from the JSON already in `--output`; `--steps` runs only
some steps. The full run takes about 17 minutes and is timing-sensitive: run it alone, e.g.
under the shared lock::

    flock /tmp/membench-bench.lock python benchmarks/reproduce_seed.py --output /tmp/seedrepro

Standard library only, plus the installed `membench` command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SEED_README = REPO.parent / "shared" / "seed" / "000_ad73f0711c4e7ca4.txt"
REPORT = REPO / "docs" / "results" / "seed-reproduction.md"
MB = 1024 * 1024
SEED_SCENARIOS = ("prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets")
CONCURRENT = ("prefork_threads", "gevent_threads", "gevent_greenlets")
MATRIX_SCENARIOS = (*CONCURRENT, "solo_threads", "threads_threads")
ONE_PROCESS = ("solo_threads", "threads_threads")
OS_THREADS = ("prefork_threads", "solo_threads", "threads_threads")
GREENLETS = ("gevent_threads", "gevent_greenlets")
ALLOCATORS = ("glibc", "arena2", "jemalloc")
PAYLOADS = ("bytes", "records")
# The seed's table labels (its approach column without the "200x3.0MB" suffix).
SEED_LABELS = {
    "prefork (multithreading)": "prefork_threads",
    "prefork (sequential)": "prefork_sequential",
    "gevent (multithreading)": "gevent_threads",
    "gevent (gevent pool)": "gevent_greenlets",
}
FULL = {"subtasks": 200, "size": 3, "workers": 40, "time": 0.5}
QUICK = {"subtasks": 20, "size": 1, "workers": 4, "time": 0.05}
MAX_RESULTS_BYTES = 3 * 1000 * 1000
ARENA_SCENARIOS = ("prefork_threads", "solo_threads", "gevent_greenlets")
MANY_ARENAS = 64  # > 40 threads: the default limit on a machine with 8 or more cores
ENV_FILE = "environment.json"
STEPS = ("seed", "matrix", "arenas")


class Failure(Exception):
    """Something the report cannot be built without: one line, exit code 2."""


# ---- running ------------------------------------------------------------------------------------


def membench_argv() -> list[str]:
    found = shutil.which("membench")
    return [found] if found else [sys.executable, "-m", "membench"]


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def run_commands(out: Path, runs: int, quick: bool) -> list[tuple[str, list[str], dict[str, str]]]:
    """(step, `membench run` arguments, extra environment) of each step, exactly as run."""
    p = QUICK if quick else FULL
    common = [
        "run",
        "--subtasks",
        _fmt_number(p["subtasks"]),
        "--size",
        _fmt_number(p["size"]),
        "--workers",
        _fmt_number(p["workers"]),
        "--time",
        _fmt_number(p["time"]),
        "--runs",
        str(runs),
        "--malloc-trim",
    ]
    matrix = (
        ["malloc=glibc", "payload=bytes,records"]
        if quick
        else ["malloc=" + ",".join(ALLOCATORS), "payload=" + ",".join(PAYLOADS)]
    )
    return [
        ("seed", [*common, "--output", str(out / "seed")], {}),
        (
            "matrix",
            [
                *common,
                "--scenarios",
                ",".join(MATRIX_SCENARIOS),
                "--matrix",
                *matrix,
                "--output",
                str(out / "matrix"),
            ],
            {},
        ),
        # More glibc arenas than this machine's default limit (8 x cores): what a machine with
        # enough cores for one arena per thread would allow. membench has no flag for it (its
        # arena2 sets 2); the worker inherits MALLOC_ARENA_MAX from the environment.
        (
            "arenas",
            [
                *common,
                "--scenarios",
                ",".join(ARENA_SCENARIOS),
                "--matrix",
                "payload=" + ",".join(PAYLOADS),
                "--output",
                str(out / "arenas"),
            ],
            {"MALLOC_ARENA_MAX": str(MANY_ARENAS)},
        ),
    ]


def _recorded_environment() -> dict[str, str]:
    """The variables that change the workers' allocator: they inherit this environment."""
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTHONMALLOC"))
    }


def run_step(out: Path, name: str, args: list[str], extra_env: dict[str, str]) -> int:
    argv = [*membench_argv(), *args]
    env = dict(os.environ) | extra_env
    prefix = "".join(f"{k}={v} " for k, v in extra_env.items())
    print(f"\n$ {prefix}membench {' '.join(args)}", flush=True)
    record = out / name
    record.mkdir(parents=True, exist_ok=True)
    (record / ENV_FILE).write_text(
        json.dumps({"inherited": _recorded_environment(), "set_by_script": extra_env}, indent=2)
        + "\n"
    )
    t0 = time.monotonic()
    code = subprocess.run(argv, check=False, env=env).returncode
    print(f"reproduce_seed: {name}: exit {code} after {time.monotonic() - t0:.0f} s", flush=True)
    if code == 130:
        raise KeyboardInterrupt
    if code not in (0, 1):
        raise Failure(f"`{prefix}membench {' '.join(args)}` exited {code}")
    return code


# ---- the seed's published table -----------------------------------------------------------------

_SEED_ROW = re.compile(
    r"^(?P<label>[a-z].*?\))\s+(?P<subtasks>\d+)x(?P<size>[\d.]+)MB\s+"
    r"(?P<peak>\d+(?:\.\d+)?)\s+(?P<time>\d+(?:\.\d+)?)\s*$"
)


def parse_seed(path: Path) -> dict[str, Any]:
    """The seed README's results table and stated parameters (nothing here is typed by hand)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise Failure(f"--seed-readme: cannot read {path}: {exc.strerror or exc}") from None
    block = re.search(r"BENCHMARK RESULTS\s*\n=+\n(.*?)\n=+\n", text, re.S)
    if block is None:
        raise Failure(f"{path}: no BENCHMARK RESULTS table found")
    rows: dict[str, dict[str, Any]] = {}
    for line in block.group(1).splitlines():
        match = _SEED_ROW.match(line.strip())
        if match is None:
            continue
        scenario = SEED_LABELS.get(match["label"])
        if scenario is None:
            raise Failure(f"{path}: unknown approach {match['label']!r} in the seed's table")
        rows[scenario] = {
            "approach": f"{match['label']} {match['subtasks']}x{match['size']}MB",
            "peak_mb": float(match["peak"]),
            "time_s": float(match["time"]),
        }
    missing = [s for s in SEED_SCENARIOS if s not in rows]
    if missing:
        raise Failure(f"{path}: the seed's table has no row for {', '.join(missing)}")
    stated = {}
    for key, pattern in (
        ("processes", r"(\d+) single process"),
        ("workers", r"(\d+) workers \(threads or greenlets\)"),
        ("subtasks", r"(\d+) subtasks, each creating"),
        ("size_mb", r"each creating (\d+(?:\.\d+)?)\s*MB"),
        (
            "default_time_s",
            r"--time`: Processing time for each subtask in seconds \(default: "
            r"(\d+(?:\.\d+)?)\)",
        ),
    ):
        found = re.search(pattern, text)
        stated[key] = float(found.group(1)) if found else None
    # The published run's --time is not stated next to the table (only the flag's default).
    stated["time_stated_for_table"] = bool(re.search(r"Results.*?--time \d", text, re.S))
    return {"path": str(path), "rows": rows, "stated": stated, "table": block.group(0)}


# ---- reading membench's JSON --------------------------------------------------------------------


def load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise Failure(
            f"cannot read {path}: {exc.strerror or exc} (run without --skip-run)"
        ) from None
    except json.JSONDecodeError as exc:
        raise Failure(f"{path}: not JSON: {exc}") from None


def _mb(value: float | None) -> float | None:
    return None if value is None else value / MB


def figures(scenario: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """One scenario of a results.json: medians (MB, s) with min-max, and what its runs report."""
    summary = scenario["summary"]
    out: dict[str, Any] = {"scenario": scenario["scenario"], "approach": scenario["approach"]}
    for key, name in (
        ("peak_rss_bytes", "peak"),
        ("peak_pss_bytes", "peak_pss"),
        ("baseline_rss_bytes", "baseline"),
        ("baseline_pss_bytes", "baseline_pss"),
        ("floor_bytes", "floor"),
        ("excess_rss_bytes", "excess"),
        ("excess_pss_bytes", "excess_pss"),
        ("task_peak_rss_bytes", "vmhwm"),
        ("tree_hwm_sum_bytes", "hwm_sum"),
        ("retained_rss_bytes", "retained"),
        ("retained_pss_bytes", "retained_pss"),
        ("trimmed_rss_bytes", "trimmed"),
        ("trimmed_pss_bytes", "trimmed_pss"),
    ):
        figure = summary.get(key)
        out[name] = (
            {k: figure[k] / MB for k in ("median", "min", "max")} | {"n": figure["n"]}
            if figure
            else None
        )
    duration = summary.get("duration_s")
    out["time"] = {k: duration[k] for k in ("median", "min", "max")} if duration else None
    runs = [r for r in scenario["runs"] if not r.get("warmup")]
    ok = [r for r in runs if r["status"] == "ok"]
    out["runs_ok"], out["runs"] = len(ok), len(runs)
    out["failures"] = [f"run {r['run']}: {r['reason']}" for r in runs if r["status"] != "ok"]
    out["processes"] = sorted({r["processes"] for r in ok if r.get("processes") is not None})
    threads = [r["max_os_threads"] for r in ok if r.get("max_os_threads") is not None]
    out["max_os_threads"] = statistics.median(threads) if threads else None
    out["peak_method"] = sorted({r["peak_method"] for r in ok if r.get("peak_method")})
    out["trim_method"] = sorted({r["trim_method"] for r in ok if r.get("trim_method")})
    out["allocator"] = sorted({r["allocator"] for r in ok if r.get("allocator")})
    ratios = [r["sampler"]["on_time_ratio"] for r in ok if r.get("sampler")]
    out["sampler_on_time_min"] = min(ratios) if ratios else None
    concurrent = scenario["strategy"] != "sequential"
    rounds = math.ceil(params["subtasks"] / params["workers"]) if concurrent else params["subtasks"]
    out["ideal_s"] = rounds * params["time_s"]
    out["rounds"] = rounds
    return out


def med(fig: dict[str, Any] | None, key: str) -> float | None:
    if fig is None or fig.get(key) is None:
        return None
    return fig[key]["median"]


def load_results(out: Path, quick: bool) -> dict[str, Any]:
    seed_doc = load_json(out / "seed" / "results.json")
    params = seed_doc["parameters"]
    seed_figs = {s["scenario"]: figures(s, params) for s in seed_doc["scenarios"]}
    missing = [s for s in SEED_SCENARIOS if s not in seed_figs]
    if missing:
        raise Failure(f"{out / 'seed' / 'results.json'}: no scenario {', '.join(missing)}")
    matrix_doc = load_json(out / "matrix" / "matrix.json")
    matrix: dict[tuple[str, str], dict[str, Any]] = {}
    matrix_docs: dict[tuple[str, str], dict[str, Any]] = {}
    for combination in matrix_doc["combinations"]:
        axes = dict(part.split("=", 1) for part in combination["label"].split())
        key = (axes.get("malloc", "glibc"), axes.get("payload", "bytes"))
        doc = load_json(out / "matrix" / combination["results"])
        matrix_docs[key] = doc
        matrix[key] = {s["scenario"]: figures(s, doc["parameters"]) for s in doc["scenarios"]}
    arenas: dict[str, dict[str, Any]] = {}
    arenas_doc = None
    arenas_docs: list[dict[str, Any]] = []
    if (out / "arenas" / "matrix.json").exists():
        arenas_doc = load_json(out / "arenas" / "matrix.json")
        for combination in arenas_doc["combinations"]:
            payload = dict(part.split("=", 1) for part in combination["label"].split())["payload"]
            doc = load_json(out / "arenas" / combination["results"])
            arenas_docs.append(doc)
            arenas[payload] = {
                s["scenario"]: figures(s, doc["parameters"]) for s in doc["scenarios"]
            }
    environment = {}
    for step in STEPS:
        path = out / step / ENV_FILE
        environment[step] = load_json(path) if path.exists() else None
    return {
        "arenas": arenas,
        "arenas_doc": arenas_doc,
        "arenas_docs": arenas_docs,
        "environment": environment,
        "seed_doc": seed_doc,
        "seed": seed_figs,
        "params": params,
        "matrix_doc": matrix_doc,
        "matrix_docs": matrix_docs,
        "matrix": matrix,
    }


# ---- figures derived from the JSON --------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def compute_ratios(data: dict[str, Any], seed: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours vs the seed's, each from medians (ours) and the published figures (seed)."""
    ours, rows = data["seed"], seed["rows"]
    out: list[dict[str, Any]] = []

    def add(name: str, kind: str, mine: float | None, theirs: float | None) -> None:
        out.append({"ratio": name, "kind": kind, "ours": mine, "seed": theirs})

    seq = "prefork_sequential"
    for scenario in ("prefork_threads", *GREENLETS):
        add(
            f"{scenario} / {seq} peak",
            "peak",
            _ratio(med(ours[scenario], "peak"), med(ours[seq], "peak")),
            _ratio(rows[scenario]["peak_mb"], rows[seq]["peak_mb"]),
        )
    for scenario in ("prefork_threads", *GREENLETS):
        # PSS counts prefork's shared pages once: the seed measured RSS only.
        add(
            f"{scenario} / {seq} peak PSS",
            "peak_pss",
            _ratio(med(ours[scenario], "peak_pss"), med(ours[seq], "peak_pss")),
            None,
        )
    for scenario in CONCURRENT:
        add(
            f"{seq} / {scenario} time",
            "speedup",
            _ratio(med(ours[seq], "time"), med(ours[scenario], "time")),
            _ratio(rows[seq]["time_s"], rows[scenario]["time_s"]),
        )
    for scenario in SEED_SCENARIOS:
        ideal = ours[scenario]["ideal_s"]
        # From the seed's stated use case and its --time default: the README does not state the
        # hold time of the published run.
        st = seed["stated"]
        seed_ideal = (
            math.ceil(st["subtasks"] / st["workers"]) * st["default_time_s"]
            if scenario != seq
            else st["subtasks"] * st["default_time_s"]
        )
        add(
            f"{scenario} wall / ideal ({ideal:g} s; seed {seed_ideal:g} s)",
            "wall_ideal",
            _ratio(med(ours[scenario], "time"), ideal),
            _ratio(rows[scenario]["time_s"], seed_ideal),
        )
    return out


def compute_decomposition(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per approach (the seed run, plus solo/threads from the matrix's glibc/bytes combination):
    the terms of the peak and what happens after the task."""
    rows: dict[str, dict[str, Any]] = {}
    sources = [(s, data["seed"][s], "seed run") for s in SEED_SCENARIOS]
    reference = data["matrix"].get(("glibc", "bytes"), {})
    sources += [(s, reference[s], "matrix glibc/bytes") for s in ONE_PROCESS if s in reference]
    for scenario, fig, source in sources:
        row = {
            "source": source,
            "approach": fig["approach"],
            "processes": fig["processes"],
            "max_os_threads": fig["max_os_threads"],
        }
        for key in (
            "baseline",
            "floor",
            "excess",
            "peak",
            "baseline_pss",
            "excess_pss",
            "peak_pss",
            "vmhwm",
            "hwm_sum",
            "retained",
            "retained_pss",
            "trimmed",
            "trimmed_pss",
        ):
            row[key] = med(fig, key)
        row["rss_minus_pss_peak"] = _diff(row["peak"], row["peak_pss"])
        row["rss_minus_pss_baseline"] = _diff(row["baseline"], row["baseline_pss"])
        row["hwm_sum_minus_peak"] = _diff(row["hwm_sum"], row["peak"])
        row["released_by_trim"] = _diff(row["retained"], row["trimmed"])
        row["retained_above_baseline"] = _diff(row["retained"], row["baseline"])
        row["trimmed_above_baseline"] = _diff(row["trimmed"], row["baseline"])
        row["time"] = med(fig, "time")
        row["ideal_s"] = fig["ideal_s"]
        rows[scenario] = row
    return rows


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def compute_matrix(data: dict[str, Any]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """payload -> allocator -> scenario -> medians of what tells the combinations apart."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for (malloc, payload), scenarios in data["matrix"].items():
        for scenario, fig in scenarios.items():
            cell = {
                key: med(fig, key)
                for key in ("baseline", "peak", "excess", "peak_pss", "retained", "trimmed")
            }
            cell["time"] = med(fig, "time")
            cell["released_by_trim"] = _diff(cell["retained"], cell["trimmed"])
            cell["retained_above_baseline"] = _diff(cell["retained"], cell["baseline"])
            cell["max_os_threads"] = fig["max_os_threads"]
            cell["allocator"] = fig["allocator"]
            cell["trim_method"] = fig["trim_method"]
            cell["runs_ok"], cell["runs"] = fig["runs_ok"], fig["runs"]
            out.setdefault(payload, {}).setdefault(malloc, {})[scenario] = cell
    return out


def compute_arenas(
    data: dict[str, Any], matrix: dict[str, dict[str, dict[str, dict[str, Any]]]]
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """payload -> scenario -> arena setting (arena2, default, many) -> medians."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for payload, scenarios in data["arenas"].items():
        for scenario, fig in scenarios.items():
            row = {}
            for setting in ("arena2", "glibc"):
                cell = matrix.get(payload, {}).get(setting, {}).get(scenario)
                if cell is not None:
                    row[setting] = cell
            many = {
                key: med(fig, key) for key in ("baseline", "peak", "excess", "retained", "trimmed")
            }
            many["time"] = med(fig, "time")
            many["released_by_trim"] = _diff(many["retained"], many["trimmed"])
            many["retained_above_baseline"] = _diff(many["retained"], many["baseline"])
            many["max_os_threads"] = fig["max_os_threads"]
            many["runs_ok"], many["runs"] = fig["runs_ok"], fig["runs"]
            row[f"arenas{MANY_ARENAS}"] = many
            out.setdefault(payload, {})[scenario] = row
    return out


def render_arenas(
    data: dict[str, Any], arenas: dict[str, dict[str, dict[str, dict[str, Any]]]]
) -> list[str]:
    cores = data["seed_doc"]["machine"]["cores"]
    default = 8 * cores
    env = data["environment"].get("arenas") or {}
    lines = [
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
    ]
    body = []
    settings = ("arena2", "glibc", f"arenas{MANY_ARENAS}")
    for payload in [q for q in PAYLOADS if q in arenas]:
        for scenario, row in arenas[payload].items():
            cells = [payload, short(scenario)]
            for key in ("excess", "retained", "trimmed"):
                cells.append(" / ".join(f1(row.get(st, {}).get(key)) for st in settings))
            many = row[f"arenas{MANY_ARENAS}"]
            cells.append(f"{many['runs_ok']}/{many['runs']}")
            body.append(cells)
    lines += table(
        [
            "payload",
            "approach",
            f"excess: 2 / {default} / {MANY_ARENAS} arenas",
            f"retained: 2 / {default} / {MANY_ARENAS}",
            f"trimmed: 2 / {default} / {MANY_ARENAS}",
            f"runs ok ({MANY_ARENAS})",
        ],
        body,
        "llrrrr",
    )
    return lines


# ---- the report ---------------------------------------------------------------------------------


def f1(value: float | None) -> str:
    return "n/a" if value is None else f"{value + 0.0 if round(value, 1) else 0.0:.1f}"


def f2(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value if round(value, 1) else 0.0:+.1f}"


def span(fig: dict[str, Any] | None, digits: int = 2) -> str:
    """`median (min-max)`: the median over runs and the range the runs spanned."""
    if fig is None:
        return "n/a"
    median, low, high = fig["median"], fig["min"], fig["max"]
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def table(headers: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": "---", "r": "---:"}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def short(scenario: str) -> str:
    return scenario.replace("_", "-")


def gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB"


def _when(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["started_at"][:19].replace("T", " "), doc["finished_at"][:19].replace("T", " ")


def render(
    data: dict[str, Any],
    seed: dict[str, Any],
    ratios: list[dict[str, Any]],
    deco: dict[str, dict[str, Any]],
    matrix: dict[str, dict[str, dict[str, dict[str, Any]]]],
    notes: dict[str, Any],
) -> str:
    p, ours, rows = data["params"], data["seed"], seed["rows"]
    machine = data["seed_doc"]["machine"]
    floor_conc = min(p["workers"], p["subtasks"]) * p["size_mb"]
    floor_seq = p["size_mb"]
    ideal_conc = math.ceil(p["subtasks"] / p["workers"]) * p["time_s"]
    ideal_seq = p["subtasks"] * p["time_s"]
    L: list[str] = []
    add = L.append

    add("# Reproducing the seed benchmark's published table")
    add("")
    add(
        "Generated by `python benchmarks/reproduce_seed.py` from the JSON of the runs below: every "
        "number on this page is computed from `results.json`/`matrix.json`, and the seed's figures "
        f"are parsed from its README (`{Path(seed['path']).name}`). Do not edit by hand; rerun "
        "the script (`--skip-run` rebuilds this page from existing JSON)."
    )
    add("")
    add("MB are 2^20 bytes. Ours are medians over the runs, with min-max in brackets.")
    if notes["quick"]:
        add("")
        add("**Development run (`--quick`): tiny settings, not the seed's use case.**")

    # -- commands, date, machine
    add("")
    add("## Commands, date, machine")
    add("")
    add("```bash")
    add("# timing-sensitive: run it alone on the machine")
    add(f"python benchmarks/reproduce_seed.py {notes['argv']}")
    add("# which ran, in order:")
    add(" ".join(data["seed_doc"]["command"]))
    add(" ".join(data["matrix_doc"]["command"]))
    if data["arenas_doc"] is not None:
        env = (data["environment"].get("arenas") or {}).get("set_by_script") or {}
        add("".join(f"{k}={v} " for k, v in env.items()) + " ".join(data["arenas_doc"]["command"]))
    add("```")
    add("")
    inherited = {
        step: (record or {}).get("inherited") for step, record in data["environment"].items()
    }
    add(
        "Allocator-related variables the workers inherited (MALLOC_*, GLIBC_TUNABLES, "
        "LD_PRELOAD, PYTHONMALLOC), per step: "
        + "; ".join(
            f"{step}: "
            + ("not recorded" if value is None else (json.dumps(value) if value else "none"))
            for step, value in inherited.items()
        )
        + "."
    )
    add("")
    seed_start, seed_end = _when(data["seed_doc"])
    docs = list(data["matrix_docs"].values())
    m_start = min(_when(d)[0] for d in docs)
    m_end = max(_when(d)[1] for d in docs)
    add(
        f"Seed use case measured {seed_start} to {seed_end} UTC; matrix {m_start} to {m_end} UTC"
        + (
            f"; arenas {min(_when(x)[0] for x in data['arenas_docs'])} to "
            f"{max(_when(x)[1] for x in data['arenas_docs'])} UTC. "
            if data["arenas_docs"]
            else ". "
        )
        + f"{p['runs']} run(s) per scenario, each on a fresh worker, `--concurrency "
        f"{p['concurrency']}`, payload `{p['payload']}`, allocator `{p['malloc']}`, sampled "
        f"every {p['sample_interval_s'] * 1000:.0f} ms, `--malloc-trim` after each run."
    )
    add("")
    add(
        "| machine | cores | memory | kernel | libc | Python | Celery | gevent | billiard |\n"
        "|---|---:|---:|---|---|---|---|---|---|\n"
        f"| ours ({machine['machine']}) | {machine['cores']} | {gib(machine['memory_bytes'])} | "
        f"{machine['kernel']} | {machine['libc']} | {machine['python']} | {machine['celery']} | "
        f"{machine['gevent']} | {machine['billiard']} |\n"
        "| seed | not stated | not stated | not stated | not stated | not stated | not stated | "
        "not stated | not stated |"
    )
    st = seed["stated"]
    add("")
    add(
        f"The seed's README states its use case: {st['processes']:g} process, "
        f"{st['workers']:g} workers (threads or greenlets), {st['subtasks']:g} subtasks of "
        f"{st['size_mb']:g} MB. It does not state the hold time of the published run, only that "
        f"`--time` defaults to {st['default_time_s']:g} s, which we used; nor its machine, "
        "library versions, how it measured memory, or what data a subtask builds (we have its "
        "README only, not its code)."
    )

    # -- the table
    add("")
    add("## The table, ours beside the seed's")
    add("")
    order = sorted(SEED_SCENARIOS, key=lambda s: med(ours[s], "peak") or 0.0)
    add(
        "\n".join(
            table(
                [
                    "Approach",
                    "Peak Memory (MB), ours",
                    "Execution Time (s), ours",
                    "Peak Memory (MB), seed",
                    "Execution Time (s), seed",
                ],
                [
                    [
                        ours[s]["approach"],
                        span(ours[s]["peak"]),
                        span(ours[s]["time"]),
                        f"{rows[s]['peak_mb']:.2f}",
                        f"{rows[s]['time_s']:.2f}",
                    ]
                    for s in order
                ],
            )
        )
    )
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
    add("")
    add(
        "Peak Memory is the sampled peak of the worker tree's summed RSS (main process + pool "
        "child for prefork, the one process for gevent), the figure the seed's column names. "
        f"Runs ok: {runs_note}."
    )
    add("")
    add("The seed's published table, as parsed from its README:")
    add("")
    add("```text")
    add(seed["table"].rstrip("\n"))
    add("```")

    # -- ratios
    add("")
    add("## Ratios, ours vs the seed's")
    add("")
    ratio_rows = []
    for r in ratios:
        ratio_rows.append(
            [
                r["ratio"].replace("_", "-"),
                f2(r["ours"]),
                "not published (RSS only)" if r["kind"] == "peak_pss" else f2(r["seed"]),
            ]
        )
    add("\n".join(table(["ratio (medians)", "ours", "seed"], ratio_rows)))
    add("")
    add(
        f"Ideal wall time: ceil({p['subtasks']}/{p['workers']}) x {p['time_s']:g} s = "
        f"{ideal_conc:g} s for the concurrent approaches, {p['subtasks']} x {p['time_s']:g} s = "
        f"{ideal_seq:g} s sequentially: only the holds counted. The seed's wall/ideal uses the "
        f"same ideal, which assumes its `--time` was the {st['default_time_s']:g} s default."
    )

    # -- decomposition
    add("")
    add("## Where each peak comes from")
    add("")
    add(
        f"Peak = baseline + floor + excess. **Baseline**: tree RSS of the idle worker just before "
        f"the task. **Floor**: the data the approach must hold at once, min(workers, subtasks) x "
        f"size = {floor_conc:g} MB concurrently, {floor_seq:g} MB sequentially. **Excess**: "
        "peak - baseline - floor, what the allocator and the interpreter add; the term that tells "
        "approaches with the same floor apart. Medians of each term over the runs (each run's "
        "terms add up exactly; medians of terms need not). solo-threads and threads-threads run "
        "the same task in one process, with OS threads (from the matrix's glibc/bytes "
        "combination)."
    )
    add("")
    deco_order = [*SEED_SCENARIOS, *[s for s in ONE_PROCESS if s in deco]]
    add(
        "\n".join(
            table(
                [
                    "approach",
                    "processes",
                    "OS threads",
                    "baseline",
                    "floor",
                    "excess",
                    "peak (RSS)",
                    "baseline PSS",
                    "excess PSS",
                    "peak PSS",
                    "RSS - PSS at peak",
                ],
                [
                    [
                        short(s),
                        "/".join(str(n) for n in deco[s]["processes"]) or "n/a",
                        "n/a"
                        if deco[s]["max_os_threads"] is None
                        else f"{deco[s]['max_os_threads']:g}",
                        f1(deco[s]["baseline"]),
                        f1(deco[s]["floor"]),
                        f1(deco[s]["excess"]),
                        f1(deco[s]["peak"]),
                        f1(deco[s]["baseline_pss"]),
                        f1(deco[s]["excess_pss"]),
                        f1(deco[s]["peak_pss"]),
                        f1(deco[s]["rss_minus_pss_peak"]),
                    ]
                    for s in deco_order
                ],
            )
        )
    )
    add("")
    add(
        "OS threads: the most the task's process had while subtasks held data (median over runs). "
        "PSS counts a page shared by n processes as 1/n in each, so a tree's PSS sum counts "
        "prefork's copy-on-write pages once; the RSS sum counts them in the parent and the child."
    )
    add("")
    add(
        "\n".join(
            table(
                [
                    "approach",
                    "sampled tree peak",
                    "HWM sum",
                    "HWM sum - sampled peak",
                    "VmHWM, task's process",
                    "retained",
                    "retained - baseline",
                    "trimmed",
                    "released by trim",
                    "retained PSS",
                    "trimmed PSS",
                ],
                [
                    [
                        short(s),
                        f1(deco[s]["peak"]),
                        f1(deco[s]["hwm_sum"]),
                        signed(deco[s]["hwm_sum_minus_peak"]),
                        f1(deco[s]["vmhwm"]),
                        f1(deco[s]["retained"]),
                        signed(deco[s]["retained_above_baseline"]),
                        f1(deco[s]["trimmed"]),
                        signed(deco[s]["released_by_trim"]),
                        f1(deco[s]["retained_pss"]),
                        f1(deco[s]["trimmed_pss"]),
                    ]
                    for s in deco_order
                ],
            )
        )
    )
    add("")
    add(
        "HWM sum: each process's kernel high-water mark (VmHWM, reset by the runner before the "
        "task) summed over the tree, an upper bound of the tree's true peak within the kernel's "
        "RSS accounting, which can put it ~0.2 MB under the sampled peak (the processes need "
        "not peak at the same instant); the sampled peak can only miss what happens between "
        "50 ms samples. Retained: tree RSS once the result is back. Trimmed: retained after "
        "`gc.collect(1)` + `malloc_trim(0)` in the process that ran the task (jemalloc: an arena "
        "purge)."
    )
    add("")
    L.extend(notes["decomposition_prose"])

    # -- matrix
    add("")
    add("## Allocator and payload shape (the matrix)")
    add("")
    add(
        "The concurrent approaches and the two one-process scenarios, for each allocator: `glibc` "
        "(the default), `arena2` (glibc with `MALLOC_ARENA_MAX=2`) and `jemalloc` (`LD_PRELOAD`), "
        "and each payload: `bytes` (one 3 MB buffer per subtask) and `records` (~1 KiB `str` "
        "objects adding up to 3 MB). Medians in MB; time in s; OS threads as above."
    )
    for payload in [q for q in PAYLOADS if q in matrix]:
        add("")
        add(f"### payload `{payload}`")
        add("")
        body = []
        for malloc in [a for a in ALLOCATORS if a in matrix[payload]]:
            for s in MATRIX_SCENARIOS:
                c = matrix[payload][malloc].get(s)
                if c is None:
                    continue
                body.append(
                    [
                        malloc,
                        short(s),
                        "n/a" if c["max_os_threads"] is None else f"{c['max_os_threads']:g}",
                        f1(c["baseline"]),
                        f1(c["peak"]),
                        f1(c["excess"]),
                        f1(c["retained"]),
                        f1(c["trimmed"]),
                        signed(c["released_by_trim"]),
                        f2(c["time"]),
                        f"{c['runs_ok']}/{c['runs']}",
                    ]
                )
        add(
            "\n".join(
                table(
                    [
                        "allocator",
                        "approach",
                        "OS threads",
                        "baseline",
                        "peak",
                        "excess",
                        "retained",
                        "trimmed",
                        "released by trim",
                        "time",
                        "runs ok",
                    ],
                    body,
                    "llrrrrrrrrr",
                )
            )
        )
    L.extend(notes["arenas_lines"])
    add("")
    add("What the matrix shows:")
    add("")
    L.extend(notes["matrix_findings"])
    add("")
    add("The figures behind it, per combination:")
    add("")
    L.extend(notes["matrix_prose"])

    # -- why
    add("")
    add("## Why our figures differ from the seed's")
    add("")
    L.extend(notes["why_prose"])
    add("")
    add("## In one paragraph")
    add("")
    add(notes["paragraph"])

    # -- files
    add("")
    add("## Files")
    add("")
    for line in notes["files"]:
        add(f"- {line}")
    add("")
    return "\n".join(L)


# ---- the prose: template sentences filled with computed values ----------------------------------


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _range(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    low, high = f1(min(present)), f1(max(present))
    return low if low == high else f"{low} to {high}"


def _more_or_less(value: float, unit: str = "MB") -> str:
    return f"{abs(value):.1f} {unit} {'more' if value >= 0 else 'less'}"


def _spread_note(data: dict[str, Any], deco: dict[str, dict[str, Any]]) -> str:
    """Name the approaches whose retained RSS varies a lot between runs: a median hides it."""
    reference = data["matrix"].get(("glibc", "bytes"), {})
    wide = []
    for scenario in deco:
        fig = data["seed"].get(scenario) or reference.get(scenario)
        retained = fig and fig.get("retained")
        if retained and retained["max"] - retained["min"] > 10:
            wide.append(f"{short(scenario)} {retained['min']:.1f}-{retained['max']:.1f} MB")
    if not wide:
        return ""
    return (
        " Retained is not stable from run to run for "
        + ", ".join(wide)
        + " (min-max over runs): the same worker sometimes keeps the freed data and sometimes "
        "returns it by itself, so its median can land on either side."
    )


def explain(
    data: dict[str, Any],
    seed: dict[str, Any],
    ratios: list[dict[str, Any]],
    deco: dict[str, dict[str, Any]],
    matrix: dict[str, dict[str, dict[str, dict[str, Any]]]],
    arenas: dict[str, dict[str, dict[str, dict[str, Any]]]],
) -> dict[str, Any]:
    p = data["params"]
    n: dict[str, Any] = {}  # every derived number a sentence cites, for summary.json
    size, subtasks, workers, hold = p["size_mb"], p["subtasks"], p["workers"], p["time_s"]
    floor_conc = min(workers, subtasks) * size
    floor_seq = size
    floor_gap = floor_conc - floor_seq
    ideal_conc = math.ceil(subtasks / workers) * hold
    ideal_seq = subtasks * hold
    rounds = math.ceil(subtasks / workers)
    d = deco
    pt, ps, gt, gg = (d[s] for s in SEED_SCENARIOS)
    one = [d[s] for s in ONE_PROCESS if s in d]

    # ---- decomposition ----
    dec: list[str] = []
    n["baseline_prefork_minus_gevent"] = _diff(
        ps["baseline"], _mean([gt["baseline"], gg["baseline"]])
    )
    n["baseline_pss_prefork_minus_gevent"] = _diff(
        ps["baseline_pss"], _mean([gt["baseline_pss"], gg["baseline_pss"]])
    )
    n["baseline_prefork_rss_minus_pss"] = _mean(
        [pt["rss_minus_pss_baseline"], ps["rss_minus_pss_baseline"]]
    )
    n["baseline_gevent_rss_minus_pss"] = _mean(
        [gt["rss_minus_pss_baseline"], gg["rss_minus_pss_baseline"]]
    )
    one_text = (
        ", and the one-process "
        + " and ".join(f"{short(s)} at {f1(d[s]['baseline'])} MB" for s in ONE_PROCESS if s in d)
        if one
        else ""
    )
    dec.append(
        f"- **Baseline.** The idle prefork tree ({'/'.join(map(str, ps['processes']))} processes: "
        f"main + pool child) is {_range([pt['baseline'], ps['baseline']])} MB RSS; the idle "
        f"gevent worker (1 process) {_range([gt['baseline'], gg['baseline']])} MB{one_text}. "
        f"The second process adds {f1(n['baseline_prefork_minus_gevent'])} MB to prefork's RSS "
        f"sum but {f1(n['baseline_pss_prefork_minus_gevent'])} MB to its PSS sum: "
        f"{f1(n['baseline_prefork_rss_minus_pss'])} MB of prefork's idle RSS sum exceeds its "
        f"PSS (pages the parent and child share, counted in both), against "
        f"{f1(n['baseline_gevent_rss_minus_pss'])} MB for gevent (pages it shares with other "
        "processes on the machine; which ones is not broken down here)."
    )
    excess = {s: d[s]["excess"] for s in d}
    n["excess"] = excess
    dec.append(
        f"- **Excess.** Over the floor ({floor_conc:g} MB concurrent, {floor_seq:g} MB "
        "sequential), at the peak: "
        + ", ".join(f"{short(s)} {f1(excess[s])} MB" for s in d)
        + ". With the same floor, prefork-threads's excess is "
        f"{_more_or_less(_diff(pt['excess'], _mean([gt['excess'], gg['excess']])) or 0.0)} than "
        "the gevent approaches' (mean of the two)"
        + (
            ", and the one-process OS-thread scenarios' "
            f"{_range([x['excess'] for x in one])} MB is close to prefork-threads's: the excess "
            "follows the OS threads, not the pool."
            if one
            and all(
                abs((x["excess"] or 0) - (pt["excess"] or 0))
                < abs((x["excess"] or 0) - (_mean([gt["excess"], gg["excess"]]) or 0))
                for x in one
            )
            else "."
        )
    )
    n["peak_rss_minus_pss"] = {s: d[s]["rss_minus_pss_peak"] for s in d}
    dec.append(
        "- **PSS vs RSS.** At the peak the RSS sum exceeds the PSS sum by "
        f"{_range([pt['rss_minus_pss_peak'], ps['rss_minus_pss_peak']])} MB for the prefork "
        f"trees and {_range([gt['rss_minus_pss_peak'], gg['rss_minus_pss_peak']])} MB for "
        f"gevent. Peak PSS: prefork-threads {f1(pt['peak_pss'])}, gevent-threads "
        f"{f1(gt['peak_pss'])}, gevent-greenlets {f1(gg['peak_pss'])}, prefork-sequential "
        f"{f1(ps['peak_pss'])} MB; counted this way prefork-threads is "
        f"{_more_or_less(_diff(pt['peak_pss'], _mean([gt['peak_pss'], gg['peak_pss']])) or 0.0)} "
        "than gevent, against "
        f"{_more_or_less(_diff(pt['peak'], _mean([gt['peak'], gg['peak']])) or 0.0)} "
        "by the RSS sum."
        + (
            " Prefork's excess in PSS is above its excess in RSS (prefork-threads "
            f"{f1(pt['excess_pss'])} against {f1(pt['excess'])}, prefork-sequential "
            f"{f1(ps['excess_pss'])} against {f1(ps['excess'])} MB): during the task pages "
            "stop being shared between parent and child, which raises the PSS sum but not the "
            "RSS sum."
            if (pt["excess_pss"] or 0) > (pt["excess"] or 0) + 0.5
            and (ps["excess_pss"] or 0) > (ps["excess"] or 0) + 0.5
            else ""
        )
    )
    hwm_gaps = {s: d[s]["hwm_sum_minus_peak"] for s in d}
    n["hwm_sum_minus_sampled_peak"] = hwm_gaps
    dec.append(
        "- **Sampled peak vs HWM sum.** HWM sum - sampled peak: "
        + ", ".join(f"{short(s)} {signed(hwm_gaps[s])} MB" for s in d)
        + ". For a one-process worker the HWM sum is the kernel's own peak, so a positive "
        "difference is what 50 ms sampling missed; for prefork it also adds the parent's and "
        "the child's peaks as if they had coincided."
        + (
            " Negative values (down to "
            f"{min(v for v in hwm_gaps.values() if v is not None):.2f} MB) mean a sampled RSS "
            "exceeded the VmHWM read after the task, which exact counters would not allow; we "
            "read differences of that size as the resolution of the two readings (not "
            "investigated further)."
            if any(v is not None and v < -0.005 for v in hwm_gaps.values())
            else ""
        )
    )
    dec.append(
        "- **After the task.** Retained - baseline: "
        + ", ".join(f"{short(s)} {signed(d[s]['retained_above_baseline'])} MB" for s in d)
        + ". Released by gc + malloc_trim (retained - trimmed): "
        + ", ".join(f"{short(s)} {signed(d[s]['released_by_trim'])} MB" for s in d)
        + "."
        + _spread_note(data, d)
    )
    trim_pss = {s: _diff(d[s]["trimmed_pss"], d[s]["retained_pss"]) for s in d}
    n["trim_pss_change"] = trim_pss
    pf_trim_pss = _mean([trim_pss["prefork_threads"], trim_pss["prefork_sequential"]])
    if pf_trim_pss is not None and pf_trim_pss > 1.0:
        dec.append(
            f"- **Trimming raised prefork's PSS** (trimmed PSS - retained PSS: prefork-threads "
            f"{signed(trim_pss['prefork_threads'])}, prefork-sequential "
            f"{signed(trim_pss['prefork_sequential'])} MB) while its RSS sum moved by "
            f"{signed(_diff(pt['trimmed'], pt['retained']))} and "
            f"{signed(_diff(ps['trimmed'], ps['retained']))} MB: pages stopped being shared, "
            "they were not added. The release runs "
            "`gc.collect()` in the pool child before trimming; CPython's collector writes to "
            "the header of every object it scans, including those inherited from the parent "
            "(the reason `gc.freeze()` exists), which turns shared copy-on-write pages into the "
            "child's own. That is the likely cause (we did not measure which pages changed): a "
            "side effect of the trim step in a forked child, not memory the task left behind."
        )
    elif pf_trim_pss is not None:
        dec.append(
            f"- **Trimming leaves prefork's sharing alone** (trimmed PSS - retained PSS: "
            f"prefork-threads {signed(trim_pss['prefork_threads'])}, prefork-sequential "
            f"{signed(trim_pss['prefork_sequential'])} MB). The release collects only the young "
            "generations: an earlier version ran a full `gc.collect()`, which writes to the "
            "header of every object inherited from the parent and raised the prefork tree's PSS "
            "by 11-14 MB by un-sharing copy-on-write pages (tests/test_run_options.py guards it)."
        )

    prose = {
        "decomposition_prose": dec,
        "matrix_findings": matrix_findings(
            matrix,
            arenas,
            n,
            8 * data["seed_doc"]["machine"]["cores"],
            round(p["size_mb"] * MB / 1024),
        ),
        "matrix_prose": matrix_prose(matrix, n),
        "why_prose": [
            *why_memory(data, seed, deco, n),
            *why_allocator(data, seed, deco, matrix, arenas, n),
            *why_time(data, seed, n),
        ],
        "paragraph": closing_paragraph(data, seed, ratios, deco, n),
    }
    return {
        "prose": prose,
        "numbers": n,
        "floor_gap": floor_gap,
        "ideal_conc": ideal_conc,
        "ideal_seq": ideal_seq,
        "rounds": rounds,
    }


def seed_scale(
    data: dict[str, Any], seed: dict[str, Any], deco: dict[str, dict[str, Any]], n: dict[str, Any]
) -> list[str]:
    """One reading of the seed's rows: its idle processes k times ours. An assumption, stated."""
    rows, st = seed["rows"], seed["stated"]
    pt, ps, gt, gg = (deco[s] for s in SEED_SCENARIOS)
    if None in (ps["baseline"], ps["excess"], gt["baseline"], gg["baseline"]):
        return []
    floor_conc = min(st["workers"], st["subtasks"]) * st["size_mb"]
    k = (rows["prefork_sequential"]["peak_mb"] - st["size_mb"] - ps["excess"]) / ps["baseline"]
    gevent_base = _mean([gt["baseline"], gg["baseline"]]) or 0.0
    implied = {
        "prefork_threads": rows["prefork_threads"]["peak_mb"] - k * ps["baseline"] - floor_conc,
        "gevent_threads": rows["gevent_threads"]["peak_mb"] - k * gevent_base - floor_conc,
        "gevent_greenlets": rows["gevent_greenlets"]["peak_mb"] - k * gevent_base - floor_conc,
    }
    gevent_gap = (_mean([rows[s]["peak_mb"] for s in GREENLETS]) or 0.0) - (
        _mean([gt["peak"], gg["peak"]]) or 0.0
    )
    pt_gap = rows["prefork_threads"]["peak_mb"] - (pt["peak"] or 0.0)
    n["seed_scale"] = {
        "k": k,
        "implied_excess_mb": implied,
        "seed_minus_ours_gevent_mb": gevent_gap,
        "seed_minus_ours_prefork_threads_mb": pt_gap,
    }
    return [
        "- **One reading of the seed's rows (an assumption, not a measurement).** Suppose the "
        "seed's idle worker processes were all k times ours and its sequential run added our "
        f"{f1(ps['excess'])} MB of excess. Its prefork-sequential row then gives k = "
        f"{k:.2f}, and its other rows leave an excess of "
        + ", ".join(f"{implied[s]:.1f} MB for {short(s)}" for s in implied)
        + f" (ours: {f1(pt['excess'])}, {f1(gt['excess'])}, {f1(gg['excess'])} MB). Under "
        f"this reading the larger idle footprint is {(k - 1) * gevent_base:.1f} of the "
        f"{gevent_gap:.1f} MB by which the seed's gevent rows exceed ours (mean), and "
        f"{(k - 1) * ps['baseline']:.1f} of the {pt_gap:.1f} MB for prefork-threads, "
        f"leaving {pt_gap - (k - 1) * ps['baseline']:.1f} MB of prefork-threads's that it does "
        "not explain: that row is the outlier. We cannot check the assumption: the seed "
        "publishes no baseline."
    ]


def why_time(data: dict[str, Any], seed: dict[str, Any], n: dict[str, Any]) -> list[str]:
    """The time column: ours against the ideal, and what the seed's own figures allow."""
    p, ours, rows, st = data["params"], data["seed"], seed["rows"], seed["stated"]
    ideal_conc = math.ceil(p["subtasks"] / p["workers"]) * p["time_s"]
    ideal_seq = p["subtasks"] * p["time_s"]
    conc = [med(ours[s], "time") for s in CONCURRENT]
    seq = med(ours["prefork_sequential"], "time")
    seed_conc = [rows[s]["time_s"] for s in CONCURRENT]
    seed_seq = rows["prefork_sequential"]["time_s"]
    seed_rounds = math.ceil(st["subtasks"] / st["workers"])
    seed_ideal_conc = seed_rounds * st["default_time_s"]
    seed_ideal_seq = st["subtasks"] * st["default_time_s"]
    seed_per_subtask = seed_seq / st["subtasks"]
    seed_extra = seed_per_subtask - st["default_time_s"]
    gevent_budget = max(rows[s]["time_s"] for s in GREENLETS) / st["subtasks"]
    n["time"] = {
        "ours_concurrent_over_ideal_s": [_diff(c, ideal_conc) for c in conc],
        "ours_sequential_over_ideal_s": _diff(seq, ideal_seq),
        "ours_sequential_extra_per_subtask_ms": None
        if seq is None
        else (seq - ideal_seq) / p["subtasks"] * 1000,
        "seed_concurrent_over_ideal_s": [c - seed_ideal_conc for c in seed_conc],
        "seed_sequential_per_subtask_s": seed_per_subtask,
        "seed_sequential_extra_per_subtask_s": seed_extra,
        "seed_gevent_wall_per_subtask_s": gevent_budget,
        "seed_hold_if_sequential_were_all_hold_s": seed_per_subtask,
        "seed_concurrent_per_round_s": [c / seed_rounds for c in seed_conc],
    }
    t = n["time"]
    ours_ratio = _ratio(seq, _mean(conc))
    ideal_ratio = seed_ideal_seq / seed_ideal_conc
    ours_factor = _ratio(max(c for c in conc if c is not None), ideal_conc)
    seed_factor = max(seed_conc) / seed_ideal_conc
    close = ours_factor is not None and ours_factor < 1.25 and seed_factor > 1.5
    # The hold that the seed's sequential row would imply if its extra time were all hold.
    hold_guess = round(seed_per_subtask, 1)
    t["seed_ideals_with_hold_guess_s"] = {
        "hold_s": hold_guess,
        "sequential": st["subtasks"] * hold_guess,
        "concurrent": seed_rounds * hold_guess,
    }
    g = t["seed_ideals_with_hold_guess_s"]
    return [
        f"- **Time{': ours is close to the ideal, the seed is not' if close else ''}.** Our "
        f"concurrent approaches took {_range(conc)} s against the {ideal_conc:g} s ideal "
        f"({_range(t['ours_concurrent_over_ideal_s'])} s over it, at most "
        f"{f2(ours_factor)}x), our sequential run {f1(seq)} s against {ideal_seq:g} s "
        f"({f1(t['ours_sequential_extra_per_subtask_ms'])} ms per subtask over the hold). The "
        f"seed's concurrent rows took {_range(seed_conc)} s, "
        f"{_range(t['seed_concurrent_over_ideal_s'])} s over the same ideal (up to "
        f"{seed_factor:.2f}x), and its sequential row {seed_seq:.2f} s, "
        f"{seed_per_subtask:.2f} s per subtask: {seed_extra:.2f} s more than a "
        f"{st['default_time_s']:g} s hold. The ratio of the ideals is {seed_ideal_seq:g} / "
        f"{seed_ideal_conc:g} = {ideal_ratio:g}; sequential / mean concurrent time is "
        f"{f1(ours_ratio)} for us and "
        f"{seed_seq / statistics.fmean(seed_conc):.1f} for the seed.",
        f"- **What the seed's time column allows, and what it does not.** Its gevent rows ran "
        f"all {st['subtasks']:g} subtasks on one OS thread in at most "
        f"{max(rows[s]['time_s'] for s in GREENLETS):.2f} s, i.e. "
        f"{gevent_budget * 1000:.0f} ms of wall time per subtask; a per-subtask cost that "
        f"occupies the thread (CPU work) of {seed_extra:.2f} s could not fit. So the "
        f"sequential row's extra {seed_extra:.2f} s per subtask is not CPU work that the gevent "
        "rows also did. The figures are consistent with a longer hold than the "
        f"{st['default_time_s']:g} s default: with {hold_guess:g} s the ideals would be "
        f"{g['sequential']:g} s and {g['concurrent']:g} s, which the seed's rows exceed by "
        f"{(seed_seq / g['sequential'] - 1) * 100:.0f}% and "
        f"{(min(seed_conc) / g['concurrent'] - 1) * 100:.0f}-"
        f"{(max(seed_conc) / g['concurrent'] - 1) * 100:.0f}%. The README does not state the "
        "`--time` of the published run and we do not have its code: which explanation holds "
        "cannot be determined from our measurements."
        + (
            " Our concurrent peaks reach baseline + floor (excess "
            + _range([med(ours[s], "excess") for s in CONCURRENT])
            + f" MB), as {min(p['workers'], p['subtasks'])} overlapping subtasks would; how "
            "a longer hold would change the peaks we have not measured."
            if all((med(ours[s], "excess") or -1.0) >= 0 for s in CONCURRENT)
            else ""
        ),
    ]


def why_memory(
    data: dict[str, Any],
    seed: dict[str, Any],
    deco: dict[str, dict[str, Any]],
    n: dict[str, Any],
) -> list[str]:
    p, rows = data["params"], seed["rows"]
    d = deco
    pt, ps, gt, gg = (d[s] for s in SEED_SCENARIOS)
    st = seed["stated"]
    floor_gap = (min(p["workers"], p["subtasks"]) - 1) * p["size_mb"]
    # The seed's rows are compared by the seed's own stated use case (the same as ours unless
    # --quick): 40 x 3 MB held at once against 3 MB.
    seed_floor_gap = (min(st["workers"], st["subtasks"]) - 1) * st["size_mb"]
    s_pt, s_ps = rows["prefork_threads"]["peak_mb"], rows["prefork_sequential"]["peak_mb"]
    s_gv = _mean([rows[s]["peak_mb"] for s in GREENLETS]) or 0.0
    o_gv = _mean([gt["peak"], gg["peak"]])
    # Same worker type, different strategy: the peaks differ by the floor gap + the excess gap.
    seed_pt_excess_gap = s_pt - s_ps - seed_floor_gap
    ours_pt_excess_gap = _diff(pt["excess"], ps["excess"])
    # gevent vs prefork-sequential: floor gap + (baseline + excess) gap.
    seed_gv_rest = s_gv - s_ps - seed_floor_gap
    ours_gv_rest = _diff(
        _mean([gt["baseline"] + gt["excess"], gg["baseline"] + gg["excess"]]),
        ps["baseline"] + ps["excess"],
    )
    # prefork-threads vs gevent: the same floor, so baseline gap + excess gap.
    seed_pt_gv = s_pt - s_gv
    ours_pt_gv = _diff(pt["peak"], o_gv)
    ours_pt_gv_baseline = _diff(pt["baseline"], _mean([gt["baseline"], gg["baseline"]]))
    ours_pt_gv_excess = _diff(pt["excess"], _mean([gt["excess"], gg["excess"]]))
    n["why"] = {
        "floor_gap_mb": floor_gap,
        "seed_floor_gap_mb": seed_floor_gap,
        "unreproduced_prefork_threads_extra_excess_mb": _diff(
            seed_pt_excess_gap, ours_pt_excess_gap
        ),
        "seed_prefork_threads_minus_sequential_beyond_floor_mb": seed_pt_excess_gap,
        "ours_prefork_threads_minus_sequential_excess_mb": ours_pt_excess_gap,
        "seed_gevent_minus_prefork_sequential_beyond_floor_mb": seed_gv_rest,
        "ours_gevent_minus_prefork_sequential_baseline_plus_excess_mb": ours_gv_rest,
        "seed_prefork_threads_minus_gevent_mb": seed_pt_gv,
        "ours_prefork_threads_minus_gevent_mb": ours_pt_gv,
        "ours_prefork_threads_minus_gevent_baseline_mb": ours_pt_gv_baseline,
        "ours_prefork_threads_minus_gevent_excess_mb": ours_pt_gv_excess,
        "seed_prefork_sequential_minus_ours_mb": _diff(s_ps, ps["peak"]),
    }
    w = n["why"]
    return [
        f"- **Baseline: two processes against one.** Our idle prefork tree (main + pool child) "
        f"is {f1(ps['baseline'])} MB RSS, our idle gevent worker (one process) "
        f"{f1(_mean([gt['baseline'], gg['baseline']]))} MB. The seed publishes no baseline, but "
        "its own rows allow a comparison: its gevent rows hold "
        f"{seed_floor_gap:g} MB more data at once than its prefork-sequential row, yet peak only "
        f"{s_gv - s_ps:.1f} MB higher, so its gevent worker's baseline + excess was "
        f"{abs(seed_gv_rest):.1f} MB {'below' if seed_gv_rest < 0 else 'above'} prefork's "
        f"(ours: {f1(abs(ours_gv_rest or 0.0))} MB "
        f"{'below' if (ours_gv_rest or 0.0) < 0 else 'above'}). Our prefork-sequential peak "
        f"({f1(ps['peak'])} MB) is {f1(w['seed_prefork_sequential_minus_ours_mb'])} MB below "
        f"the seed's ({s_ps:.2f} MB) with {p['size_mb']:g} MB of data held: the difference is "
        "in the idle worker or in overhead, which the README cannot tell apart (no baseline, "
        "no versions, no measuring method). Its own idle footprint is one thing we cannot "
        "reproduce.",
        f"- **Data held at once.** Concurrently {min(p['workers'], p['subtasks'])} x "
        f"{p['size_mb']:g} MB = {floor_gap + p['size_mb']:g} MB is alive at once, sequentially "
        f"{p['size_mb']:g} MB: {floor_gap:g} MB of the gap between prefork-threads and "
        f"prefork-sequential (same worker, same baseline) is data, not overhead. Ours: the two "
        f"peaks differ by {f1(_diff(pt['peak'], ps['peak']))} MB, leaving "
        f"{signed(ours_pt_excess_gap)} MB of extra excess for threads. The seed's differ by "
        f"{s_pt - s_ps:.2f} MB, leaving {seed_pt_excess_gap:+.1f} MB after its "
        f"{seed_floor_gap:g} MB of extra data: if its prefork-threads and prefork-sequential "
        "workers idled alike (same pool, same process count), the seed's prefork+threads "
        f"carried that much more allocator/interpreter overhead than its sequential run, "
        f"against our {signed(ours_pt_excess_gap)} MB. The "
        f"{f1(w['unreproduced_prefork_threads_extra_excess_mb'])} MB difference is the term "
        "the allocator matrix above and the bullets below try to explain.",
        f"- **Prefork-threads against gevent** (same floor): the seed's differ by "
        f"{seed_pt_gv:.1f} MB, ours by {f1(ours_pt_gv)} MB, of which "
        f"{f1(ours_pt_gv_baseline)} MB is the second process's baseline and "
        f"{signed(ours_pt_gv_excess)} MB excess. Counted in PSS (shared pages once) ours differ "
        f"by {f1(_diff(pt['peak_pss'], _mean([gt['peak_pss'], gg['peak_pss']])))} MB.",
        *seed_scale(data, seed, deco, n),
        "- **Fresh worker per run.** Each of our runs starts a new worker (membench's default), "
        "so no run inherits what an earlier one left resident (retained - baseline, table "
        "above: up to "
        f"{f1(max(v['retained_above_baseline'] or 0.0 for v in d.values()))} MB here). The "
        "seed's README does not say whether the runs of one approach shared a worker.",
    ]


def matrix_prose(
    matrix: dict[str, dict[str, dict[str, dict[str, Any]]]], n: dict[str, Any]
) -> list[str]:
    """What the allocator x payload matrix shows, sentence by sentence from its medians."""

    def cell(payload: str, malloc: str, scenario: str, key: str) -> float | None:
        return matrix.get(payload, {}).get(malloc, {}).get(scenario, {}).get(key)

    def listing(payload: str, malloc: str, key: str, group: tuple[str, ...]) -> str:
        return ", ".join(f"{short(s)} {f1(cell(payload, malloc, s, key))}" for s in group)

    def change(payload: str, malloc: str, key: str, group: tuple[str, ...]) -> str:
        return ", ".join(
            f"{short(s)} "
            + signed(_diff(cell(payload, malloc, s, key), cell(payload, "glibc", s, key)))
            for s in group
        )

    lines: list[str] = []
    present = [q for q in PAYLOADS if "glibc" in matrix.get(q, {})]
    n["matrix"] = {}
    if not present:
        return ["- No glibc combination in the matrix: nothing to compare against."]
    q0 = present[0]
    threads_os = [cell(q0, "glibc", s, "max_os_threads") for s in OS_THREADS]
    threads_gl = [cell(q0, "glibc", s, "max_os_threads") for s in GREENLETS]
    lines.append(
        f"- **OS threads.** With payload `{q0}` and glibc, the process running the task had "
        f"{_range(threads_os)} OS threads for the OS-thread approaches ("
        + ", ".join(short(s) for s in OS_THREADS)
        + f") and {_range(threads_gl)} for the greenlet ones ("
        + ", ".join(short(s) for s in GREENLETS)
        + "): greenlets all run on the gevent hub's one OS thread (the extra OS threads are "
        "the exporter's and gevent's own), so they allocate from one glibc arena, while OS "
        "threads that contend get arenas of their own (glibc makes up to 8 x cores arenas on "
        "64-bit: 16 here)."
    )
    for payload in present:
        os_ex = [cell(payload, "glibc", s, "excess") for s in OS_THREADS]
        gl_ex = [cell(payload, "glibc", s, "excess") for s in GREENLETS]
        n["matrix"][f"{payload}_glibc_excess_os_threads_mean"] = _mean(os_ex)
        n["matrix"][f"{payload}_glibc_excess_greenlets_mean"] = _mean(gl_ex)
        text = (
            f"- **Excess, payload `{payload}`, glibc.** OS threads: "
            f"{listing(payload, 'glibc', 'excess', OS_THREADS)} MB; greenlets: "
            f"{listing(payload, 'glibc', 'excess', GREENLETS)} MB."
        )
        for malloc in ("arena2", "jemalloc"):
            if malloc not in matrix[payload]:
                continue
            os_d = [
                _diff(cell(payload, malloc, s, "excess"), cell(payload, "glibc", s, "excess"))
                for s in OS_THREADS
            ]
            gl_d = [
                _diff(cell(payload, malloc, s, "excess"), cell(payload, "glibc", s, "excess"))
                for s in GREENLETS
            ]
            n["matrix"][f"{payload}_{malloc}_minus_glibc_excess_os_threads_mean"] = _mean(os_d)
            n["matrix"][f"{payload}_{malloc}_minus_glibc_excess_greenlets_mean"] = _mean(gl_d)
            name = "MALLOC_ARENA_MAX=2" if malloc == "arena2" else "jemalloc"
            text += (
                f" With {name}, excess changed by {change(payload, malloc, 'excess', OS_THREADS)} "
                f"MB (OS threads) and {change(payload, malloc, 'excess', GREENLETS)} MB "
                "(greenlets)."
            )
        lines.append(text)
    for payload in present:
        text = (
            f"- **Trim, payload `{payload}`.** Released by gc + malloc_trim (retained - trimmed): "
        )
        parts = []
        for malloc in [a for a in ALLOCATORS if a in matrix[payload]]:
            parts.append(
                f"{malloc}: "
                + ", ".join(
                    f"{short(s)} {signed(cell(payload, malloc, s, 'released_by_trim'))}"
                    for s in MATRIX_SCENARIOS
                )
                + " MB"
            )
            n["matrix"][f"{payload}_{malloc}_released_by_trim"] = {
                s: cell(payload, malloc, s, "released_by_trim") for s in MATRIX_SCENARIOS
            }
            n["matrix"][f"{payload}_{malloc}_retained_above_baseline"] = {
                s: cell(payload, malloc, s, "retained_above_baseline") for s in MATRIX_SCENARIOS
            }
        lines.append(text + "; ".join(parts) + ".")
    if "bytes" in present and "records" in present:
        diffs = {
            s: _diff(cell("records", "glibc", s, "excess"), cell("bytes", "glibc", s, "excess"))
            for s in MATRIX_SCENARIOS
        }
        n["matrix"]["glibc_records_minus_bytes_excess"] = diffs
        lines.append(
            "- **Payload shape (glibc).** Excess with records - excess with bytes: "
            + ", ".join(f"{short(s)} {signed(v)}" for s, v in diffs.items())
            + " MB. Retained - baseline, bytes: "
            + ", ".join(
                f"{short(s)} {signed(cell('bytes', 'glibc', s, 'retained_above_baseline'))}"
                for s in MATRIX_SCENARIOS
            )
            + " MB; records: "
            + ", ".join(
                f"{short(s)} {signed(cell('records', 'glibc', s, 'retained_above_baseline'))}"
                for s in MATRIX_SCENARIOS
            )
            + " MB."
        )
    return lines


def matrix_findings(
    matrix: dict[str, dict[str, dict[str, dict[str, Any]]]],
    arenas: dict[str, dict[str, dict[str, dict[str, Any]]]],
    n: dict[str, Any],
    default_arenas: int,
    records_per_subtask: int,
) -> list[str]:
    """The matrix's conclusions, each sentence chosen by the numbers it cites."""

    def cell(payload: str, malloc: str, scenario: str, key: str) -> float | None:
        return matrix.get(payload, {}).get(malloc, {}).get(scenario, {}).get(key)

    def group(payload: str, malloc: str, key: str, scenarios: tuple[str, ...]) -> float | None:
        return _mean([cell(payload, malloc, s, key) for s in scenarios])

    out: list[str] = []
    f = n.setdefault("findings", {})
    payloads = [q for q in PAYLOADS if "glibc" in matrix.get(q, {})]
    # 1. Per-thread arenas at the peak.
    if all("arena2" in matrix[q] for q in payloads):
        parts = []
        for q in payloads:
            os16, gl16 = (
                group(q, "glibc", "excess", OS_THREADS),
                group(q, "glibc", "excess", GREENLETS),
            )
            os2, gl2 = (
                group(q, "arena2", "excess", OS_THREADS),
                group(q, "arena2", "excess", GREENLETS),
            )
            gap = _diff(os16, gl16)
            cut = _diff(os16, os2)
            share = None if not gap or cut is None else cut / gap * 100
            f[f"{q}_os_minus_greenlet_excess_mb"] = gap
            f[f"{q}_arena2_cut_of_os_excess_mb"] = cut
            f[f"{q}_arena2_cut_share_of_gap_pct"] = share
            f[f"{q}_arena2_change_greenlet_excess_mb"] = _diff(gl2, gl16)
            parts.append(
                f"`{q}`: {f1(os16)} against {f1(gl16)} MB, and MALLOC_ARENA_MAX=2 takes "
                f"{f1(cut)} MB off the OS-thread approaches"
                + (f" ({share:.0f}% of the gap)" if share is not None else "")
                + f" while the greenlets' moves by {signed(_diff(gl2, gl16))} MB"
            )
        shares = [f.get(f"{q}_arena2_cut_share_of_gap_pct") for q in payloads]
        big = all(s is not None and s >= 40 for s in shares)
        out.append(
            "- **OS threads cost more excess than greenlets, and per-thread arenas are "
            + ("a large part of it" if big else "only part of it")
            + ".** Mean excess of the OS-thread approaches against the greenlet ones, glibc: "
            + "; ".join(parts)
            + ". The rest of the gap remains with 2 arenas (what else 40 OS threads cost: "
            "stacks, per-thread state; not separated here)."
        )
    # 2. Retention after the task and what malloc_trim returns.
    if "bytes" in matrix and "glibc" in matrix["bytes"]:
        gl_ret = group("bytes", "glibc", "retained_above_baseline", GREENLETS)
        gl_rel = group("bytes", "glibc", "released_by_trim", GREENLETS)
        os_ret = group("bytes", "glibc", "retained_above_baseline", OS_THREADS)
        os_rel = group("bytes", "glibc", "released_by_trim", OS_THREADS)
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
        many = f"arenas{MANY_ARENAS}"
        rows = [
            arenas.get("bytes", {}).get(s, {}).get(many)
            for s in ("prefork_threads", "solo_threads")
        ]
        if all(r is not None for r in rows):
            ret64 = _mean([r["retained_above_baseline"] for r in rows])
            rel64 = _mean([r["released_by_trim"] for r in rows])
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
        a2 = [cell(q, "arena2", s, "released_by_trim") for q in payloads for s in OS_THREADS]
        f["arena2_os_threads_released_by_trim_mb"] = a2
        text += (
            " With 2 arenas, trim returns "
            f"{_range(a2)} MB for the OS-thread approaches, depending on approach and payload "
            "(tables above)."
        )
        out.append(text)
    # 3. Payload shape.
    if "bytes" in matrix and "records" in matrix:
        os_b, os_r = (
            group("bytes", "glibc", "excess", OS_THREADS),
            group("records", "glibc", "excess", OS_THREADS),
        )
        gl_b, gl_r = (
            group("bytes", "glibc", "excess", GREENLETS),
            group("records", "glibc", "excess", GREENLETS),
        )
        t_b = group("bytes", "glibc", "time", MATRIX_SCENARIOS)
        t_r = group("records", "glibc", "time", MATRIX_SCENARIOS)
        out.append(
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
    # 4. jemalloc.
    if all("jemalloc" in matrix[q] for q in payloads):
        parts, changes = [], []
        for q in payloads:
            d_os = _diff(
                group(q, "jemalloc", "excess", OS_THREADS), group(q, "glibc", "excess", OS_THREADS)
            )
            d_gl = _diff(
                group(q, "jemalloc", "excess", GREENLETS), group(q, "glibc", "excess", GREENLETS)
            )
            changes += [d_os, d_gl]
            f[f"{q}_jemalloc_minus_glibc_excess_os_threads_mb"] = d_os
            f[f"{q}_jemalloc_minus_glibc_excess_greenlets_mb"] = d_gl
            parts.append(f"`{q}` {signed(d_os)} (OS threads) and {signed(d_gl)} MB (greenlets)")
        base = _diff(
            _mean([cell(q, "jemalloc", s, "baseline") for q in payloads for s in MATRIX_SCENARIOS]),
            _mean([cell(q, "glibc", s, "baseline") for q in payloads for s in MATRIX_SCENARIOS]),
        )
        lower = all(c is not None and c <= 0 for c in changes)
        higher = all(c is not None and c >= 0 for c in changes)
        verdict = (
            "jemalloc lowers these peaks"
            if lower
            else "jemalloc does not lower these peaks"
            if higher
            else "jemalloc moves these peaks both ways"
        )
        out.append(
            f"- **{verdict[0].upper() + verdict[1:]}.** Its excess minus glibc's: "
            + "; ".join(parts)
            + f"; it also adds {signed(base)} MB to the idle baseline. After the task its "
            "arena purge returns part of what it retains (table above)."
        )
    return out


def why_allocator(
    data: dict[str, Any],
    seed: dict[str, Any],
    deco: dict[str, dict[str, Any]],
    matrix: dict[str, dict[str, dict[str, dict[str, Any]]]],
    arenas: dict[str, dict[str, dict[str, dict[str, Any]]]],
    n: dict[str, Any],
) -> list[str]:
    """Cores/arenas and payload shape: what our matrix measured against the seed's residue."""
    cores = data["seed_doc"]["machine"]["cores"]
    default = 8 * cores
    many = f"arenas{MANY_ARENAS}"
    residue = n["why"]["seed_prefork_threads_minus_sequential_beyond_floor_mb"]
    ours_gap = n["why"]["ours_prefork_threads_minus_sequential_excess_mb"]
    lines = []
    if not arenas:
        lines.append(
            f"- **Cores and malloc arenas.** Not measured: the `arenas` step did not run (glibc "
            f"allows up to 8 x cores arenas, {default} here; the seed's core count is not stated)."
        )
    # Cores and arenas.
    parts, deltas = [], []
    for payload in [q for q in PAYLOADS if q in arenas]:
        for scenario in ("prefork_threads", "gevent_greenlets"):
            row = arenas[payload].get(scenario)
            if row is None:
                continue
            values = [row.get(k, {}).get("excess") for k in ("arena2", "glibc", many)]
            parts.append(
                f"{short(scenario)}/{payload} " + " / ".join(f1(v) for v in values) + " MB"
            )
            if scenario == "prefork_threads":
                deltas.append(_diff(values[2], values[1]))
    n["why"]["prefork_threads_excess_many_minus_default_arenas_mb"] = deltas
    text = (
        ""
        if not arenas
        else (
            "- **Cores and malloc arenas.** glibc gives contending OS threads arenas of their "
            f"own, up to 8 x cores: {default} on our {cores} cores; the seed's core count is "
            "not stated. Greenlets run on one OS thread and use one arena. Excess with 2 / "
            f"{default} / {MANY_ARENAS} arenas: " + "; ".join(parts) + "."
        )
    )
    biggest = max((d for d in deltas if d is not None), default=None)
    if arenas and biggest is not None and residue is not None:
        share = biggest / residue * 100 if residue else 0.0
        n["why"]["arena_share_of_seed_residue_pct"] = share
        text += (
            f" Going from {default} to {MANY_ARENAS} arenas (what a machine with 8 or more "
            f"cores allows) moved prefork-threads's excess by at most {signed(biggest)} MB: "
            f"{share:.0f}% of the {residue:.1f} MB the seed's prefork-threads row carries "
            f"beyond its data (ours: {signed(ours_gap)} MB). "
            + (
                "More arenas are a large part of it."
                if share >= 50
                else "On this evidence the arena count explains a small part of it at most; "
                "what explains the rest cannot be determined from our measurements."
            )
        )
    if text:
        lines.append(text)
    # Payload shape.
    if "bytes" in matrix and "records" in matrix:
        shape = {
            s: _diff(
                matrix["records"]["glibc"].get(s, {}).get("excess"),
                matrix["bytes"]["glibc"].get(s, {}).get("excess"),
            )
            for s in MATRIX_SCENARIOS
        }
        largest = max((abs(v) for v in shape.values() if v is not None), default=0.0)
        n["why"]["payload_records_minus_bytes_excess_mb"] = shape
        lines.append(
            "- **Payload shape.** The seed's README says only that subtasks create \"large "
            'data objects"; we do not know their shape. Ours, under glibc, excess with ~1 KiB '
            "records minus excess with one 3 MB buffer: "
            + ", ".join(f"{short(s)} {signed(v)}" for s, v in shape.items())
            + f" MB. The shape moves the excess by up to {largest:.1f} MB here, "
            + (
                f"far less than the seed's {residue:.1f} MB residue: of the two shapes we "
                "measured, neither reproduces it."
                if residue is not None and largest < residue / 4
                else f"comparable to the seed's {residue:.1f} MB residue."
            )
        )
    return lines


def _closeness(name: str, ratio: dict[str, Any]) -> str:
    """`our X ratio is close to / unlike the seed's (a against b)`, by a 10% band."""
    ours, theirs = ratio["ours"], ratio["seed"]
    close = ours is not None and theirs and abs(ours / theirs - 1) <= 0.10
    return (
        f"our {name} peak ratio is {'close to' if close else 'unlike'} the seed's "
        f"({f2(ours)} against {f2(theirs)})"
    )


def closing_paragraph(
    data: dict[str, Any],
    seed: dict[str, Any],
    ratios: list[dict[str, Any]],
    deco: dict[str, dict[str, Any]],
    n: dict[str, Any],
) -> str:
    ours, rows, p = data["seed"], seed["rows"], data["params"]
    d = deco
    ps, gt, gg = d["prefork_sequential"], d["gevent_threads"], d["gevent_greenlets"]
    order_ours = sorted(SEED_SCENARIOS, key=lambda s: med(ours[s], "peak") or 0.0)
    order_seed = sorted(SEED_SCENARIOS, key=lambda s: rows[s]["peak_mb"])
    same_order = order_ours == order_seed
    r = {x["ratio"]: x for x in ratios}
    main = r["prefork_threads / prefork_sequential peak"]
    gev = [r[f"{s} / prefork_sequential peak"] for s in GREENLETS]
    scale = {s: rows[s]["peak_mb"] / (med(ours[s], "peak") or 1.0) for s in SEED_SCENARIOS}
    n["seed_over_ours_peak"] = scale
    w, t, f = n["why"], n["time"], n.get("findings", {})
    os_ex = _mean([d[s]["excess"] for s in ("prefork_threads", *ONE_PROCESS) if s in d])
    gl_ex = _mean([gt["excess"], gg["excess"]])
    share = f.get("bytes_arena2_cut_share_of_gap_pct")
    many = w.get("prefork_threads_excess_many_minus_default_arenas_mb") or []
    many_max = max((x for x in many if x is not None), default=None)
    conc = [med(ours[s], "time") for s in CONCURRENT]
    ideal_conc = math.ceil(p["subtasks"] / p["workers"]) * p["time_s"]
    ours_factor = max(c for c in conc if c is not None) / ideal_conc
    sentences = [
        (
            "Our run reproduces the seed's ordering of peak memory ("
            + " < ".join(short(s) for s in order_ours)
            + ")"
            if same_order
            else "Our ordering of peak memory ("
            + " < ".join(short(s) for s in order_ours)
            + ") differs from the seed's ("
            + " < ".join(short(s) for s in order_seed)
            + ")"
        )
        + "; "
        + _closeness("prefork-threads / prefork-sequential", main)
        + ", "
        + _closeness("gevent-threads / prefork-sequential", gev[0])
        + "; the seed's absolute figures are "
        + ", ".join(f"{scale[s]:.2f}x" for s in SEED_SCENARIOS)
        + " ours ("
        + ", ".join(short(s) for s in SEED_SCENARIOS)
        + ").",
        "Three measured terms make the shape of our table: a prefork worker idles as two "
        f"processes ({f1(ps['baseline'])} MB RSS against "
        f"{f1(_mean([gt['baseline'], gg['baseline']]))} MB for one gevent process, "
        f"{f1(n['baseline_prefork_rss_minus_pss'])} MB of it shared pages that the RSS sum "
        "counts twice); the concurrent approaches hold "
        f"{w['floor_gap_mb'] + p['size_mb']:g} MB of data at once against {p['size_mb']:g} MB; "
        f"and OS threads cost more excess than greenlets ({f1(os_ex)} against {f1(gl_ex)} MB"
        + (
            f", {share:.0f}% of that gap removed by capping glibc at 2 arenas"
            if share is not None
            else ""
        )
        + ").",
        "What we cannot reproduce is the seed's idle footprint (its prefork-sequential peak is "
        f"{f1(w['seed_prefork_sequential_minus_ours_mb'])} MB above ours with "
        f"{p['size_mb']:g} MB of data held), the "
        f"{f1(w['seed_prefork_threads_minus_sequential_beyond_floor_mb'])} MB its "
        "prefork-threads row carries beyond its data (ours: "
        f"{signed(w['ours_prefork_threads_minus_sequential_excess_mb'])} MB"
        + (
            f"; allowing one arena per thread, as 8 or more cores would, added at most "
            f"{signed(many_max)} MB)"
            if many_max is not None
            else ")"
        )
        + f", and its times ({t['seed_sequential_per_subtask_s']:.2f} s per sequential "
        "subtask and "
        + "/".join(f"{x:.2f}" for x in t["seed_concurrent_per_round_s"])
        + f" s per concurrent round of {p['workers']}, against a {p['time_s']:g} s hold"
        + (
            f" that ours exceed by at most {(ours_factor - 1) * 100:.0f}%)."
            if ours_factor < 1.25
            else ")."
        ),
        "The seed's README does not give the machine, library versions, measuring method, "
        "payload or hold time that would decide them, so those differences stay unexplained "
        "rather than guessed.",
    ]
    return " ".join(sentences)


# ---- files: copies of the raw results, summary.json ---------------------------------------------


def copy_results(data: dict[str, Any], out: Path, target: Path) -> dict[str, Any]:
    """Copy results.json (timelines of non-median runs dropped only if over ~3 MB), the plot and
    matrix.json into `target`; say what was done."""
    target.mkdir(parents=True, exist_ok=True)
    source = out / "seed" / "results.json"
    stripped = False
    if source.stat().st_size > MAX_RESULTS_BYTES:
        document = json.loads(source.read_text())
        for scenario in document["scenarios"]:
            measured = [r for r in scenario["runs"] if r["status"] == "ok" and not r.get("warmup")]
            measured.sort(key=lambda r: r["peak_rss_bytes"])
            keep = measured[len(measured) // 2] if measured else None
            for run in scenario["runs"]:
                if run is not keep:
                    run["timeline"] = {}
        (target / "results.json").write_text(json.dumps(document, indent=2) + "\n")
        stripped = True
    else:
        shutil.copyfile(source, target / "results.json")
    shutil.copyfile(out / "seed" / "memory_comparison.png", target / "memory_comparison.png")
    shutil.copyfile(out / "matrix" / "matrix.json", target / "matrix.json")
    if (out / "arenas" / "matrix.json").exists():
        shutil.copyfile(out / "arenas" / "matrix.json", target / "arenas-matrix.json")
    return {
        "source_bytes": source.stat().st_size,
        "stripped_timelines": stripped,
        "copied_bytes": (target / "results.json").stat().st_size,
    }


def build_report(
    out: Path, seed: dict[str, Any], seed_readme: Path, report: Path, args: argparse.Namespace
) -> dict[str, Any]:
    data = load_results(out, args.quick)
    ratios = compute_ratios(data, seed)
    deco = compute_decomposition(data)
    matrix = compute_matrix(data)
    target = report.with_suffix("")
    copied = copy_results(data, out, target)
    rel = target.name
    files = [
        f"[`{rel}/results.json`]({rel}/results.json): the seed use case, every run, as written by "
        "`membench run`"
        + (
            f" (it was {copied['source_bytes'] / 1e6:.1f} MB: the `timeline` arrays of all but "
            "the median-peak run per scenario are emptied here; every other figure is intact)"
            if copied["stripped_timelines"]
            else " (unchanged)"
        ),
        f"[`{rel}/memory_comparison.png`]({rel}/memory_comparison.png): tree RSS and PSS over "
        "time, the median-peak run per approach",
        f"[`{rel}/matrix.json`]({rel}/matrix.json): the matrix's summaries per combination "
        "(per-run files stay in the run's output directory)",
        f"[`{rel}/arenas-matrix.json`]({rel}/arenas-matrix.json): the `arenas` step's "
        f"summaries (`MALLOC_ARENA_MAX={MANY_ARENAS}`)",
        f"[`{rel}/summary.json`]({rel}/summary.json): the ratios, the decomposition and the "
        "matrix figures on this page, machine-readable",
    ]
    argv = f"--output {args.output}" + (f" --runs {args.runs}" if args.runs != 3 else "")
    notes: dict[str, Any] = {"quick": args.quick, "argv": argv, "files": files}
    arenas = compute_arenas(data, matrix) if data["arenas"] else {}
    notes["arenas_lines"] = render_arenas(data, arenas) if arenas else []
    facts = explain(data, seed, ratios, deco, matrix, arenas)
    notes.update(facts["prose"])
    text = render(data, seed, ratios, deco, matrix, notes)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    failed = sum(
        fig["runs"] - fig["runs_ok"]
        for fig in [
            *data["seed"].values(),
            *[f for m in data["matrix"].values() for f in m.values()],
        ]
    )
    summary = {
        "generated_by": "benchmarks/reproduce_seed.py",
        "quick": args.quick,
        "commands": [data["seed_doc"]["command"], data["matrix_doc"]["command"]],
        "measured": {"seed_run": _when(data["seed_doc"])},
        "machine": data["seed_doc"]["machine"],
        "parameters": data["params"],
        "seed_published": {
            "readme": str(seed_readme),
            "rows": seed["rows"],
            "stated": seed["stated"],
        },
        "ours": {
            s: {
                "approach": fig["approach"],
                "peak_mb": fig["peak"],
                "time_s": fig["time"],
                "ideal_s": fig["ideal_s"],
                "runs_ok": fig["runs_ok"],
                "runs": fig["runs"],
            }
            for s, fig in data["seed"].items()
        },
        "ratios": ratios,
        "decomposition_mb": deco,
        "matrix_mb": matrix,
        "arenas_mb": arenas,
        "environment": data["environment"],
        "derived": facts["numbers"],
        "results_copy": copied,
        "failed_runs": failed,
    }
    (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print("\nSEED REPRODUCTION (MB, s; ours = medians over runs)")
    ours, seed = summary["ours"], summary["seed_published"]["rows"]
    header = f"{'approach':<36}{'peak ours':>11}{'peak seed':>11}{'time ours':>11}{'time seed':>11}"
    print(header)
    print("-" * len(header))
    for s in sorted(ours, key=lambda k: ours[k]["peak_mb"]["median"] if ours[k]["peak_mb"] else 0):
        fig = ours[s]
        print(
            f"{fig['approach']:<36}{f1(med(fig, 'peak_mb')):>11}{f2(seed[s]['peak_mb']):>11}"
            f"{f2(med(fig, 'time_s')):>11}{f2(seed[s]['time_s']):>11}"
        )
    print()
    header = f"{'ratio':<50}{'ours':>8}{'seed':>8}"
    print(header)
    print("-" * len(header))
    for r in summary["ratios"]:
        print(f"{r['ratio']:<50}{f2(r['ours']):>8}{f2(r['seed']) if r['seed'] else '-':>8}")
    print()
    header = f"{'approach':<20}{'baseline':>9}{'floor':>7}{'excess':>8}{'peak':>8}{'peakPSS':>9}"
    header += f"{'HWMsum':>8}{'retained':>9}{'trimmed':>8}"
    print(header)
    print("-" * len(header))
    for s, d in summary["decomposition_mb"].items():
        print(
            f"{short(s):<20}{f1(d['baseline']):>9}{f1(d['floor']):>7}{f1(d['excess']):>8}"
            f"{f1(d['peak']):>8}{f1(d['peak_pss']):>9}{f1(d['hwm_sum']):>8}"
            f"{f1(d['retained']):>9}{f1(d['trimmed']):>8}"
        )
    if summary["failed_runs"]:
        print(f"\n{summary['failed_runs']} run(s) FAILED: see the report")


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="reproduce_seed.py", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--output",
        default=str(Path(tempfile.gettempdir()) / "membench-seed-reproduction"),
        help="directory for the raw membench results (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (default: 3)")
    parser.add_argument(
        "--skip-run",
        action="store_true",
        help="do not measure: regenerate the report from the JSON already in --output",
    )
    parser.add_argument(
        "--report",
        default=str(REPORT),
        help="the Markdown report; its files go in a directory of the same name without .md "
        "(default: docs/results/seed-reproduction.md)",
    )
    parser.add_argument(
        "--seed-readme", default=str(SEED_README), help="the seed benchmark's README"
    )
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help="measurement steps to run (default: %(default)s); the report reads all three",
    )
    # Development only: tiny settings and a 1x2 matrix, to exercise the whole pipeline quickly.
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = [step for step in args.steps if step not in STEPS]
    if unknown:
        parser.error(f"--steps: unknown step {unknown[0]!r} (choose from {', '.join(STEPS)})")
    if not 1 <= args.runs <= 1000:
        parser.error(f"--runs: must be between 1 and 1000, got {args.runs}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output).resolve()
    seed_readme = Path(args.seed_readme)
    try:
        # Parse the seed first: a missing README must not cost a 15-minute run.
        seed = parse_seed(seed_readme)
        commands = run_commands(out, args.runs, args.quick)
        codes: dict[str, int] = {}
        if not args.skip_run:
            out.mkdir(parents=True, exist_ok=True)
            for name, command, extra_env in commands:
                if name in args.steps:
                    codes[name] = run_step(out, name, command, extra_env)
        report = Path(args.report).resolve()
        summary = build_report(out, seed, seed_readme, report, args)
    except Failure as exc:
        print(f"reproduce_seed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reproduce_seed: interrupted", file=sys.stderr)
        return 130
    print_summary(summary)
    print(f"\nwrote {report} and {report.with_suffix('')}/")
    return 1 if any(codes.values()) or summary["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
