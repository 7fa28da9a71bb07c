"""`membench compare`, `membench plot` and `membench run --warmup`, as a user meets them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import membench, read_valid_results

from membench.cli.main import main
from membench.results.document import plain
from membench.results.model import RunResult, Timeline
from membench.run.records import RunConfig, ScenarioResult
from membench.run.report import results_document
from membench.units import MIB
from membench.workers.scenarios import SCENARIOS

# (peak MB, duration s) per run; a helper turns them into a real results_document().
Runs = list[tuple[float, float]]
STEADY: Runs = [(100.0, 1.0), (101.0, 1.01), (102.0, 1.02)]


def _run(scenario: str, index: int, peak_mb: float, duration: float, **extra: Any) -> RunResult:
    t = [round(i * 0.05, 2) for i in range(-4, 25)]
    rss = [int((50 + (peak_mb - 50) * (0 <= x <= duration)) * MIB) for x in t]
    return RunResult(
        scenario=scenario,
        run=index,
        duration_s=duration,
        baseline_rss_bytes=50 * MIB,
        peak_rss_bytes=int(peak_mb * MIB),
        peak_pss_bytes=int(peak_mb * 0.9 * MIB),
        timeline=Timeline(t_s=t, rss_bytes=rss, pss_bytes=[int(v * 0.9) for v in rss]),
        **extra,
    )


def make_document(
    runs: dict[str, Runs], warmup_runs: Runs | None = None, **config: Any
) -> dict[str, Any]:
    """A results.json document as `membench run` writes it, from synthetic per-run figures."""
    settings: dict[str, Any] = {
        "subtasks": 8,
        "size_mb": 5.0,
        "hold_s": 0.2,
        "workers": 4,
        "concurrency": 1,
        "payload": "bytes",
        "runs": max(len(r) for r in runs.values()),
        "warmup": len(warmup_runs or []),
    }
    settings.update(config)
    config_obj = RunConfig(scenarios=[SCENARIOS[name] for name in runs], **settings)
    results = []
    for name, figures in runs.items():
        result = ScenarioResult(SCENARIOS[name], SCENARIOS[name].approach(8, 5.0))
        result.runs += [
            _run(name, i, p, d, warmup=True) for i, (p, d) in enumerate(warmup_runs or [], 1)
        ]
        result.runs += [_run(name, i + 1, p, d) for i, (p, d) in enumerate(figures)]
        results.append(result)
    document = results_document(
        config_obj, results, broker="embedded", command=["membench"], started_at=0, complete=True
    )
    # As JSON values, as compare reads them.
    return plain(document)


def write(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def compare(
    tmp_path: Path,
    a: dict[str, Any],
    b: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> tuple[int, str, str]:
    path_a, path_b = write(tmp_path / "a" / "results.json", a), write(tmp_path / "b.json", b)
    code = main(["compare", str(path_a), str(path_b), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _row(out: str, label: str) -> str:
    (line,) = [line for line in out.splitlines() if line.strip().startswith(label)]
    return line


def test_improvement_exits_0_and_shows_both_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_document({"gevent_greenlets": STEADY, "prefork_threads": STEADY})
    b = make_document({"gevent_greenlets": [(80.0, 1.0), (81.0, 1.01), (82.0, 1.02)]})
    code, out, err = compare(tmp_path, a, b, capsys)
    assert code == 0, out + err
    peak = _row(out, "Peak Memory (MB)")
    for text in ("101.00 ->", "81.00", "-20.00", "-19.8%", "100.00-102.00", "80.00-82.00"):
        assert text in peak, peak
    assert peak.endswith("improvement")
    assert "+0.0%" in _row(out, "Execution Time (s)")
    assert "gevent (gevent pool) 8x5.0MB" in out
    assert "Significant: B's median lies outside A's min-max AND |change| > 10%" in out
    assert "No significant regression" in out
    assert "only in A" in err and "prefork_threads" in err


def test_regression_beyond_threshold_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_document({"gevent_greenlets": STEADY})
    b = make_document({"gevent_greenlets": [(100.0, 1.5), (101.0, 1.52), (102.0, 1.55)]})
    code, out, _ = compare(tmp_path, a, b, capsys)
    assert code == 1
    assert _row(out, "Execution Time (s)").endswith("REGRESSION")
    assert _row(out, "Peak Memory (MB)").endswith("within A's spread")
    assert "1 significant regression(s) beyond 10%: gevent_greenlets execution time +" in out


def test_change_within_noise_or_threshold_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noisy = make_document({"gevent_greenlets": [(80.0, 1.0), (100.0, 1.0), (130.0, 1.0)]})
    code, out, _ = compare(tmp_path, noisy, make_document({"gevent_greenlets": STEADY}), capsys)
    assert code == 0
    assert _row(out, "Peak Memory (MB)").endswith("within A's spread")

    # +5%: outside A's spread, but within the default threshold; a 3% threshold flags it.
    a = make_document({"gevent_greenlets": STEADY})
    b = make_document({"gevent_greenlets": [(105.0, 1.0), (106.0, 1.01), (107.0, 1.02)]})
    code, out, _ = compare(tmp_path, a, b, capsys)
    assert code == 0
    assert _row(out, "Peak Memory (MB)").endswith("<= 10%")
    code, out, _ = compare(tmp_path, a, b, capsys, "--threshold", "3")
    assert code == 1
    assert _row(out, "Peak Memory (MB)").endswith("REGRESSION")


def test_different_parameters_and_machines_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_document({"gevent_greenlets": [(100.0, 1.0)]})
    b = make_document({"gevent_greenlets": [(100.0, 1.0)]}, size_mb=10.0, warmup=1)
    b["machine"]["kernel"] = "0.0-other"
    code, out, err = compare(tmp_path, a, b, capsys)
    assert code == 0
    params = [line for line in err.splitlines() if "different parameters" in line]
    assert params and "size_mb 5.0 -> 10.0" in params[0] and "warmup 0 -> 1" in params[0]
    assert "different machines" in err and '"0.0-other"' in err
    assert "A has only 1 run(s)" in out  # one run: its min-max says nothing about noise


def test_compare_through_the_console_entry_point(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", make_document({"gevent_threads": STEADY}))
    b = write(tmp_path / "b.json", make_document({"gevent_threads": [(130.0, 1.0)] * 3}))
    result = membench("compare", str(a), str(b))
    assert result.returncode == 1, result.stderr
    assert "REGRESSION" in result.stdout
    assert result.stderr == ""


def _schema(document: dict) -> dict[str, Any]:
    document["schema_version"] = 99
    return document


def _broken_summary(document: dict) -> dict[str, Any]:
    document["scenarios"][0]["summary"]["peak_rss_bytes"] = {"median": "big"}
    return document


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "no schema_version"),
        (_schema, "schema_version 99"),
        (_broken_summary, "$.scenarios[0].summary.peak_rss_bytes"),
        (lambda d: make_document({"prefork_threads": STEADY}), "no scenario in common"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ('{"schema_version": ' + "9" * 5000 + "}", "out of range"),
        (lambda d: d | {"schema_version": 1}, "schema_version 1, this membench reads 2 (version 2"),
    ],
)
def test_bad_file_is_one_line_exit_2(
    content: Any, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.json", make_document({"gevent_greenlets": STEADY}))
    bad = tmp_path / "bad.json"
    if isinstance(content, str):
        write(bad, content)
    elif content is not None:
        write(bad, content(make_document({"gevent_greenlets": STEADY})))
    assert main(["compare", str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert str(bad) in err and expected in err


def test_bad_threshold_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path / "good.json", make_document({"gevent_greenlets": STEADY}))
    assert main(["compare", str(good), str(good), "--threshold", "-1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "--threshold" in err


def test_plot_rerenders_the_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = make_document(
        {"gevent_greenlets": STEADY, "prefork_sequential": [(120.0, 2.0)]},
        warmup_runs=[(300.0, 1.0)],
    )
    source = write(tmp_path / "saved" / "results.json", document)
    assert main(["plot", str(source)]) == 0
    png = (tmp_path / "saved" / "memory_comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert main(["plot", str(source), "--output", str(tmp_path / "other.png")]) == 0
    assert (tmp_path / "other.png").read_bytes().startswith(b"\x89PNG")
    assert "other.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.json"], "no such file"),
        (["results.json", "--output", "plot.jpg"], "--output"),
        (["results.json", "--output", "nowhere/plot.png"], "--output"),
        (["no_timeline.json"], "no successful measured run"),
    ],
)
def test_plot_bad_input_is_one_line_exit_2(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "results.json", make_document({"gevent_greenlets": STEADY}))
    empty = make_document({"gevent_greenlets": STEADY})
    for run in empty["scenarios"][0]["runs"]:
        run["timeline"] = {"t_s": [], "rss_bytes": [], "pss_bytes": []}
    write(tmp_path / "no_timeline.json", empty)
    args = [str(tmp_path / a) if not a.startswith("--") else a for a in args]
    assert main(["plot", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_summary_and_table_ignore_warmup_runs() -> None:
    document = make_document({"gevent_greenlets": [(100.0, 1.0)]}, warmup_runs=[(500.0, 9.0)] * 2)
    (scenario,) = document["scenarios"]
    assert [r["warmup"] for r in scenario["runs"]] == [True, True, False]
    assert scenario["summary"]["peak_rss_bytes"]["median"] == 100 * MIB
    assert scenario["summary"]["duration_s"]["n"] == 1


def test_negative_warmup_is_one_line_exit_2(tmp_path: Path) -> None:
    result = membench("run", "--warmup", "-1", "--output", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--warmup" in result.stderr
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_run_with_warmup_records_it_and_counts_only_measured_runs(tmp_path: Path) -> None:
    result = membench(
        "run",
        "--scenarios",
        "gevent_greenlets",
        *("--subtasks", "2", "--size", "1", "--time", "0.05", "--workers", "2"),
        *("--runs", "1", "--warmup", "1", "--output", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = read_valid_results(tmp_path / "results.json")
    assert document["parameters"]["warmup"] == 1
    (scenario,) = document["scenarios"]
    assert [r["warmup"] for r in scenario["runs"]] == [True, False]
    assert all(r["status"] == "ok" for r in scenario["runs"])
    assert scenario["summary"]["peak_rss_bytes"]["n"] == 1
    assert scenario["summary"]["peak_rss_bytes"]["median"] == scenario["runs"][1]["peak_rss_bytes"]
    assert "after 1 warmup run(s) per scenario" in result.stdout
    assert "1/1 ok" in result.stdout
    assert "warmup 1/1" in result.stderr
