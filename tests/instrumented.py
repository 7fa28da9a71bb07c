"""Helpers for tests of the instrument on a user's app: the example app's real worker, started as a
user starts it (`celery -A proj worker ...`), its exporters found through file_sd, and a client."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from helpers import REPO, samples, scrape

from membench.exporter import names
from membench.processes import spawn, stop, wait_for

EXAMPLE_DIR = REPO / "examples" / "instrumented_app"


@dataclass
class ExampleWorker:
    """A running `celery -A proj worker` of the example app."""

    pool: str
    concurrency: int
    queue: str
    targets_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    client: Celery
    stopped: bool = field(default=False)

    def addresses(self) -> dict[str, str]:
        """This worker's exporter addresses by child label ("" is the main process), from the
        file_sd directory it shares with other workers (a file per process, named by pid)."""
        import psutil

        try:
            tree = {self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children())}
        except psutil.NoSuchProcess:
            return {}
        found = {}
        for path in (self.targets_dir / "workers").glob("*_*.json"):
            if int(path.stem.rsplit("_", 1)[1]) not in tree:
                continue
            try:
                (entry,) = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                continue  # removed or replaced meanwhile
            found[entry["labels"]["child"]] = entry["targets"][0]
        return found

    def main_address(self) -> str:
        return self.addresses()[""]

    def metrics(self, child: str = "") -> str:
        return scrape(self.addresses()[child])

    def send(self, task: str, *args: Any) -> Any:
        return self.client.send_task(task, args=args, queue=self.queue)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        self.stopped = True
        code = stop(self.proc, sig=sig)
        self.client.close()
        return code


def task_value(text: str, name: str, task: str, **labels: str) -> float | None:
    """A per-task sample's value, or None when the worker has no such series."""
    found = [
        v
        for lbl, v in samples(text).get(name, [])
        if lbl.get(names.TASK_LABEL) == task and labels.items() <= lbl.items()
    ]
    assert len(found) <= 1, found
    return found[0] if found else None


def children_pids(worker: ExampleWorker) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(worker.proc.pid).children()]


def start_example_worker(
    redis_url: str,
    tmp_path: Path,
    targets: Path,
    pool: str,
    concurrency: int = 1,
    extra_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
    wait: bool = True,
    app: str = "proj",
    app_dir: Path = EXAMPLE_DIR,
    argv_prefix: tuple[str, ...] = (),
) -> ExampleWorker:
    """Start `celery -A app worker` from `app_dir` as a user would, with file_sd in `targets`;
    `argv_prefix` runs before it (e.g. a shell that moves it into a cgroup)."""
    queue = f"example.{secrets.token_hex(4)}"
    log_path = tmp_path / f"worker-{queue}.log"
    env = dict(os.environ)
    env.update(
        CELERY_BROKER_URL=redis_url,
        MEMBENCH_TARGETS_DIR=str(targets),
        MEMBENCH_METRICS_PORT="0",
        PYTHONPATH=str(app_dir),
    )
    env.update(extra_env or {})
    argv = [*argv_prefix, sys.executable, "-m", "celery", "-A", app, "worker", "-P", pool]
    argv += ["-c", str(concurrency), "-Q", queue, "-n", f"{queue}@%h", "-l", "INFO"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", *extra_args]
    proc = spawn(argv, env=env, log_path=log_path, cwd=app_dir)
    client = Celery("client", broker=redis_url, backend=redis_url)
    client.conf.update(task_serializer="json", accept_content=["json"])
    worker = ExampleWorker(pool, concurrency, queue, targets, log_path, proc, client)
    if wait:
        expected = 1 + (concurrency if pool == "prefork" else 0)
        try:
            wait_for(lambda: _registered(worker, expected), 60, what=f"{expected} exporters")
            wait_for(lambda: "ready." in worker.log(), 60, what="the worker ready")
        except BaseException:
            worker.stop()
            raise
    return worker


def _registered(worker: ExampleWorker, expected: int) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker exited {worker.proc.returncode}: {worker.log()[-3000:]}")
    return worker.targets_dir.is_dir() and len(worker.addresses()) >= expected


StartExample = Callable[..., ExampleWorker]
