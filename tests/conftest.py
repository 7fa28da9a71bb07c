"""Shared fixtures: a real redis-server, real Celery workers that are always stopped, and a check
that no test leaves a process behind."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import parallel
import psutil
import pytest

from membench.broker import EmbeddedRedis
from membench.run.worker import WorkerProcess
from membench.workers.scenarios import SCENARIOS


def pytest_configure(config: pytest.Config) -> None:
    parallel.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    parallel.unconfigure(config)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    return parallel.auto_workers()


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return parallel.serial_last_scheduler(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    parallel.write_plan(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    with parallel.in_hall(item):
        return (yield)


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every process a test starts must be gone when the session ends."""
    yield
    me = psutil.Process()
    leftovers = [p for p in me.children(recursive=True) if p.is_running()]
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    described = [(p.pid, " ".join(p.cmdline())) for p in alive]
    for process in alive:
        process.kill()  # fail loudly, but do not leak them into the next job either
    assert not alive, f"processes left behind: {described}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as redis_server:
        yield redis_server.url


@pytest.fixture(scope="session")
def celery_app(redis_url: str) -> Any:
    from membench.workers.app import app

    app.conf.broker_url = redis_url
    app.conf.result_backend = redis_url
    return app


@pytest.fixture
def start_worker(
    redis_url: str, celery_app: Any, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start a real `membench worker` for a scenario and wait until it is ready."""
    started: list[WorkerProcess] = []

    def start(scenario: str, concurrency: int = 1, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(
            SCENARIOS[scenario],
            concurrency,
            redis_url,
            tmp_path,
            secrets.token_hex(4),
            extra_env=extra_env,
        )
        started.append(worker)
        worker.start()
        worker.wait_ready(celery_app)
        return worker

    yield start
    for worker in started:
        worker.stop()
        assert worker.proc is not None
        assert not psutil.pid_exists(worker.proc.pid) or worker.proc.poll() is not None
