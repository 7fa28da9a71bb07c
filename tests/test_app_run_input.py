"""`membench run --app`: every bad input is one line naming its flag, exit 2, before any process
starts (no broker, no worker, no output directory); and the pure logic of the mode (serial
verdict, sizing, the memory estimate, the record reader)."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest
from helpers import REPO, membench

from membench.cli.main import main
from membench.results.model import AppRun, RunBegan, RunFinished, Timeline
from membench.run.app.load import Load
from membench.run.app.runner import fill_row, planned_need
from membench.run.app.sizing import container_limit_bytes, serial_verdict, size_row
from membench.run.app.worker import RecordReader
from membench.units import MIB

EXAMPLE = REPO / "examples" / "app_benchmark"


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example app beside modules that fail in each way, as the current directory."""
    shutil.copy(EXAMPLE / "tasks.py", tmp_path / "bench_tasks.py")
    (tmp_path / "bench_broken.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "bench_notapp.py").write_text("app = 42\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMBENCH_STARTED_DIR", raising=False)
    return tmp_path


BAD = [
    (["--app", "bench_broken:app", "--task", "x"], "--app: module 'bench_broken' does not import"),
    (
        ["--app", "bench_notapp:app", "--task", "x"],
        "--app: bench_notapp:app is a int, not a Celery",
    ),
    (
        ["--app", "bench_tasks:nothing", "--task", "x"],
        "--app: module 'bench_tasks' has no attribute",
    ),
    (["--app", "bench_tasks", "--task", "x"], "--app: must be MODULE:ATTRIBUTE"),
    (["--app", "os:path", "--task", "x"], "--app: os is the standard library"),
    (["--app", "bench_tasks:app"], "--task: required with --app"),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.nope"],
        "--task: 'tasks.nope' is not registered",
    ),
    (["--app", "bench_tasks:app", "--task", "tasks.hold", "--args", "[1,"], "--args: not JSON"),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.hold", "--args", "{}"],
        "--args: must be a JSON array",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.hold", "--kwargs", "[]"],
        "--kwargs: must be a JSON object",
    ),
    (["--app", "bench_tasks:app", "--task", "tasks.hold"], "--args: do not fit tasks.hold(size_mb"),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.hold", "--args", "[1, 2, 3]"],
        "--args: do not fit",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.hold", "--kwargs", '{"size": 1}'],
        "--kwargs: do not fit",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.spin", "--pools", "prefork,eventlet"],
        "--pools: unknown pool 'eventlet'",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.spin", "--concurrency", "1,x"],
        "--concurrency: not a whole number",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.spin", "--concurrency", "0,4"],
        "--concurrency: must be between 1 and 256",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.spin", "--tasks", "0"],
        "--tasks: 0 is not in the range 1<=x<=1000000",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.spin", "--task-timeout", "0"],
        "--task-timeout: 0.0 is not in the range 0<x<=86400.0",
    ),
    (
        ["--app", "bench_tasks:app", "--task", "tasks.spin", "--subtasks", "4"],
        "--subtasks: the seed benchmark's flag",
    ),
    (
        [
            "--app",
            "bench_tasks:app",
            "--task",
            "tasks.spin",
            "--pools",
            "gevent",
            "--max-memory-per-child",
            "9000",
        ],
        "--max-memory-per-child: recycles prefork children",
    ),
    (["--task", "tasks.spin"], "--task: only with --app"),
    (["--concurrency", "1,4"], "--concurrency: a list is for --app runs"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2_before_any_process(
    app_dir: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    output = app_dir / "out"
    code = main(["run", *argv, "--output", str(output)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("membench run: error: ") and message in err, err
    assert not output.exists()  # refused before the output directory was made
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


def test_the_console_command_refuses_in_one_line(app_dir: Path) -> None:
    done = membench("run", "--app", "bench_tasks:app", "--task", "tasks.nope", cwd=app_dir)
    assert done.returncode == 2
    assert done.stderr.startswith("membench run: error: --task: 'tasks.nope' is not registered")
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def _row(pool: str, concurrency: int, rate: float) -> AppRun:
    return AppRun(f"{pool}-c{concurrency}", pool, concurrency, throughput_per_s=rate)


def test_serial_verdict_in_plain_words() -> None:
    cell, sentence = serial_verdict(_row("gevent", 4, 5.2), solo_rate=5.0)
    assert cell.endswith("serial") and sentence.startswith("gevent ran this task serially")
    cell, sentence = serial_verdict(_row("threads", 4, 5.0), solo_rate=5.0)
    assert sentence.startswith("threads were serialised (GIL)")
    cell, sentence = serial_verdict(_row("gevent", 4, 19.0), solo_rate=5.0)
    assert cell.endswith("parallel") and sentence == ""
    assert serial_verdict(_row("prefork", 1, 5.0), solo_rate=5.0) == ("x1.0 of 1", "")
    assert serial_verdict(_row("solo", 1, 5.0), solo_rate=5.0)[0] == "serial rate"


def test_sizing_of_a_prefork_row() -> None:
    row = AppRun(
        "prefork-c2", "prefork", 2, peak_pss_bytes=100 * MIB, task_peak_max_rss_bytes=64 * MIB
    )
    sized = size_row(row)
    assert sized.need_bytes == 100 * MIB
    assert sized.container_limit_bytes == container_limit_bytes(100 * MIB) == 125 * MIB
    assert sized.max_memory_per_child_kib == -(-64 * 1024 * 110 // 100)  # +10%, KiB
    row.status, row.reason = "failed", "worker died"
    assert size_row(row).note == "worker died" and size_row(row).need_bytes is None


def test_planned_need_from_the_solo_row() -> None:
    solo = AppRun("solo-c1", "solo", 1, baseline_pss_bytes=50 * MIB, peak_pss_bytes=60 * MIB)
    assert planned_need(solo, "gevent", 100) == 50 * MIB + 100 * 10 * MIB
    assert planned_need(solo, "prefork", 4) == 50 * MIB + 4 * 60 * MIB
    assert planned_need(AppRun("solo-c1", "solo", 1, status="failed"), "gevent", 4) is None
    # A spike between two samples: the exact peak (VmHWM) over the baseline RSS is the rise.
    solo.baseline_rss_bytes, solo.task_peak_max_rss_bytes = 55 * MIB, 85 * MIB
    assert planned_need(solo, "gevent", 100) == 50 * MIB + 100 * 30 * MIB


def test_the_record_reader_takes_whole_lines_only(tmp_path: Path) -> None:
    reader = RecordReader(tmp_path)
    path = tmp_path / "1.jsonl"
    path.write_bytes(b'{"e": "start", "id": "a", "pid": 1, "t": 1.0}\n{"e": "end", "id"')
    assert reader.read() == [RunBegan("a", 1, 1.0)]
    with path.open("ab") as f:
        f.write(b': "a", "pid": 1, "t": 2.0, "outcome": "success"}\n')
        f.write(b'{"e": "end", "id": 3}\nnot json\n')  # the user's code could write anything
    assert reader.read() == [RunFinished("a", 1, 2.0, "success")]
    assert reader.read() == []


def test_a_row_with_failures_says_what_failed() -> None:
    load = Load(sent=3, first_sent_at=0.0)
    for outcome, error in (
        ("success", ""),
        ("failure", "ValueError: boom"),
        ("failure", "ValueError: boom"),
    ):
        load.take(RunFinished("task", 7, 1.0, outcome, error, duration_s=0.1))
    row = AppRun("gevent-c2", "gevent", 2)
    fill_row(row, load)
    assert row.status == "failed" and row.reason == "2 failure"
    assert row.errors == {"ValueError: boom": 2}
    assert row.throughput_per_s == pytest.approx(3.0)


def test_compare_and_plot_read_an_app_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from membench.results.document import write_results
    from membench.run.app.report import app_results_document
    from membench.run.app.runner import AppPlan
    from membench.run.app.spec import AppSpec

    plan = AppPlan(AppSpec("tasks:app", "tasks.hold", [1], {}, None, None), ["gevent"], [4], 8, 60)
    paths = []
    for name, peak in (("a", 80 * MIB), ("b", 120 * MIB)):
        row = AppRun("gevent-c4", "gevent", 4, baseline_rss_bytes=60 * MIB, peak_rss_bytes=peak)
        row.peak_pss_bytes, row.duration_s, row.throughput_per_s = peak, 0.5, 7.5
        row.timeline = Timeline([0.0, 0.1], [60 * MIB, peak], [1, 2])
        document = app_results_document(
            plan, [row], broker="embedded", command=["membench"], started_at=0.0, complete=True
        )
        write_results(tmp_path / f"{name}.json", document)
        paths.append(str(tmp_path / f"{name}.json"))
    assert main(["compare", *paths]) == 1  # peak +50%: a regression
    assert "gevent -c 4 tasks.hold" in capsys.readouterr().out
    assert main(["plot", paths[0], "--output", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 0
