"""Helpers for tests: scrape and parse exporters, run the CLI, require binaries."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from membench.exporter import names
from membench.processes import spawn, stop, wait_for
from membench.run.records import RunConfig
from membench.run.worker import WorkerProcess
from membench.stack import supervisor as stack
from membench.targets import read_targets
from membench.workers.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
TASK_RECEIVED = re.compile(r"Task membench\.process_batch\[[0-9a-f-]+\] received")


def build_wheel(dist: Path) -> Path:
    """The package's wheel, built into `dist` without build isolation (no download)."""
    build_dir_existed = (REPO / "build").exists()
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("-w", str(dist), str(REPO)),
        ],
        check=True,
        capture_output=True,
    )
    if not build_dir_existed:  # setuptools builds in the checkout: leave it as it was
        shutil.rmtree(REPO / "build", ignore_errors=True)
    (wheel,) = dist.glob("celery_membench-*.whl")
    return wheel


def shared_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, built once per test run and shared by the parallel workers:
    setuptools builds in the checkout's build/, which two builds at once would share."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist every worker's basetemp sits in this run's own directory; alone, basetemp is.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(root / "wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        dist = root / "wheel-dist"
        built = list(dist.glob("celery_membench-*.whl"))
        return built[0] if built else build_wheel(dist)


def fresh_venv(venv: Path, *args: str) -> tuple[Path, Path]:
    """A new venv (`args` for `python -m venv`, e.g. --without-pip): its python and the
    site-packages a .pth file there adds paths to."""
    subprocess.run([sys.executable, "-m", "venv", *args, str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return python, Path(site)


def require_binary(name: str) -> str:
    """Path of a binary the test needs: skipped on a developer machine, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


# The conftest fixture that starts a real worker and stops it at teardown.
StartWorker = Callable[..., WorkerProcess]

# Valid process_batch parameters, small and fast.
GOOD_PARAMS = {"subtasks": 2, "size_mb": 1, "hold_s": 0, "workers": 2, "payload": "bytes"}


def run_config(scenarios: list[str], **overrides: Any) -> RunConfig:
    """A small `membench run` configuration of real scenarios; keywords override."""
    fields: dict[str, Any] = dict(subtasks=2, size_mb=1, hold_s=1.0, workers=1, concurrency=1)
    fields |= dict(runs=1, payload="bytes")
    return RunConfig(scenarios=[SCENARIOS[name] for name in scenarios], **(fields | overrides))


def send_batch(app: Any, worker: WorkerProcess, **params: Any) -> Any:
    """Send process_batch straight to the worker's queue, unvalidated, as any client could."""
    kwargs = {"strategy": worker.scenario.strategy, **params}
    return app.send_task("membench.process_batch", kwargs=kwargs, queue=worker.queue)


def load_rule_groups() -> list[dict[str, Any]]:
    """Every group of prometheus/rules/*.yml."""
    import yaml

    groups: list[dict[str, Any]] = []
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def worker_log(membench_pid: int) -> Path | None:
    """The log of the celery worker a `membench run` started (its stdout), once it exists."""
    for child in psutil.Process(membench_pid).children():
        try:
            if "celery" in child.cmdline():
                return Path(os.readlink(f"/proc/{child.pid}/fd/1"))
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return None


def task_received(membench_pid: int) -> bool:
    """Whether the worker of a `membench run` has received its task (so it is mid-task)."""
    log = worker_log(membench_pid)
    return log is not None and bool(TASK_RECEIVED.search(log.read_text(errors="replace")))


def exporter_addresses(worker: WorkerProcess) -> dict[str, list[str]]:
    """Registered exporter addresses by role ('main', 'child')."""
    by_role: dict[str, list[str]] = {}
    for entry in read_targets(worker.targets_dir):
        by_role.setdefault(entry["labels"]["role"], []).extend(entry["targets"])
    return by_role


def scrape(address: str, path: str = "/metrics", timeout: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as response:
        return response.read().decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by name from an exposition, e.g. samples(t)["membench_process_rss_bytes"]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(text: str, name: str, **labels: str) -> float:
    matches = [v for lbl, v in samples(text).get(name, []) if labels.items() <= lbl.items()]
    assert len(matches) == 1, f"{name}{labels}: {matches}"
    return matches[0]


def membench(*args: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real `membench` console entry point as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "membench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def executing_address(worker: WorkerProcess) -> str:
    """The exporter of the process that runs tasks: the pool child (prefork) or the main one."""
    role = names.ROLE_CHILD if worker.scenario.pool == "prefork" else names.ROLE_MAIN
    (address,) = exporter_addresses(worker)[role]
    return address


def task_runs(worker: WorkerProcess, outcome: str) -> float:
    """process_batch's runs by outcome as the worker's main exporter shows them now (the worker's
    per-task metrics, summed over its children); 0 before its first run."""
    (main,) = exporter_addresses(worker)[names.ROLE_MAIN]
    found = [
        v
        for labels, v in samples(scrape(main)).get(names.TASK_RUNS_TOTAL, [])
        if labels.get(names.TASK_LABEL) == names.BENCHMARK_TASK
        and labels.get(names.OUTCOME_LABEL) == outcome
    ]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


def stored_meta(redis_url: str, task_id: str) -> dict[str, Any] | None:
    """The result backend's raw JSON for a task, or None when nothing was stored."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.get(f"celery-task-meta-{task_id}")
    finally:
        client.close()
    return None if raw is None else json.loads(raw)


def prometheus_config(tmp_path: Path, interval: str = "1s") -> Path:
    """A copy of prometheus/ as `membench stack up` makes it, scraping every `interval`."""
    copy = stack.prepare_prometheus_dir(tmp_path)
    config = copy / "prometheus.yml"
    text = config.read_text()
    for old, new in (
        ("scrape_interval: 5s", f"scrape_interval: {interval}"),
        ("scrape_timeout: 4s", f"scrape_timeout: {interval}"),
        ("refresh_interval: 5s", "refresh_interval: 1s"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text)
    return copy


def start_service(
    argv: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None
) -> Any:
    """Spawn a server (in its own group, tied to our life) and wait until `ready_url` says 200."""
    proc = spawn(argv, env=env, log_path=log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{argv[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 60, what=ready_url)
    except BaseException:
        stop(proc)
        raise
    return proc


def start_prometheus(binary: str, config: Path, data: Path, port: int, log: Path) -> Any:
    """Prometheus on 127.0.0.1:`port` with the tsdb in `data`, once it reports ready."""
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={data}"]
    argv += [f"--web.listen-address=127.0.0.1:{port}"]
    return start_service(argv, f"http://127.0.0.1:{port}/-/ready", log)


def prometheus_query(port: int, promql: str) -> list[dict[str, Any]]:
    """An instant query's result vector ([] while Prometheus cannot answer)."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError):
        return []
    return body["data"]["result"] if body.get("status") == "success" else []


def read_valid_results(path: Path) -> dict[str, Any]:
    """A results.json membench wrote, checked against the shipped JSON Schema with jsonschema
    and read back by membench's own reader: its JSON values."""
    import jsonschema

    from membench.results.document import SCHEMA_FILE, read_results

    document = json.loads(path.read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(document)
    read_results(path)
    return document
