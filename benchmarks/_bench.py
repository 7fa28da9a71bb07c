"""Helpers shared by the performance benchmarks (docs/performance.md): command line, workers,
tables, JSON.

Not a benchmark itself. Every script parses its flags with `Script`, prints a table and writes a
JSON document with a `machine` block (membench.run.report.machine_info) through `Script.save`, so
a number can be traced to the box it came from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from membench.broker import EmbeddedRedis
from membench.jsonfile import write_json_atomic
from membench.run.report import machine_info
from membench.run.worker import WorkerProcess
from membench.stats import describe
from membench.units import MIB as MIB  # the benchmarks read _bench.MIB
from membench.workers.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "docs" / "results" / "performance"
# One scenario per pool: the strategy does not change an idle worker.
POOL_SCENARIOS = {"prefork": "prefork_sequential", "gevent": "gevent_greenlets"}


def default_output(name: str) -> Path:
    return RESULTS_DIR / f"{name}.json"


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write a result document (indent 2, trailing newline) atomically and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, document)
    print(f"\nwrote {path}")


def document(benchmark: str, argv: Sequence[str], **fields: Any) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "command": " ".join(["python", f"benchmarks/{benchmark}.py", *argv]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        # A "before" run imports membench from an older tree put first on PYTHONPATH.
        "pythonpath": os.environ.get("PYTHONPATH") or None,
        **fields,
    }


# The `membench run` flags a benchmark can pass on, and their types.
RUN_FLAGS: dict[str, type] = {
    "subtasks": int,
    "size": float,
    "workers": int,
    "time": float,
    "runs": int,
    "scenarios": str,
}


class Script(argparse.ArgumentParser):
    """One benchmark script's command line and result file.

    Takes the script's own flags like any ArgumentParser (description: the first line of its
    docstring). Given `repetitions`, adds the shared `--repetitions` flag first, with that
    default, and records its value first in the result document. `parse` adds `--output` last
    (default: the committed result file) and `save` writes the result document there.
    """

    def __init__(self, benchmark: str, doc: str | None, repetitions: int | None = None) -> None:
        super().__init__(description=(doc or benchmark).splitlines()[0])
        self.benchmark = benchmark
        self.repeats = repetitions is not None
        self.run_flags: list[str] = []
        self.argv: list[str] = []
        self.args = argparse.Namespace()  # set by `parse`
        if repetitions is not None:
            self.add_argument("--repetitions", type=int, default=repetitions)

    def add_run_flags(self, **defaults: Any) -> None:
        """Flags passed on to `membench run` (RUN_FLAGS), in this order, with these defaults."""
        for name, default in defaults.items():
            self.add_argument(f"--{name}", type=RUN_FLAGS[name], default=default)
        self.run_flags = list(defaults)

    def run_args(self) -> list[str]:
        """The `membench run` arguments of the parsed run flags, in the order they were added."""
        return [
            item for name in self.run_flags for item in (f"--{name}", str(getattr(self.args, name)))
        ]

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        """Add `--output`, parse `argv` and keep both for `save`."""
        self.add_argument("--output", type=Path, default=default_output(self.benchmark))
        self.argv, self.args = list(argv), self.parse_args(argv)
        return self.args

    def save(self, **fields: Any) -> int:
        """Write the result document (`repetitions` if any, then `fields`) to `--output`.

        Returns 0, the exit status of a finished benchmark.
        """
        if self.repeats:
            fields = {"repetitions": self.args.repetitions, **fields}
        write_json(self.args.output, document(self.benchmark, self.argv, **fields))
        return 0


def which(tool: str, missing: str) -> str | None:
    """`tool`'s path on PATH, or None after printing `missing` to stderr."""
    found = shutil.which(tool)
    if found is None:
        print(missing, file=sys.stderr)
    return found


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def summary(values: Sequence[float]) -> dict[str, float]:
    """membench.stats.describe without its stdev: the {median, min, max, n} the results keep."""
    return {k: v for k, v in describe(values).items() if k != "stdev"}


@contextlib.contextmanager
def broker() -> Iterator[tuple[str, Any]]:
    """An embedded redis-server and the membench Celery app pointed at it."""
    from membench.workers.app import app

    with EmbeddedRedis() as server:
        app.conf.broker_url = server.url
        app.conf.result_backend = server.url
        yield server.url, app


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="membench-bench-") as path:
        yield Path(path)


class Workers:
    """Starts `membench worker`s the way the runner does and always stops them."""

    def __init__(self, broker_url: str, app: Any, directory: Path) -> None:
        self.broker_url = broker_url
        self.app = app
        self.directory = directory
        self.started: list[WorkerProcess] = []

    def start(
        self, scenario: str, concurrency: int = 1, wait: bool = True, **extra_env: str
    ) -> WorkerProcess:
        worker = WorkerProcess(
            SCENARIOS[scenario],
            concurrency,
            self.broker_url,
            self.directory,
            secrets.token_hex(4),
            extra_env=extra_env,
        )
        self.started.append(worker)
        worker.start()
        if wait:
            worker.wait_ready(self.app)
        return worker

    def stop(self, worker: WorkerProcess) -> None:
        worker.stop()
        if worker in self.started:
            self.started.remove(worker)

    def stop_all(self) -> None:
        for worker in list(self.started):
            self.stop(worker)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_pinged(worker: WorkerProcess, app: Any, timeout: float = 60.0) -> None:
    """Ready without exporters (MEMBENCH_EXPORTER=off): answers a ping and has its pool children."""
    node = worker.node
    processes = 1 + (worker.concurrency if worker.scenario.pool == "prefork" else 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"worker exited: {worker.log_tail()}")
        if app.control.ping(destination=[node], timeout=0.2) and len(worker.tree()) >= processes:
            return
        time.sleep(0.02)
    raise TimeoutError(f"worker not ready: {worker.log_tail()}")


def exporter_addresses(worker: WorkerProcess) -> dict[int, tuple[str, str]]:
    """pid -> (role, host:port) of every registered exporter of the worker."""
    out: dict[int, tuple[str, str]] = {}
    for path in sorted((worker.targets_dir / "workers").glob("*.json")):
        pid = int(path.stem.rpartition("_")[2])
        for entry in json.loads(path.read_text()):
            out[pid] = (entry["labels"]["role"], entry["targets"][0])
    return out


# What Prometheus 2.42 sends with every scrape: OpenMetrics preferred, gzip accepted.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def scrape(address: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> str:
    """One /metrics body; with `headers` (PROMETHEUS_HEADERS), the raw body as sent, gzip
    included, decoded as latin-1 so that its length is its size in bytes."""
    request = urllib.request.Request(f"http://{address}/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return body.decode("latin-1") if headers else body.decode()


def series_count(exposition: str) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith("#"))


def membench_run(args: Sequence[str], output: Path, timeout: float = 7200) -> dict[str, Any]:
    """Run `membench run ARGS --output OUTPUT` as a user would, timing its progress lines.

    Returns the results.json document with `_wall_s` (the whole command) and `_lines`
    ([seconds since start, stderr line]) added: run-start lines mark where each scenario begins.
    """
    argv = [sys.executable, "-m", "membench", "run", *args, "--output", str(output)]
    t0 = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            lines.append((time.monotonic() - t0, line.rstrip("\n")))
        stdout = proc.stdout.read()
        code = proc.wait(timeout=timeout)
    wall = time.monotonic() - t0
    if code != 0:
        tail = "\n".join(text for _, text in lines[-10:])
        raise RuntimeError(f"membench run exited {code}:\n{tail}\n{stdout[-2000:]}")
    doc = json.loads((output / "results.json").read_text())
    doc["_wall_s"] = wall
    doc["_lines"] = lines
    doc["_stdout"] = stdout
    return doc


def scenario_walls(doc: dict[str, Any]) -> dict[str, float]:
    """Seconds from each scenario's first run-start line to the next one's (or the exit)."""
    starts: list[tuple[float, str]] = []
    for t, text in doc["_lines"]:
        if text.startswith("[") and "starting worker" in text:
            name = text.split("] ", 1)[1].split(" ", 1)[0]
            if not starts or starts[-1][1] != name:
                starts.append((t, name))
    ends = [t for t, _ in starts[1:]] + [doc["_wall_s"]]
    return {name: end - t for (t, name), end in zip(starts, ends, strict=True)}


def send_batch(app: Any, worker: WorkerProcess, **params: Any) -> Any:
    """Send one process_batch to the worker's queue (params as BatchParams takes them)."""
    kwargs = {"strategy": worker.scenario.strategy, "payload": "bytes", **params}
    return app.send_task("membench.process_batch", kwargs=kwargs, queue=worker.queue)


def gauge_value(exposition: str, name: str) -> float:
    """The first sample of the labelled gauge `name` in an exposition; 0 when there is none."""
    for line in exposition.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
