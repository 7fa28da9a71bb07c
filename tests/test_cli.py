"""`membench run` and `membench worker` as a user meets them: flags, output files, failures."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from helpers import membench, run_config

from membench.run.records import ScenarioResult
from membench.run.runner import Runner
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

pytestmark = pytest.mark.slow
SMALL = ["--subtasks", "4", "--size", "2", "--time", "0.05", "--workers", "2", "--runs", "1"]


def test_run_prints_the_table_and_writes_both_files(tmp_path: Path) -> None:
    result = membench("run", *SMALL, "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Approach" in result.stdout and "Peak Memory (MB)" in result.stdout
    for name in SEED_SCENARIOS:
        assert SCENARIOS[name].approach(4, 2) in result.stdout
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["complete"] is True
    assert document["parameters"]["subtasks"] == 4
    assert {"cores", "memory_bytes", "kernel", "libc", "python", "celery", "gevent"} <= set(
        document["machine"]
    )
    for scenario in document["scenarios"]:
        (run,) = scenario["runs"]
        assert run["status"] == "ok"
        assert run["peak_rss_bytes"] >= run["baseline_rss_bytes"]
        assert run["peak_method"] == "vmhwm"
        assert len(run["timeline"]["t_s"]) == len(run["timeline"]["rss_bytes"]) > 0
        assert scenario["summary"]["peak_rss_bytes"]["median"] == run["peak_rss_bytes"]
    png = (tmp_path / "memory_comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "embedded redis-server" in result.stderr


def test_a_killed_child_fails_that_run_and_the_next_scenario_still_runs(redis_url: str) -> None:
    config = run_config(["prefork_sequential", "gevent_greenlets"], subtasks=4, workers=2)
    killed: list[int] = []
    runner: Runner

    def kill_child_once(event: str, data: dict[str, Any]) -> None:
        if event == "tick" and not killed and runner.worker is not None:
            worker = runner.worker
            children = [p for p in worker.tree() if p != worker.pid]
            if children:
                os.kill(children[0], signal.SIGKILL)
                killed.append(children[0])

    runner = Runner(config, redis_url, kill_child_once)
    results: list[ScenarioResult] = []
    runner.run(results)
    assert killed
    failed_run = results[0].runs[0]
    assert failed_run.status == "failed"
    assert "WorkerLostError" in failed_run.reason
    assert results[1].runs[0].status == "ok"
