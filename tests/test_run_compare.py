"""membench/run/compare.py on small hand-made documents: verdicts, and refusing bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from membench.results.document import BadResults, read_results, results_from
from membench.results.model import SCHEMA_VERSION, Results, Summary
from membench.results.model import Figure as SummaryFigure
from membench.run.compare import (
    IMPROVEMENT,
    REGRESSION,
    Change,
    Figure,
    compare_documents,
    differing_keys,
    format_comparison,
    verdict_line,
    warnings_for,
)
from membench.units import MIB as MB

THRESHOLD = 10.0


def figure(median: float, low: float, high: float, n: int = 3) -> dict[str, float]:
    return {"median": median, "min": low, "max": high, "stdev": 0.0, "n": n}


def entry(
    name: str,
    peak_mb: tuple[float, float, float] | None = (100.0, 98.0, 102.0),
    duration: tuple[float, float, float] | None = (1.0, 0.98, 1.02),
    approach: str | None = None,
) -> dict[str, Any]:
    """One scenario's entry: (median, min, max) of peak memory in MB and of duration in s."""
    summary: dict[str, Any] = {
        "peak_rss_bytes": None if peak_mb is None else figure(*(v * MB for v in peak_mb)),
        "duration_s": None if duration is None else figure(*duration),
    }
    return {
        "scenario": name,
        "approach": approach or f"{name} 8x5.0MB",
        "pool": name.split("_")[0],
        "strategy": name.split("_")[1],
        "summary": summary,
        "runs": [],
    }


PARAMETERS: dict[str, Any] = {
    "subtasks": 8,
    "size_mb": 5.0,
    "time_s": 1.5,
    "workers": 4,
    "concurrency": 1,
    "runs": 3,
    "warmup": 0,
    "payload": "bytes",
    "payload_sha256": None,
    "scenarios": [],
    "reuse_worker": False,
    "malloc": "glibc",
    "max_tasks_per_child": None,
    "max_memory_per_child_kib": None,
    "malloc_trim": False,
    "inherited_allocator_environment": {},
    "sample_interval_s": 0.05,
    "broker": "embedded",
}
MACHINE: dict[str, Any] = {
    "cores": 2,
    "memory_bytes": 24 << 30,
    "kernel": "6.18",
    "machine": "x86_64",
    "libc": "glibc 2.36",
    "python": "3.11.7",
    "celery": "5.7.0",
    "gevent": None,
    "billiard": None,
    "redis_py": None,
    "celery_membench": "0.1.0",
}


def document(*entries: Any, **extra: Any) -> dict[str, Any]:
    """A complete results.json of the seed's scenarios; `extra` replaces top-level fields
    (parameters and machine: the fields given, over the defaults)."""
    parameters = PARAMETERS | extra.pop("parameters", {})
    machine = MACHINE | extra.pop("machine", {})
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": "benchmark",
        "complete": True,
        "command": ["membench", "run"],
        "started_at": "2026-12-05T00:00:00+00:00",
        "finished_at": "2026-12-05T00:01:00+00:00",
        "parameters": parameters,
        "machine": machine,
        "scenarios": list(entries),
        "sizing": {
            "concurrency": 1,
            "basis": "pss",
            "threshold_margin_percent": 10,
            "approaches": [],
        },
        **extra,
    }


def typed(raw: dict[str, Any]) -> Results:
    return results_from(raw)


def verdicts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, str]:
    """Verdict by figure label of the first (only) scenario both ran."""
    comparisons, _, _ = compare_documents(typed(a), typed(b), THRESHOLD)
    return {change.label: change.verdict for change in comparisons[0].changes}


PEAK, TIME = "Peak Memory (MB)", "Execution Time (s)"


# ---- verdicts --------------------------------------------------------------------------------


def test_a_significant_fall_is_an_improvement() -> None:
    a = document(entry("gevent_threads"))
    b = document(entry("gevent_threads", peak_mb=(80.0, 79.0, 81.0), duration=(0.5, 0.5, 0.5)))
    assert verdicts(a, b) == {PEAK: IMPROVEMENT, TIME: IMPROVEMENT}
    (comparison,), _, _ = compare_documents(typed(a), typed(b), THRESHOLD)
    peak = comparison.changes[0]
    assert peak.delta == pytest.approx(-20.0)
    assert peak.percent == pytest.approx(-20.0)


def test_a_significant_rise_beyond_the_threshold_is_a_regression() -> None:
    a = document(entry("gevent_threads"))
    b = document(entry("gevent_threads", peak_mb=(130.0, 128.0, 132.0)))
    assert verdicts(a, b) == {PEAK: REGRESSION, TIME: "within A's spread"}
    line = verdict_line(compare_documents(typed(a), typed(b), THRESHOLD)[0], THRESHOLD)
    assert "1 significant regression(s) beyond 10%" in line
    assert "gevent_threads peak memory +30.0%" in line


def test_a_change_within_a_s_spread_is_noise_whatever_its_size() -> None:
    # A's runs spread 50..150: B's 140 is +40% but inside the noise A itself showed.
    a = document(entry("gevent_threads", peak_mb=(100.0, 50.0, 150.0)))
    b = document(entry("gevent_threads", peak_mb=(140.0, 139.0, 141.0)))
    assert verdicts(a, b)[PEAK] == "within A's spread"


def test_the_spread_bounds_are_inclusive() -> None:
    a = document(entry("gevent_threads"))
    b = document(entry("gevent_threads", peak_mb=(102.0, 102.0, 102.0)))
    assert verdicts(a, b)[PEAK] == "within A's spread"


def test_outside_the_spread_but_within_the_threshold_is_not_significant() -> None:
    a = document(entry("gevent_threads"))
    b = document(entry("gevent_threads", peak_mb=(105.0, 104.0, 106.0)))
    assert verdicts(a, b)[PEAK] == "<= 10%"


def test_exactly_the_threshold_is_not_significant() -> None:
    # 1.0 -> 1.1 s in floating point is 10.000000000000009%: rounded, it is 10%.
    a = document(entry("gevent_threads", duration=(1.0, 1.0, 1.0)))
    b = document(entry("gevent_threads", duration=(1.1, 1.1, 1.1)))
    assert verdicts(a, b)[TIME] == "<= 10%"
    c = document(entry("gevent_threads", duration=(1.1001, 1.1001, 1.1001)))
    assert verdicts(a, c)[TIME] == REGRESSION


def test_the_threshold_is_the_callers() -> None:
    a = document(entry("gevent_threads"))
    b = document(entry("gevent_threads", peak_mb=(130.0, 130.0, 130.0)))
    comparisons, _, _ = compare_documents(typed(a), typed(b), 50.0)
    assert comparisons[0].changes[0].verdict == "<= 50%"


def test_a_side_without_a_figure_has_no_verdict() -> None:
    a = document(entry("gevent_threads", peak_mb=None))
    b = document(entry("gevent_threads", peak_mb=(500.0, 500.0, 500.0)))
    assert verdicts(a, b)[PEAK] == "no data"
    assert verdicts(b, a)[PEAK] == "no data"
    (comparison,), _, _ = compare_documents(typed(a), typed(b), THRESHOLD)
    assert comparison.changes[0].delta is None and comparison.changes[0].percent is None


def test_a_zero_baseline_gives_an_infinite_percentage() -> None:
    zero = Figure(0.0, 0.0, 0.0, 3)
    assert Change("x", zero, Figure(1.0, 1.0, 1.0, 3), THRESHOLD).percent == math.inf
    assert Change("x", zero, Figure(-1.0, -1.0, -1.0, 3), THRESHOLD).percent == -math.inf
    assert Change("x", zero, zero, THRESHOLD).percent == 0.0
    assert Change("x", zero, Figure(1.0, 1.0, 1.0, 3), THRESHOLD).verdict == REGRESSION


def test_figures_are_converted_to_display_units() -> None:
    summary = Summary(peak_rss_bytes=SummaryFigure(3 * MB, 2 * MB, 4 * MB, 0.0, 5))
    assert Figure.from_summary(summary, "peak_rss_bytes", MB) == Figure(3.0, 2.0, 4.0, 5)
    assert Figure.from_summary(summary, "duration_s", 1.0) is None


def test_scenarios_only_one_side_ran_are_listed_not_compared() -> None:
    a = document(entry("prefork_threads"), entry("gevent_threads"), entry("solo_threads"))
    b = document(entry("threads_threads"), entry("gevent_threads"), entry("prefork_threads"))
    comparisons, only_a, only_b = compare_documents(typed(a), typed(b), THRESHOLD)
    assert [c.scenario for c in comparisons] == ["prefork_threads", "gevent_threads"]  # A's order
    assert only_a == ["solo_threads"]
    assert only_b == ["threads_threads"]


def test_a_label_that_differs_between_sides_falls_back_to_the_scenario_name() -> None:
    a = document(entry("gevent_threads", approach="gevent (multithreading) 8x5.0MB"))
    b = document(entry("gevent_threads", approach="gevent (multithreading) 8x10.0MB"))
    same = document(entry("gevent_threads", approach="gevent (multithreading) 8x5.0MB"))
    assert compare_documents(typed(a), typed(b), THRESHOLD)[0][0].approach == "gevent_threads"
    assert (
        compare_documents(typed(a), typed(same), THRESHOLD)[0][0].approach
        == "gevent (multithreading) 8x5.0MB"
    )


def test_no_regression_line() -> None:
    a = document(entry("gevent_threads"))
    comparisons, _, _ = compare_documents(typed(a), typed(a), THRESHOLD)
    assert verdict_line(comparisons, THRESHOLD) == "\nNo significant regression beyond 10%."


def test_the_table_shows_each_figure_with_its_verdict() -> None:
    a = document(entry("gevent_threads", duration=(1.0, 1.0, 1.0)))
    b = document(entry("gevent_threads", peak_mb=(130.0, 128.0, 132.0), duration=(1.0, 1.0, 1.0)))
    comparisons, _, _ = compare_documents(typed(a), typed(b), THRESHOLD)
    text = format_comparison(comparisons, Path("a.json"), Path("b.json"), THRESHOLD)
    assert "A: a.json  ->  B: b.json" in text
    (peak_row,) = [line for line in text.splitlines() if line.startswith("  Peak Memory")]
    figures = ["100.00", "->", "130.00", "+30.00", "+30.0%", "98.00-102.00", "128.00-132.00"]
    assert peak_row.split()[3:] == [*figures, REGRESSION]
    (time_row,) = [line for line in text.splitlines() if line.startswith("  Execution Time")]
    assert "1.000 ->" in time_row and time_row.endswith("within A's spread")
    assert "A has only" not in text  # three runs each


def test_the_table_warns_when_a_has_too_few_runs() -> None:
    one_run = entry("gevent_threads")
    one_run["summary"]["peak_rss_bytes"]["n"] = 1
    a = document(one_run)
    comparisons, _, _ = compare_documents(typed(a), typed(a), THRESHOLD)
    assert "A has only 1 run(s)" in format_comparison(comparisons, Path("a"), Path("b"), THRESHOLD)


def test_differing_keys_name_each_value_that_differs() -> None:
    assert differing_keys({"warmup": 0}, {"warmup": 0}) == []
    assert differing_keys({"warmup": 1}, {}) == ["warmup 1 -> null"]
    assert differing_keys({"size_mb": 5.0}, {"size_mb": 10.0}) == ["size_mb 5.0 -> 10.0"]
    assert differing_keys({"scenarios": ["a"]}, {"scenarios": ["b"]}) == []


def test_warnings_name_what_makes_the_sides_less_comparable() -> None:
    a = document(entry("gevent_threads"), parameters={"size_mb": 5.0}, machine={"cores": 2})
    failed = entry("gevent_threads")
    failed["runs"] = [
        {"scenario": "gevent_threads", "run": 1},
        {"scenario": "gevent_threads", "run": 2, "status": "failed"},
        {"scenario": "gevent_threads", "run": 1, "warmup": True},
    ]
    b = document(failed, parameters={"size_mb": 5.0}, machine={"cores": 8}, complete=False)
    out = warnings_for(Path("a.json"), typed(a), Path("b.json"), typed(b), ["x"], [])
    assert out[0] == "the runs were on different machines or versions: cores 2 -> 8"
    assert "b.json: incomplete (the run was interrupted)" in out
    assert "b.json: gevent_threads: 1 of 2 measured run(s) failed" in out[2]
    assert out[-1] == "only in A (a.json), not compared: x"
    assert not any("different parameters" in line for line in out)


# ---- read_results: refusing what is not a results.json ----------------------------------------


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_good_document_is_returned_typed(tmp_path: Path) -> None:
    good = document(entry("gevent_threads"), entry("solo_threads", peak_mb=None))
    read = read_results(write(tmp_path / "r.json", good))
    assert read == typed(good)
    assert read.scenarios[1].summary.peak_rss_bytes is None


def refused(path: Path) -> str:
    with pytest.raises(BadResults) as caught:
        read_results(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_a_missing_file(tmp_path: Path) -> None:
    assert refused(tmp_path / "nope.json").endswith(": no such file")


def test_a_directory(tmp_path: Path) -> None:
    assert "is a directory" in refused(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_bytes(b'{"schema_version": "\xff"}')
    assert "Invalid UTF-8" in refused(path)


@pytest.mark.parametrize("text", ["{not json", "", '{"schema_version": 1,}'])
def test_not_json_names_where(tmp_path: Path, text: str) -> None:
    message = refused(write(tmp_path / "r.json", text))
    assert "not valid JSON (" in message and ("byte" in message or "truncated" in message)


@pytest.mark.parametrize("content", [[1, 2], "null", {"scenarios": []}])
def test_no_schema_version(tmp_path: Path, content: Any) -> None:
    assert "no schema_version" in refused(write(tmp_path / "r.json", content))


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None, True])
def test_a_wrong_schema_version(tmp_path: Path, version: Any) -> None:
    message = refused(write(tmp_path / "r.json", {"schema_version": version, "scenarios": []}))
    assert f"schema_version {version!r}, this membench reads {SCHEMA_VERSION}" in message


def test_an_older_format_is_one_line_that_says_what_changed(tmp_path: Path) -> None:
    old = document(entry("gevent_threads")) | {"schema_version": 1}
    del old["mode"]
    message = refused(write(tmp_path / "r.json", old))
    assert message == (
        f"{tmp_path / 'r.json'}: schema_version 1, this membench reads {SCHEMA_VERSION} "
        '(version 2 added the top-level "mode" and typed every field): rerun `membench run` '
        "to measure anew"
    )


def _without(key: str) -> dict[str, Any]:
    scenario = entry("gevent_threads")
    del scenario[key]
    return document(scenario)


def _figure(value: Any) -> dict[str, Any]:
    scenario = entry("gevent_threads")
    scenario["summary"]["duration_s"] = value
    return document(scenario)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"schema_version": SCHEMA_VERSION}, "missing required field `mode`"),
        (document() | {"mode": "other"}, "Invalid value 'other' - at `$.mode`"),
        (document() | {"scenarios": {}}, "Expected `array`, got `object` - at `$.scenarios`"),
        (document() | {"parameters": []}, "Expected `object`, got `array` - at `$.parameters`"),
        (document() | {"machine": "x"}, "Expected `object`, got `str` - at `$.machine`"),
        (document("gevent_threads"), "Expected `object`, got `str` - at `$.scenarios[0]`"),
        (_without("scenario"), "missing required field `scenario` - at `$.scenarios[0]`"),
        (
            document(entry("gevent_threads"), entry("gevent_threads")),
            "scenarios[1]: scenario 'gevent_threads' appears twice",
        ),
        (_without("approach"), "missing required field `approach` - at `$.scenarios[0]`"),
        (_without("summary"), "missing required field `summary` - at `$.scenarios[0]`"),
        (document(entry("gevent_threads") | {"runs": {}}), "at `$.scenarios[0].runs`"),
        (_figure({"median": 1.0}), "missing required field `min` - at `$.scenarios[0].summary"),
        (_figure(figure(True, 1.0, 1.0)), "got `bool` - at `$.scenarios[0].summary.duration_s"),
        (_figure(figure("1", 1.0, 1.0)), "got `str` - at `$.scenarios[0].summary.duration_s"),
        (_figure(1.0), "got `float` - at `$.scenarios[0].summary.duration_s`"),
    ],
    ids=[
        "no-mode",
        "unknown-mode",
        "scenarios-object",
        "parameters",
        "machine",
        "entry-not-object",
        "no-name",
        "duplicate",
        "no-approach",
        "no-summary",
        "runs",
        "figure-incomplete",
        "figure-bool",
        "figure-string",
        "figure-number",
    ],
)
def test_missing_or_wrong_fields_are_named(
    tmp_path: Path, content: dict[str, Any], expected: str
) -> None:
    assert expected in refused(write(tmp_path / "r.json", content))
