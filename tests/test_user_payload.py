"""`--payload MODULE:FUNCTION`: the spec's syntax, its resolution (started directory, PYTHONPATH),
its fingerprint, schedules, and real runs of user code under every scenario."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from membench.loadgen.schedule import ScheduleError, parse_schedule
from membench.workers.params import InvalidParameter, validate_payload
from membench.workers.user_payload import (
    PayloadError,
    module_sha256,
    resolve,
    started_dir_environment,
)

# Records each call (pid, index, whether gevent patched time.sleep), then holds like the seed.
USER_MODULE = """
import os, sys, time
from pathlib import Path

def work(index, size_mb, hold_s):
    data = bytearray(os.urandom(int(size_mb * 1024 * 1024)))
    gevent = sys.modules.get("gevent.monkey")
    patched = bool(gevent and gevent.is_module_patched("time"))
    with open(Path(__file__).with_name("calls.txt"), "a") as calls:
        calls.write(f"{os.getpid()} {index} {size_mb} {hold_s} {patched}\\n")
    time.sleep(hold_s)
    return len(data)

LIMIT = 3
"""


@pytest.mark.parametrize("spec", ["mod:work", "pkg.sub.mod:run_it", "_m:_f", "bytes", "numpy"])
def test_specs_and_builtin_names_are_accepted(spec: str) -> None:
    assert validate_payload(spec) == spec


REFUSED = ["mod", "mod:", ":work", "mod:work:x", "1mod:work", "mod:class", "a b:c", "mod.:f"]


@pytest.mark.parametrize("spec", [*REFUSED, "m:f()", "x" * 200 + ":f", None, 3])
def test_other_strings_are_refused(spec: object) -> None:
    with pytest.raises(InvalidParameter) as info:
        validate_payload(spec)
    assert info.value.field == "payload"


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh module in a fresh directory, the test's working directory."""
    name = f"userpay_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolve() adds the started directory
    return name


def test_a_spec_resolves_from_the_started_directory(user_module: str, tmp_path: Path) -> None:
    work = resolve(f"{user_module}:work")
    assert work(0, 0.001, 0.0) == 1048
    expected = hashlib.sha256((tmp_path / f"{user_module}.py").read_bytes()).hexdigest()
    assert module_sha256(f"{user_module}:work") == expected


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("membench_no_such_module:work", "does not import"),
        ("{module}:missing", "no attribute 'missing'"),
        ("{module}:LIMIT", r"is not callable \(int\)"),
        ("{module}:Path", "defined in pathlib"),
        ("os:system", "standard library"),
    ],
)
def test_a_spec_that_does_not_resolve_says_why(user_module: str, spec: str, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        resolve(spec.format(module=user_module))


def test_workers_learn_the_started_directory_by_name_and_never_search_it_first() -> None:
    assert started_dir_environment({}, "/started") == {
        "MEMBENCH_STARTED_DIR": "/started",
        "PYTHONSAFEPATH": "1",
    }
    # A worker started by a worker-starting membench keeps the first one's directory.
    inherited = {"MEMBENCH_STARTED_DIR": "/first", "PYTHONPATH": "/a"}
    assert started_dir_environment(inherited, "/second")["MEMBENCH_STARTED_DIR"] == "/first"


def test_the_started_directory_is_searched_after_the_standard_library(
    user_module: str, tmp_path: Path
) -> None:
    resolve(f"{user_module}:work")
    assert sys.path[-1] == str(tmp_path)
    assert sys.path.index(str(tmp_path)) > sys.path.index(sysconfig.get_paths()["stdlib"])


def test_schedules_accept_a_spec_and_validate_it_at_load(user_module: str) -> None:
    table = {"subtasks": 2, "size_mb": 1.0, "hold_s": 0.1, "workers": 2, "period_s": 5}
    document = {"defaults": table, "scenarios": {"gevent_threads": {}}}
    document["defaults"]["payload"] = f"{user_module}:work"
    (plan,) = parse_schedule(document).plans
    assert plan.params.payload == f"{user_module}:work"
    document["defaults"]["payload"] = f"{user_module}:missing"
    with pytest.raises(ScheduleError, match=r"payload \(from \[defaults\]\).*no attribute"):
        parse_schedule(document)


def run_console_script(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The installed `membench` script, not `python -m`: its sys.path[0] is bin/, not cwd."""
    script = Path(sys.executable).with_name("membench")
    return subprocess.run(
        [str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


SMALL = ["--subtasks", "4", "--size", "1", "--time", "0.05", "--workers", "2", "--runs", "1"]


@pytest.mark.slow
def test_user_code_runs_under_every_scenario(tmp_path: Path) -> None:
    (tmp_path / "mywork.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMBENCH_BROKER_URL")}
    result = run_console_script(
        "run", "--payload", "mywork:work", *SMALL, "--scenarios", "all", "--output", "out",
        cwd=tmp_path,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "its floor is unknown" in result.stdout
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["parameters"]["payload"] == "mywork:work"
    sha = hashlib.sha256((tmp_path / "mywork.py").read_bytes()).hexdigest()
    assert document["parameters"]["payload_sha256"] == sha
    for scenario in document["scenarios"]:
        (run,) = scenario["runs"]
        assert run["status"] == "ok", run["reason"]
        assert run["subtasks_done"] == 4
        assert run["floor_bytes"] is None and run["excess_rss_bytes"] is None
        assert run["digest"] is None  # the function's return value is dropped
        assert run["payload_import_rss_bytes"] is not None  # imported before the baseline
        assert scenario["summary"]["floor_bytes"] is None
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    # Each worker imported the module once for the baseline (no call) then ran 4 subtasks.
    assert len(calls) == 6 * 4
    assert sorted({int(c.split()[1]) for c in calls}) == [0, 1, 2, 3]
    # Both gevent scenarios ran it monkey-patched: time.sleep yields to the other greenlets.
    assert sum(c.endswith("True") for c in calls) == 2 * 4


@pytest.mark.slow
def test_user_code_imports_from_pythonpath(tmp_path: Path) -> None:
    library, elsewhere = tmp_path / "lib", tmp_path / "elsewhere"
    library.mkdir()
    elsewhere.mkdir()
    (library / "libwork.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "MEMBENCH_BROKER_URL"}
    env["PYTHONPATH"] = str(library)
    result = run_console_script(
        "run", "--payload", "libwork:work", *SMALL, "--scenarios", "prefork_threads",
        "--output", str(tmp_path / "out"),
        cwd=elsewhere,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len((library / "calls.txt").read_text().splitlines()) == 4


# Standard-library names a user's directory may well hold; each raises if it is ever imported.
SHADOWS = ("random", "json", "socket")


@pytest.mark.slow
def test_a_started_directory_that_shadows_the_standard_library_breaks_nothing(
    tmp_path: Path,
) -> None:
    for name in SHADOWS:
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py')\n")
    (tmp_path / "mywork.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMBENCH_BROKER_URL")}
    small = [*SMALL, "--scenarios", "prefork_sequential,gevent_greenlets"]
    # The default payload and the user's own, from that very directory.
    for payload in ([], ["--payload", "mywork:work"]):
        result = run_console_script(
            "run", *payload, *small, "--output", "out", cwd=tmp_path, env=env
        )
        assert result.returncode == 0, result.stderr[-3000:]
        document = json.loads((tmp_path / "out" / "results.json").read_text())
        assert [r["status"] for s in document["scenarios"] for r in s["runs"]] == ["ok", "ok"]
        assert "own random.py" not in result.stderr + result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("exit_call", ["sys.exit(3)", "raise KeyboardInterrupt"])
def test_a_subtask_that_exits_is_reported_at_once_not_after_the_deadline(
    tmp_path: Path, exit_call: str
) -> None:
    (tmp_path / "exiter.py").write_text(
        f"import sys\n\ndef work(i, size, hold):\n    {exit_call}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMBENCH_BROKER_URL")}
    result = run_console_script(
        "run", "--payload", "exiter:work", *SMALL, "--output", "out",
        "--scenarios", "gevent_threads,prefork_sequential", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    for scenario in document["scenarios"]:
        (run,) = scenario["runs"]
        # The task's own report, not the runner's 60 s deadline or a lost worker.
        assert run["status"] == "failed", run
        assert "instead of returning" in run["reason"] and "subtask" in run["reason"], run
