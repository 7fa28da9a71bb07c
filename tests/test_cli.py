"""The `membench` command line as a user meets it: --version, every option's environment
variable and range in --help, no abbreviations, the broker from CELERY_BROKER_URL; `membench
run` and `membench worker`: flags, output files, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from helpers import membench, run_config
from test_bad_input import GOOD_SCHEDULE
from test_redaction import (
    RUN_SMALL,
    Protected,
    _celery_workers,
    _environment,
    protected,  # noqa: F401 - the fixture, used by name
    watch,
)

from membench import settings
from membench.cli.main import group
from membench.results.model import ProgressEvent, RunTick
from membench.run.records import ScenarioResult
from membench.run.runner import Runner
from membench.urls import redact
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

SMALL = ["--subtasks", "4", "--size", "2", "--time", "0.05", "--workers", "2", "--runs", "1"]
COMMANDS = sorted(group.commands.items())


def options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def test_version_is_the_installed_distributions() -> None:
    for flag in ("--version", "-V"):
        result = membench(flag, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"membench {version('celery-membench')}\n"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_reads_a_variable_shown_in_help(name: str, command: click.Command) -> None:
    """MEMBENCH_<COMMAND>_<FLAG>, or the contract variable settings names for it."""
    contract = {v for k, v in vars(settings).items() if k.isupper() and isinstance(v, str)}
    seen: set[str] = set()
    for option in options(command):
        names = [option.envvar] if isinstance(option.envvar, str) else list(option.envvar)
        flag = max((o for o in option.opts if o.startswith("--")), key=len)
        own = f"MEMBENCH_{name}_{flag[2:]}".upper().replace("-", "_")
        assert names == [own] or set(names) <= contract, (flag, names)
        assert option.show_envvar, flag
        assert not seen & set(names), names
        seen |= set(names)
    help_text = " ".join(membench(name, "--help", timeout=60).stdout.split())
    for variable in seen:
        assert variable in help_text, variable


def test_numbers_show_their_range_in_help() -> None:
    """Every int or float option is a click range, which --help prints."""
    for name, command in COMMANDS:
        for option in options(command):
            if isinstance(option.type, (click.types.IntParamType, click.types.FloatParamType)):
                assert isinstance(option.type, click.types._NumberRangeBase), (name, option.opts)
    help_text = " ".join(membench("run", "--help", timeout=60).stdout.split())
    assert "1<=x<=1000000" in help_text and "MB (2^20 bytes)" in help_text


def test_a_flag_beats_its_variable_and_the_variable_beats_the_default(tmp_path: Path) -> None:
    env = dict(os.environ, MEMBENCH_COMPARE_THRESHOLD="-5")
    result = membench("compare", "a.json", "b.json", env=env, timeout=60)
    assert result.returncode == 2 and "MEMBENCH_COMPARE_THRESHOLD: -5.0" in result.stderr
    given = membench("compare", "--threshold", "5", "none.json", "b.json", env=env, timeout=60)
    assert "THRESHOLD" not in given.stderr and "none.json" in given.stderr, given.stderr


# Bad input from the command line's own rules: (id, argv, environment, what the line names).
REFUSED: list[tuple[str, list[str], dict[str, str], str]] = [
    # Options never match by abbreviation, commands neither.
    ("run abbreviated option", ["run", "--sub", "4"], {}, "No such option '--sub'"),
    ("abbreviated command", ["ru"], {}, "No such command 'ru'"),
    # A bad value from an option's variable: the line names the variable.
    (
        "stack duration from its variable",
        ["stack", "up", "--dir", "{tmp}/st"],
        {"MEMBENCH_STACK_DURATION": "-1"},
        "error: MEMBENCH_STACK_DURATION: must be a number of seconds >= 0",
    ),
    (
        "run subtasks from its variable",
        ["run"],
        {"MEMBENCH_RUN_SUBTASKS": "0"},
        "error: MEMBENCH_RUN_SUBTASKS: 0 is not in the range",
    ),
    (
        "loadgen metrics host from its variable",
        ["loadgen", "--schedule", "{tmp}/s.toml"],
        {"MEMBENCH_LOADGEN_METRICS_HOST": "999.1.1.1"},
        "error: MEMBENCH_LOADGEN_METRICS_HOST: cannot listen on '999.1.1.1'",
    ),
    (
        "run broker from CELERY_BROKER_URL",
        ["run"],
        {"CELERY_BROKER_URL": "garbage"},
        "error: CELERY_BROKER_URL: the URL is not a redis:// or rediss:// URL",
    ),
]


@pytest.mark.parametrize(
    ("args", "variables", "named"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_in_one_line_naming_the_flag_or_its_variable(
    args: list[str], variables: dict[str, str], named: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in settings.BROKER_URL_VARIABLES}
    schedule = tmp_path / "s.toml"
    schedule.write_text(GOOD_SCHEDULE)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "run":
        args += ["--output", str(tmp_path / "out")]
    result = membench(*args, env=env | variables, timeout=60)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    (line,) = result.stderr.splitlines()
    assert named in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"], "nothing written"


@pytest.mark.parametrize(
    ("variables", "wanted"),
    [
        ({"CELERY_BROKER_URL": "redis://celery:1/0"}, "redis://celery:1/0"),
        (
            {"CELERY_BROKER_URL": "redis://celery:1/0", "MEMBENCH_BROKER_URL": "redis://m:2/0"},
            "redis://m:2/0",
        ),
    ],
)
def test_celery_uses_the_broker_membench_chose_in_every_process(
    variables: dict[str, str], wanted: str
) -> None:
    """Celery takes $CELERY_BROKER_URL over an app's broker_url; membench's app and client
    connect where membench's order (MEMBENCH_BROKER_URL, then CELERY_BROKER_URL) says."""
    code = (
        "from membench.broker import client_app; from membench.workers.app import app; "
        "print(app.connection_for_read().as_uri(True)); "
        "print(client_app('redis://given:3/0').connection_for_write().as_uri(True))"
    )
    env = {k: v for k, v in os.environ.items() if k not in settings.BROKER_URL_VARIABLES}
    read = subprocess.run(
        [sys.executable, "-c", code], env=env | variables, capture_output=True, text=True
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == [wanted, "redis://given:3/0"]


@pytest.mark.slow
def test_run_with_only_celery_broker_url_uses_it_and_leaks_it_nowhere(
    protected: Protected,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = protected.url(":{pw}@")
    output = tmp_path / "out"
    env = _environment(**{settings.CELERY_BROKER_URL: url})
    seen = watch([*RUN_SMALL, "--output", str(output)], tmp_path, env)

    assert seen.returncode == 0, seen.output
    assert "embedded redis-server" not in seen.output
    assert _celery_workers(seen), seen.argv  # the worker was seen: its argv was checked
    seen.assert_no(protected.password, output)
    document = json.loads((output / "results.json").read_text())
    assert document["parameters"]["broker"] == redact(url) and "***" in redact(url)


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_killed_child_fails_that_run_and_the_next_scenario_still_runs(redis_url: str) -> None:
    config = run_config(["prefork_sequential", "gevent_greenlets"], subtasks=4, workers=2)
    killed: list[int] = []
    runner: Runner

    def kill_child_once(event: ProgressEvent) -> None:
        if isinstance(event, RunTick) and not killed and runner.worker is not None:
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
