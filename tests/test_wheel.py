"""Installed from a wheel (not editable) into a fresh venv, `membench stack up` runs from an empty
directory: Prometheus loads our rules from the package data, and every process stops."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import REPO, fresh_venv, require_binary, shared_wheel

from membench.exporter import names
from membench.processes import pid_alive, wait_for

pytestmark = pytest.mark.slow


def _rule_names(prometheus_url: str) -> set[str]:
    try:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/rules", timeout=5) as reply:
            groups = json.loads(reply.read())["data"]["groups"]
    except (OSError, ValueError, KeyError):
        return set()
    return {rule["name"] for group in groups for rule in group["rules"]}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel; its dependencies come from this venv's site-packages
    as a plain path, so the editable install of membench is not visible in it."""
    where = tmp_path_factory.mktemp("wheel")
    wheel = shared_wheel(tmp_path_factory)
    venv = where / "venv"
    # Without its own pip (ensurepip costs seconds of CPU): this venv's pip installs into it.
    python, site = fresh_venv(venv, "--without-pip")
    (site / "membench-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python)),
            *("install", "-q", "--no-deps", "--no-index", str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    return venv


def test_the_wheel_holds_the_package_data(installed: Path, tmp_path: Path) -> None:
    python = installed / "bin" / "python"
    probe = (
        "import membench, membench.prometheus as p, membench.grafana as g, pathlib;"
        "print(membench.__file__);"
        "print(sorted(x.name for x in (p.CONFIG_DIR / 'rules').glob('*.yml')));"
        "print(len(list((pathlib.Path(g.__file__).parent / 'dashboards').glob('*.json'))))"
    )
    # Not from the checkout: `python -c` puts the working directory first on sys.path.
    out = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    location, rules, dashboards = out.stdout.splitlines()
    assert str(REPO) not in location and "site-packages" in location
    assert rules == str(["membench-celery.alerts.yml", "membench.alerts.yml", "membench.rules.yml"])
    assert int(dashboards) >= 2


def test_stack_up_from_an_empty_directory_runs_prometheus_with_our_rules(
    installed: Path, tmp_path: Path
) -> None:
    require_binary("prometheus")
    empty = tmp_path / "empty"
    empty.mkdir()
    state_file = empty / ".membench" / "stack" / "stack.json"
    log = open(tmp_path / "stack.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            installed / "bin" / "membench",
            "stack",
            "up",
            "--duration",
            "300",
            "--scenarios",
            "gevent_greenlets",
        ],
        cwd=empty,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        wait_for(lambda: state_file.exists() or proc.poll() is not None, 120, what="stack up")
        assert proc.poll() is None, (tmp_path / "stack.log").read_text()
        state: dict[str, Any] = json.loads(state_file.read_text())
        pids = [proc.pid] + [service["pid"] for service in state["services"].values()]
        pids += [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert state["prometheus_url"], "no Prometheus in the stack"
        loaded = wait_for(
            lambda: _rule_names(state["prometheus_url"]) or None, 60, what="rules loaded"
        )
        assert set(names.RECORDING_RULES) <= loaded
        proc.terminate()  # what --duration's end does, without waiting for it
        assert proc.wait(timeout=90) == 0, (tmp_path / "stack.log").read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=90)
        log.close()
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 30, what="every process gone")
    assert not state_file.exists()
