"""Bad input across the CLI, schedule files and task parameters: one line naming what is wrong,
exit code 2, nothing started, no file written."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import membench

from membench.settings import BROKER_URL_VARIABLES as BROKER_VARIABLES

GOOD_SCHEDULE = """
[defaults]
subtasks = 2
size_mb = 1.0
hold_s = 0.1
workers = 2
period_s = 5
[scenarios.gevent_threads]
"""


def schedule_case(case_id: str, schedule: str, named: str) -> tuple[Any, ...]:
    """`membench loadgen` given a schedule file with this text."""
    return (case_id, ["loadgen", "--schedule", "{tmp}/s.toml"], {"s.toml": schedule}, {}, named)


def report_case(case_id: str, args: list[str], named: str = "") -> tuple[Any, ...]:
    """`membench report` at a Prometheus nobody answers; the one line names `named` or the
    first flag given."""
    argv = ["report", "--prometheus", "http://127.0.0.1:1", *args]
    return (case_id, argv, {}, {}, named or args[0])


# (id, argv, files to create, environment, what the one line must name)
CASES: list[tuple[str, list[str], dict[str, str], dict[str, str], str]] = [
    ("run subtasks zero", ["run", "--subtasks", "0"], {}, {}, "--subtasks"),
    ("run subtasks text", ["run", "--subtasks", "x"], {}, {}, "--subtasks"),
    ("run subtasks huge", ["run", "--subtasks", "100000000"], {}, {}, "--subtasks"),
    ("run size negative", ["run", "--size", "-1"], {}, {}, "--size"),
    ("run size nan", ["run", "--size", "nan"], {}, {}, "--size"),
    ("run size huge", ["run", "--size", "1e12"], {}, {}, "--size"),
    ("run size builds nothing", ["run", "--size", "1e-9"], {}, {}, "--size: must build at least"),
    ("run time negative", ["run", "--time", "-0.5"], {}, {}, "--time"),
    ("run time text", ["run", "--time", "soon"], {}, {}, "--time"),
    ("run time inf", ["run", "--time", "inf"], {}, {}, "--time"),
    ("run workers zero", ["run", "--workers", "0"], {}, {}, "--workers"),
    ("run concurrency zero", ["run", "--concurrency", "0"], {}, {}, "--concurrency"),
    ("run sizing zero", ["run", "--sizing", "0"], {}, {}, "--sizing"),
    ("run sizing text", ["run", "--sizing", "four"], {}, {}, "--sizing"),
    ("run runs zero", ["run", "--runs", "0"], {}, {}, "--runs"),
    ("run warmup negative", ["run", "--warmup", "-1"], {}, {}, "--warmup"),
    ("run unknown scenario", ["run", "--scenarios", "prefork_threads,nope"], {}, {}, "--scenarios"),
    ("run unknown payload", ["run", "--payload", "pickle"], {}, {}, "--payload"),
    ("run broker unreachable", ["run", "--broker", "redis://127.0.0.1:1/0"], {}, {}, "--broker"),
    ("run broker not redis", ["run", "--broker", "amqp://127.0.0.1//"], {}, {}, "--broker"),
    # A password given as ?password= (kombu fails on it after a worker started), a mistyped
    # scheme, a URL that does not parse: refused in one line, the password masked.
    (
        "run broker query password",
        ["run", "--broker", "redis://127.0.0.1:1/0?password=S3cretPW"],
        {},
        {},
        "--broker",
    ),
    (
        "run broker mistyped scheme",
        ["run", "--broker=reddis://:S3cretPW@127.0.0.1:6379/0"],
        {},
        {},
        "--broker",
    ),
    ("run broker unparsable", ["run", "--broker", "redis://:S3cretPW@[::1/0"], {}, {}, "--broker"),
    (
        "worker broker query password",
        ["worker", "gevent_greenlets", "--broker", "redis://127.0.0.1:1/0?password=S3cretPW"],
        {},
        {},
        "--broker",
    ),
    (
        "loadgen broker query password",
        ["loadgen", "--schedule", "{tmp}/s.toml", "--broker=redis://127.0.0.1:1/0?password=pw"],
        {"s.toml": GOOD_SCHEDULE},
        {},
        "--broker",
    ),
    (
        "run over memory",
        ["run", "--size", "60000", "--workers", "8", "--subtasks", "8"],
        {},
        {},
        "--size",
    ),
    ("run output unwritable", ["run", "--output", "{tmp}/file/sub"], {"file": ""}, {}, "--output"),
    # Not a directory: said so, not mkdir's "File exists".
    *[
        (f"run {flag} {what}", ["run", flag, path], files, {}, named)
        for flag in ("--output", "--targets-dir")
        for what, path, files, named in (
            ("a device", "/dev/full", {}, f"{flag}: /dev/full is a character device, not a"),
            ("a file", "{tmp}/file", {"file": ""}, "/file is a regular file, not a directory"),
            ("under a file", "{tmp}/file/sub", {"file": ""}, "/file is a regular file, not a"),
        )
    ],
    # Empty, infinite, or valid-looking but unusable: refused up front, not worked around.
    ("run output empty", ["run", "--output", ""], {}, {}, "--output: must not be empty"),
    ("run output blank", ["run", "--output", "  "], {}, {}, "--output: must not be empty"),
    ("worker queue empty", ["worker", "gevent_greenlets", "--queue", ""], {}, {}, "--queue"),
    (
        "worker hostname empty",
        ["worker", "gevent_greenlets", "--hostname", ""],
        {},
        {},
        "--hostname",
    ),
    ("stack duration inf", ["stack", "up", "--duration", "inf"], {}, {}, "--duration: must be"),
    ("stack duration nan", ["stack", "up", "--duration", "nan"], {}, {}, "--duration: must be"),
    ("compare threshold nan", ["compare", "--threshold", "nan", "a", "b"], {}, {}, "finite"),
    ("run time minus inf", ["run", "--time", "-inf"], {}, {}, "--time"),
    ("run broker db text", ["run", "--broker", "redis://127.0.0.1:1/zero"], {}, {}, "database"),
    (
        "worker broker db path",
        ["worker", "gevent_greenlets", "--broker", "redis://h:1/0/1"],
        {},
        {},
        "database",
    ),
    ("run unknown malloc", ["run", "--malloc", "tcmalloc"], {}, {}, "--malloc"),
    ("run recycle zero", ["run", "--max-tasks-per-child", "0"], {}, {}, "--max-tasks-per-child"),
    (
        "run recycle without prefork",
        ["run", "--max-memory-per-child", "1000", "--scenarios", "gevent_threads"],
        {},
        {},
        "--max-memory-per-child",
    ),
    ("run matrix unknown axis", ["run", "--matrix", "pool=gevent"], {}, {}, "--matrix"),
    ("run matrix no values", ["run", "--matrix", "malloc="], {}, {}, "--matrix"),
    ("run matrix repeated", ["run", "--matrix", "malloc=glibc,glibc"], {}, {}, "--matrix"),
    ("run matrix not a number", ["run", "--matrix", "workers=4,many"], {}, {}, "--matrix"),
    ("run matrix bad malloc", ["run", "--matrix", "malloc=glibc,tcmalloc"], {}, {}, "--malloc"),
    ("run matrix bad payload", ["run", "--matrix", "payload=bytes,xml"], {}, {}, "--payload"),
    ("run matrix bad workers", ["run", "--matrix", "workers=4,0"], {}, {}, "--workers"),
    (
        "run targets dir unwritable",
        ["run", "--targets-dir", "{tmp}/file/sub"],
        {"file": ""},
        {},
        "--targets-dir",
    ),
    (
        "run broker from the environment",
        ["run"],
        {},
        {"MEMBENCH_BROKER_URL": "garbage"},
        "error: MEMBENCH_BROKER_URL: the URL is not a redis:// or rediss:// URL",
    ),
    (
        "worker metrics host not an address",
        ["worker", "gevent_threads", "--metrics-host", "999.1.1.1", "--metrics-port", "9999"],
        {},
        {},
        "--metrics-host: cannot listen on '999.1.1.1'",
    ),
    (
        "worker port past the children's",
        ["worker", "prefork_threads", "--concurrency", "2", "--metrics-port", "65535"],
        {},
        {},
        "between 0 and 65533 (prefork children use the next 2), got 65535",
    ),
    (
        "worker unknown loglevel",
        ["worker", "gevent_threads", "--loglevel", "BOGUS"],
        {},
        {},
        "--loglevel",
    ),
    (
        "worker broker form unchecked broker",
        ["worker", "gevent_threads", "--no-check-broker", "--broker", "redis://h:1/0?password=x"],
        {},
        {},
        "--broker: give the password in the URL's userinfo",
    ),
    (
        "run rediss without ssl_cert_reqs",
        ["run", "--broker", "rediss://127.0.0.1:1/0"],
        {},
        {},
        "--broker: a rediss:// URL needs ?ssl_cert_reqs",
    ),
    ("worker unknown malloc", ["worker", "gevent_threads", "--malloc", "x"], {}, {}, "--malloc"),
    (
        "worker recycle on gevent",
        ["worker", "gevent_threads", "--max-tasks-per-child", "5"],
        {},
        {},
        "--max-tasks-per-child",
    ),
    ("worker unknown scenario", ["worker", "nope"], {}, {}, "SCENARIO"),
    (
        "worker concurrency zero",
        ["worker", "gevent_threads", "--concurrency", "0"],
        {},
        {},
        "--concurrency",
    ),
    (
        "worker port range",
        ["worker", "gevent_threads", "--metrics-port", "70000"],
        {},
        {},
        "--metrics-port",
    ),
    (
        "worker port in use",
        ["worker", "gevent_threads", "--metrics-port", "{busy}"],
        {},
        {},
        "in use",
    ),
    (
        "worker targets dir is a file",
        ["worker", "gevent_threads"],
        {"targets": ""},
        {"MEMBENCH_TARGETS_DIR": "{tmp}/targets"},
        "MEMBENCH_TARGETS_DIR",
    ),
    (
        "loadgen missing schedule",
        ["loadgen", "--schedule", "{tmp}/none.toml"],
        {},
        {},
        "--schedule",
    ),
    schedule_case("loadgen malformed toml", "[defaults\nx=", "s.toml"),
    schedule_case("loadgen unknown scenario", GOOD_SCHEDULE + "[scenarios.nope]\n", "nope"),
    schedule_case(
        "loadgen period nan", GOOD_SCHEDULE.replace("period_s = 5", "period_s = nan"), "period_s"
    ),
    schedule_case(
        "loadgen period under the floor",
        GOOD_SCHEDULE.replace("period_s = 5", "period_s = 1e-9"),
        "period_s (from [defaults]): must be >= 1 s",
    ),
    (
        "loadgen scenarios empty",
        ["loadgen", "--schedule", "{tmp}/s.toml", "--scenarios", ","],
        {"s.toml": GOOD_SCHEDULE},
        {},
        "--scenarios",
    ),
    schedule_case("loadgen jitter over period", GOOD_SCHEDULE + "jitter_s = 9\n", "jitter_s"),
    schedule_case(
        "task param: size negative",
        GOOD_SCHEDULE.replace("size_mb = 1.0", "size_mb = -1.0"),
        "size_mb",
    ),
    schedule_case(
        "task param: subtasks zero",
        GOOD_SCHEDULE.replace("subtasks = 2", "subtasks = 0"),
        "subtasks",
    ),
    schedule_case("task param: unknown payload", GOOD_SCHEDULE + 'payload = "pickle"\n', "payload"),
    schedule_case("task param: unknown key", GOOD_SCHEDULE + "evil = 1\n", "evil"),
    (
        "stack missing schedule",
        ["stack", "up", "--dir", "{tmp}/st", "--schedule", "{tmp}/no"],
        {},
        {},
        "--schedule",
    ),
    (
        "stack unknown scenario",
        ["stack", "up", "--dir", "{tmp}/st", "--scenarios", "nope"],
        {},
        {},
        "--scenarios",
    ),
    (
        "stack duration negative",
        ["stack", "up", "--dir", "{tmp}/st", "--duration", "-1"],
        {},
        {},
        "--duration",
    ),
    # `membench report`: flags are checked before Prometheus is asked (port 1: nobody answers).
    ("report no prometheus", ["report", "--last", "1h"], {}, {}, "--prometheus"),
    ("report url not http", ["report", "--prometheus", "ftp://127.0.0.1/"], {}, {}, "--prometheus"),
    ("report url no host", ["report", "--prometheus", "http://"], {}, {}, "--prometheus"),
    (
        "report url with a query",
        ["report", "--prometheus", "http://h/?q=1"],
        {},
        {},
        "--prometheus",
    ),
    report_case("report prometheus unreachable", ["--output", "{tmp}/out"], "--prometheus"),
    report_case("report last not a duration", ["--last", "5x"]),
    report_case("report last zero", ["--last", "0s"]),
    report_case("report last with start", ["--last", "1h", "--start", "0"]),
    report_case("report start not a time", ["--start", "soon"]),
    report_case("report start without offset", ["--start", "2024-05-01T12:00:00"]),
    report_case("report start after end", ["--start", "2000", "--end", "1000"]),
    report_case("report end not a time", ["--end", "x"]),
    report_case("report unknown scenario", ["--scenarios", "nope"]),
    # --payload MODULE:FUNCTION, resolved in the CLI process (modules in {tmp}, found through
    # PYTHONPATH; no bytecode written, so the directory stays as it was).
    ("run payload not a spec", ["run", "--payload", "mod:"], {}, {}, "--payload"),
    ("run payload no module", ["run", "--payload", "membench_nosuchmod:work"], {}, {}, "--payload"),
    ("run payload stdlib", ["run", "--payload", "os:system"], {}, {}, "--payload"),
    *[
        (
            f"run payload {what}",
            ["run", "--payload", f"{module}:work"],
            {f"{module}.py": source},
            {"PYTHONPATH": "{tmp}", "PYTHONDONTWRITEBYTECODE": "1"},
            "--payload",
        )
        for what, module, source in (
            ("no such function", "userpay_attr", "def other(): pass\n"),
            ("not callable", "userpay_const", "work = 42\n"),
            ("import raises", "userpay_raises", "raise RuntimeError('boom')\n"),
            ("import exits", "userpay_exits", "import sys\nsys.exit(3)\n"),
        )
    ],
    (
        "run matrix user payload",
        ["run", "--matrix", "payload=bytes,membench_nosuchmod:work"],
        {},
        {},
        "--payload",
    ),
    schedule_case(
        "task param: user payload", GOOD_SCHEDULE + 'payload = "membench_nosuchmod:w"\n', "payload"
    ),
]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_the_table_covers_cli_schedule_and_task_parameters() -> None:
    assert len(CASES) >= 20
    kinds = {case_id.split()[0] for case_id, *_ in CASES}
    assert {"run", "worker", "loadgen", "stack", "task"} <= kinds


@pytest.mark.parametrize(
    ("argv", "files", "env", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_exit_2_and_starts_nothing(
    argv: list[str],
    files: dict[str, str],
    env: dict[str, str],
    named: str,
    tmp_path: Path,
    busy_port: int,
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    before_files = sorted(os.listdir(tmp_path))
    before_children = len(psutil.Process().children(recursive=True))

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{busy}", str(busy_port))

    args = [fill(a) for a in argv]
    if args[0] == "run" and "--output" not in args:
        args += ["--output", str(tmp_path / "out")]
    environment = {k: v for k, v in os.environ.items() if k not in BROKER_VARIABLES}
    environment |= {k: fill(v) for k, v in env.items()}
    result = membench(*args, env=environment, timeout=60)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0], lines[0]
    assert result.stdout == ""
    assert len(psutil.Process().children(recursive=True)) == before_children
    # Nothing written, not even half a file.
    assert sorted(os.listdir(tmp_path)) == before_files
