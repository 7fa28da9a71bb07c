"""`membench soak` over the local stack, with real processes: a worker whose task leaks a known
amount per run fails the verdict with its growth within 20% of the known rate while its clean
neighbour passes; `--prometheus` over that stack's own Prometheus (restarted on its TSDB, so it
holds what it scraped from the same workers) reaches the same verdict; a soak too short to call
is inconclusive; an interrupted one writes what it measured and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import require_binary, start_prometheus

from membench.processes import free_port, stop, wait_for

pytestmark = pytest.mark.slow
LEAK_MB = 1.0  # what each run of the leaking scenario keeps
PERIOD_S = 2.0  # one run every 2 s, no jitter: a known rate
KNOWN_MB_PER_HOUR = LEAK_MB * 3600 / PERIOD_S  # 1800 MB/h
PAYLOAD = '''"""A user payload for the soak tests: `leak` keeps what it builds, `clean` drops it."""

_kept = []


def leak(index, size_mb, hold_s):
    _kept.append(b"\\x01" * int(size_mb * 1024 * 1024))  # every page written: all resident


def clean(index, size_mb, hold_s):
    return len(b"\\x01" * int(size_mb * 1024 * 1024))
'''
SCHEDULE = f"""
[defaults]
subtasks = 1
size_mb = {LEAK_MB}
hold_s = 0.0
workers = 1
period_s = {PERIOD_S}
jitter_s = 0.0
deadline_s = 20.0

[scenarios.prefork_sequential]
payload = "soakpayload:leak"

[scenarios.prefork_threads]
payload = "soakpayload:clean"
"""


def soak(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    argv = [sys.executable, "-m", "membench", "soak", *args]
    return subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in document["analysis"]["processes"]}


@pytest.mark.long
def test_a_leaking_worker_fails_within_20_percent_and_prometheus_mode_agrees(
    tmp_path: Path,
) -> None:
    prometheus = require_binary("prometheus")
    (tmp_path / "soakpayload.py").write_text(PAYLOAD)
    (tmp_path / "leak.toml").write_text(SCHEDULE)
    output = tmp_path / "out"
    done = soak(
        tmp_path,
        *("--schedule", "leak.toml", "--duration", "100s", "--warmup", "20s"),
        *("--interval", "20s", "--max-growth", "100", "--output", str(output)),
    )
    assert done.returncode == 1, done.stderr + done.stdout
    document = json.loads((output / "soak.json").read_text())
    assert document["complete"] and document["verdict"]["status"] == "fail"
    processes = by_name(document)
    child = processes["scenario=prefork_sequential pool=prefork role=child child=0"]["growth"]
    assert child["status"] == "fail"
    assert child["mb_per_hour"] == pytest.approx(KNOWN_MB_PER_HOUR, rel=0.2)
    assert child["low_mb_per_hour"] <= child["mb_per_hour"] <= child["high_mb_per_hour"]
    clean = [p for name, p in processes.items() if name.startswith("scenario=prefork_threads")]
    assert len(clean) == 2 and all(p["growth"]["status"] == "pass" for p in clean), clean
    for scenario, account in document["local"]["accounting"].items():
        log = account["log"]
        counted = log["success"] + log["failure"] + log["timeout"] + log["skipped"]
        assert account["firings"] == counted and account["log_matches_loadgen"], scenario
        assert not account["runs_without_outcome"]
    assert not document["local"]["stop"]["pids_still_alive"]
    assert (output / "soak.png").stat().st_size > 10_000
    assert "SOAK VERDICT: FAIL" in done.stdout and "ACCOUNTING" in done.stdout

    # The same workers, read back from the Prometheus that scraped them.
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 5s}\n")
    port = free_port()
    data = output / "stack" / "prometheus-data"
    proc = start_prometheus(prometheus, config, data, port, tmp_path / "prometheus.log")
    try:
        analysis = document["analysis"]
        window = ("--start", f"{analysis['start']:.3f}", "--end", f"{analysis['end']:.3f}")
        remote = soak(
            tmp_path,
            *("--prometheus", f"http://127.0.0.1:{port}", *window),
            *("--warmup", "20s", "--max-growth", "100", "--output", str(tmp_path / "remote")),
        )
    finally:
        stop(proc)
    assert remote.returncode == 1, remote.stderr + remote.stdout
    again = json.loads((tmp_path / "remote" / "soak.json").read_text())
    assert again["mode"] == "prometheus" and again["verdict"]["status"] == "fail"
    for name, process in by_name(again).items():
        local = processes[name]["growth"]
        assert process["growth"]["status"] == local["status"], name
        assert process["growth"]["mb_per_hour"] == pytest.approx(local["mb_per_hour"], rel=1e-3)


@pytest.mark.long
def test_a_soak_too_short_to_call_is_inconclusive_and_says_how_long_it_needs(
    tmp_path: Path,
) -> None:
    require_binary("prometheus")
    output = tmp_path / "out"
    # 15 s of samples past a 30 s warm-up: a few scrapes, each worker's noise measured.
    args = ("--duration", "45s", "--warmup", "30s", "--interval", "15s", "--output", str(output))
    done = soak(tmp_path, *args)
    assert done.returncode == 1, done.stderr + done.stdout
    document = json.loads((output / "soak.json").read_text())
    verdict = document["verdict"]
    assert verdict["status"] == "inconclusive", verdict
    assert verdict["seconds_to_resolve"] >= 10  # at least the span measured, past the warm-up
    assert "too short to call" in done.stdout and "--allow-inconclusive" in done.stdout
    assert not document["local"]["stop"]["pids_still_alive"]


@pytest.mark.long
def test_an_interrupted_soak_writes_what_it_measured_and_exits_130(tmp_path: Path) -> None:
    require_binary("prometheus")
    output = tmp_path / "out"
    argv = [sys.executable, "-m", "membench", "soak", "--duration", "10m", "--warmup", "0s"]
    argv += ["--interval", "5s", "--allow-inconclusive", "--output", str(output)]
    log = tmp_path / "soak.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:

        def progressed() -> bool:
            assert proc.poll() is None, log.read_text()
            return log.read_text().count(" runs=") >= 3

        wait_for(progressed, 120, what="three progress lines")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()
    finally:
        stop(proc)
    document = json.loads((output / "soak.json").read_text())
    assert not document["complete"] and document["error"] == "interrupted by SIGINT"
    assert document["analysis"]["processes"], "the figures of what ran"
    assert not document["local"]["stop"]["pids_still_alive"]
