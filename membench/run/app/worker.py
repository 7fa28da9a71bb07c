"""The user's worker for `membench run --app`: a WorkerProcess (readiness, process tree, stop
with no escapee) started through the launcher instead of membench's own app, and the per-run
records its processes write."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import msgspec

from membench import settings
from membench.exporter import names
from membench.processes import spawn
from membench.results.model import RunRecord
from membench.run.worker import GEVENT_PREFETCH_ARGS, WorkerOptions, WorkerProcess
from membench.targets import addresses_by_pid
from membench.workers.allocator import allocator_env
from membench.workers.scenarios import Scenario
from membench.workers.user_payload import started_dir_environment

LAUNCHER = "membench.run.app.launcher"


def app_scenario(pool: str, concurrency: int) -> Scenario:
    """A row of an --app run: its name is its identity in results.json and `membench compare`."""
    return Scenario(f"{pool}-c{concurrency}", pool, "app", f"{pool} -c {concurrency}")


class AppWorker(WorkerProcess):
    """`celery worker -P POOL -c N` of the user's app, with the instrument and run records."""

    def __init__(
        self,
        app_spec: str,
        pool: str,
        concurrency: int,
        broker_url: str,
        workdir: Path,
        token: str,
        options: WorkerOptions | None = None,
    ) -> None:
        super().__init__(
            app_scenario(pool, concurrency), concurrency, broker_url, workdir, token, None, options
        )
        self.app_spec = app_spec
        self.records_dir = workdir / f"records-{token}"

    def celery_argv(self) -> list[str]:
        options = self.options
        recycling: list[str] = []
        if self.scenario.pool == "prefork":
            if options.max_tasks_per_child:
                recycling += ["--max-tasks-per-child", str(options.max_tasks_per_child)]
            if options.max_memory_per_child_kib:
                recycling += ["--max-memory-per-child", str(options.max_memory_per_child_kib)]
        return [
            "worker",
            "-P",
            self.scenario.pool,
            "-c",
            str(self.concurrency),
            "-Q",
            self.queue,
            "-n",
            self.hostname,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
            *GEVENT_PREFETCH_ARGS.get(self.scenario.pool, []),
            *recycling,
        ]

    def start(self) -> None:
        self.records_dir.mkdir(mode=0o700, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                settings.METRICS_HOST: "127.0.0.1",
                settings.METRICS_PORT: "0",
                settings.BROKER_URL: self._broker_url,
                settings.TARGETS_DIR: str(self.targets_dir),
                settings.READY_FILE: str(self.ready_path),
                "PYTHONUNBUFFERED": "1",
                **allocator_env(self.options.malloc),
                **started_dir_environment(env),
            }
        )
        self.ready_path.unlink(missing_ok=True)
        argv = [sys.executable, "-m", LAUNCHER, str(self.records_dir), self.app_spec]
        self._started = time.monotonic()
        self.proc = spawn(argv + self.celery_argv(), env=env, log_path=self.log_path)

    def child_recycles(self) -> dict[str, float] | None:
        """The instrument's child recycles by reason, from the main process's /metrics."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        addresses = addresses_by_pid(self.targets_dir).get(self.pid) or []
        for address in addresses:
            try:
                with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
                    text = reply.read().decode()
            except OSError:
                continue
            out: dict[str, float] = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == names.CHILD_RECYCLES_TOTAL:
                        reason = sample.labels.get(names.REASON_LABEL, "")
                        out[reason] = out.get(reason, 0.0) + sample.value
            return out
        return None


RECORD_DECODER = msgspec.json.Decoder(RunRecord)


class RecordReader:
    """Reads the launcher's per-process record files as they grow: whole lines only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}

    def read(self) -> list[RunRecord]:
        """The records written since the last read; a line that is not one is skipped (the
        user's code shares the process and could write anything anywhere)."""
        records: list[RunRecord] = []
        with contextlib.suppress(FileNotFoundError):
            paths = sorted(self.directory.glob("*.jsonl"))
            for path in paths:
                offset = self._offsets.get(path, 0)
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                self._offsets[path] = offset + len(chunk)
                text = self._partial.pop(path, b"") + chunk
                *lines, rest = text.split(b"\n")
                if rest:
                    self._partial[path] = rest
                for line in lines:
                    with contextlib.suppress(msgspec.DecodeError):
                        records.append(RECORD_DECODER.decode(line))
        return records
