"""Helpers shared by the performance benchmarks (docs/performance.md): flags, workers, scrapes,
`membench run`, and the table and JSON document (with a `machine` block, so that a number can be
traced to the box it came from) that every benchmark ends with.

Not a benchmark itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from membench.broker import EmbeddedRedis
from membench.jsonfile import write_json_atomic
from membench.results.document import plain, read_results
from membench.results.model import BenchmarkResults
from membench.run.report import machine_info
from membench.run.worker import WorkerProcess
from membench.stats import describe
from membench.targets import addresses_by_pid
from membench.workers.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "docs" / "results" / "performance"
# One scenario per pool: the strategy does not change an idle worker.
POOL_SCENARIOS = {"prefork": "prefork_sequential", "gevent": "gevent_greenlets"}


def parser(doc: str | None, spec: str = "") -> argparse.ArgumentParser:
    """A benchmark's flags (description: its docstring's first line): `--output`, and `--NAME`
    for each `NAME=DEFAULT` of `spec` (see `add_flags`)."""
    found = argparse.ArgumentParser(description=(doc or "").splitlines()[0], allow_abbrev=False)
    found.add_argument("--output", type=Path, help="default: docs/results/performance/NAME.json")
    return add_flags(found, spec)


def add_flags(parser: argparse.ArgumentParser, spec: str) -> argparse.ArgumentParser:
    """`--NAME` for each `NAME=DEFAULT` of `spec` (space-separated), of its default's type:
    int, float, else str."""
    for item in spec.split():
        name, _, text = item.partition("=")
        default: Any = text
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                default = kind(text)
                break
        parser.add_argument(f"--{name}", type=type(default), default=default)
    return parser


def save(name: str, argv: Sequence[str], output: Path | None, **fields: Any) -> int:
    """Write the result document of `python benchmarks/<script> ARGV` (`name`: its JSON's stem,
    `--output` else) and say where; 0, the exit status of a finished benchmark."""
    script = Path(sys.argv[0]).name
    document = {
        "benchmark": name,
        "command": " ".join(["python", f"benchmarks/{script}", *argv]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": plain(machine_info()),
        # A "before" run imports membench from an older tree put first on PYTHONPATH.
        "pythonpath": os.environ.get("PYTHONPATH") or None,
        **fields,
    }
    path = output or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, document)
    print(f"\nwrote {path}")
    return 0


def print_table(title: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """`title`, then `rows` as columns: headers, the first row's keys but those holding lists or
    mappings (a summary shows its median)."""

    def cell(value: Any) -> str:
        if isinstance(value, Mapping):
            value = value["median"]
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return "-" if value is None else str(value)

    def shown(value: Any) -> bool:
        return not isinstance(value, list | Mapping) or "median" in value

    keys = [k for k, v in rows[0].items() if shown(v)]
    cells = [keys] + [[cell(row.get(k)) for k in keys] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(keys))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def summary(values: Sequence[float]) -> dict[str, float]:
    """membench.stats.describe without its stdev: the {median, min, max, n} the results keep."""
    return {k: v for k, v in describe(values).items() if k != "stdev"}


class Workers:
    """An embedded redis-server, the membench Celery app pointed at it, and `membench worker`s
    started the way the runner starts them, each stopped whatever happens."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        from membench.workers.app import app

        url = stack.enter_context(EmbeddedRedis()).url
        app.conf.broker_url = app.conf.result_backend = url
        self.app, self.broker_url = app, url
        self.directory = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="membench-bench-"))
        )
        self.started: list[WorkerProcess] = []
        stack.callback(self.stop_all)

    def start(
        self, scenario: str, concurrency: int = 1, wait: bool = True, **kw: Any
    ) -> WorkerProcess:
        """A worker of `scenario`; `kw`: its environment, or `options` (WorkerOptions)."""
        where = (self.broker_url, self.directory, secrets.token_hex(4))
        options = kw.pop("options", None)
        worker = WorkerProcess(SCENARIOS[scenario], concurrency, *where, kw, options)
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

    def start_unexported(self, scenario: str) -> WorkerProcess:
        """A worker with MEMBENCH_EXPORTER=off, ready: it answers a ping and has its pool
        children (it registers no exporter for wait_ready to find)."""
        worker = self.start(scenario, wait=False, MEMBENCH_EXPORTER="off")
        processes = 1 + (worker.concurrency if worker.scenario.pool == "prefork" else 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"worker exited: {worker.log_tail()}")
            if (
                self.app.control.ping(destination=[worker.node], timeout=0.2)
                and len(worker.tree()) >= processes
            ):
                return worker
            time.sleep(0.02)
        raise TimeoutError(f"worker not ready: {worker.log_tail()}")

    def send_batch(self, worker: WorkerProcess, **params: Any) -> Any:
        """Send one process_batch to the worker's queue (params as BatchParams takes them)."""
        kwargs = {"strategy": worker.scenario.strategy, "payload": "bytes", **params}
        return self.app.send_task("membench.process_batch", kwargs=kwargs, queue=worker.queue)


@contextlib.contextmanager
def workers() -> Iterator[Workers]:
    with contextlib.ExitStack() as stack:
        yield Workers(stack)


def exporters(worker: WorkerProcess) -> dict[int, tuple[str, str]]:
    """pid -> (role, host:port) of every registered exporter of the worker."""
    found = addresses_by_pid(worker.targets_dir)
    return {pid: ("main" if pid == worker.pid else "child", a[0]) for pid, a in found.items()}


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


@dataclass(frozen=True)
class MembenchRun:
    """One `membench run` as a user ran it: its results.json, read by membench's own reader."""

    results: BenchmarkResults
    wall_s: float  # the whole command
    stdout: str
    walls: dict[str, float]  # from a scenario's first "starting worker" line to the next one's


def membench_run(args: Sequence[str]) -> MembenchRun:
    """Run `membench run ARGS` as a user would, into a temporary directory, timing its progress
    lines."""
    with tempfile.TemporaryDirectory(prefix="membench-bench-") as output:
        argv = [sys.executable, "-m", "membench", "run", *args, "--output", output]
        t0 = time.monotonic()
        starts: list[tuple[float, str]] = []
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stderr is not None and proc.stdout is not None
            tail: list[str] = []
            for line in proc.stderr:
                tail = [*tail[-9:], line]
                if line.startswith("[") and "starting worker" in line:
                    name = line.split("] ", 1)[1].split(" ", 1)[0]
                    if not starts or starts[-1][1] != name:
                        starts.append((time.monotonic() - t0, name))
            stdout = proc.stdout.read()
            code = proc.wait()
        wall = time.monotonic() - t0
        if code != 0:
            raise RuntimeError(f"membench run exited {code}:\n{''.join(tail)}\n{stdout[-2000:]}")
        results = read_results(Path(output) / "results.json")
    if not isinstance(results, BenchmarkResults):
        raise RuntimeError(f"membench run {shlex.join(args)} wrote an --app results.json")
    ends = [t for t, _ in starts[1:]] + [wall]
    walls = {name: end - t for (t, name), end in zip(starts, ends, strict=True)}
    return MembenchRun(results, wall, stdout, walls)
