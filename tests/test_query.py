"""`membench report`: the figures it reads back from Prometheus are the figures the runs
themselves reported (a real `membench run` scraped by a real Prometheus, and the local stack fed
by the loadgen); its pure parts (ranges, query results -> rows) unit by unit."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import membench, prometheus_config, prometheus_query, require_binary, start_prometheus
from test_stack import running_stack  # noqa: F401 - the stack fixture, started for this module

from membench.cli.main import main
from membench.exporter import names
from membench.processes import free_port, stop, wait_for
from membench.query import promql
from membench.query.rows import approaches, outcome_counts, runs_from_gauges
from membench.query.timerange import (
    RangeError,
    Window,
    parse_time,
    resolve_range,
)
from membench.run.report import seed_table
from membench.workers.scenarios import SCENARIOS, SEED_SCENARIOS

MAY_1 = 1714564800.0  # 2024-05-01T12:00:00Z


# --- times, ranges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        *[("1714564800", MAY_1), ("1714564800.5", MAY_1 + 0.5), ("2024-05-01T12:00:00Z", MAY_1)],
        *[("2024-05-01T14:00:00+02:00", MAY_1), ("2024-05-01T12:00:00.250Z", MAY_1 + 0.25)],
    ],
)
def test_times_are_rfc3339_or_unix_seconds(text: str, unix: float) -> None:
    assert parse_time(text) == unix


@pytest.mark.parametrize("text", ["2024-05-01T12:00:00", "2024-05-01", "yesterday", "nan", "-5"])
def test_times_without_an_offset_or_not_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_a_range_is_whole_seconds_ending_at_end_or_now() -> None:
    assert resolve_range(None, None, None, now=MAY_1) == Window(MAY_1, 3600)
    assert resolve_range("30m", None, "2024-05-01T12:00:00Z", now=0) == Window(MAY_1, 1800)
    window = resolve_range(None, str(MAY_1 - 90.2), None, now=MAY_1)
    assert (window.seconds, window.end) == (91, MAY_1)  # rounded up: no sample at start is lost
    window = resolve_range(None, "2024-05-01T11:00:00Z", "2024-05-01T12:00:00Z", now=0)
    assert window == Window(MAY_1, 3600) and window.start == MAY_1 - 3600
    assert (window.promql_range, window.at) == ("3600s", "1714564800.000")


@pytest.mark.parametrize(
    ("last", "start", "end", "flag"),
    [
        ("1h", "0", None, "--last"),
        ("1x", None, None, "--last"),
        (None, "2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z", "--start"),
        (None, "soon", None, "--start"),
        (None, None, "2024-05-01", "--end"),
    ],
)
def test_bad_ranges_name_their_flag(
    last: str | None, start: str | None, end: str | None, flag: str
) -> None:
    with pytest.raises(RangeError) as caught:
        resolve_range(last, start, end, now=MAY_1)
    assert caught.value.flag == flag and str(caught.value).startswith(flag)


# --- query results -> rows -----------------------------------------------------------------


def series(metric: str, scenario: str, values: list[tuple[float, float]], **labels: str) -> Any:
    """A series as Prometheus's API returns it (range vector: "values"; instant: "value")."""
    labels = {"__name__": metric, "scenario": scenario, "instance": "h:1", "role": "child"} | labels
    if len(values) == 1 and labels.pop("instant", None):
        return {"metric": labels, "value": [values[0][0], str(values[0][1])]}
    return {"metric": labels, "values": [[t, str(v)] for t, v in values]}


DURATION, PEAK = names.TASK_LAST_DURATION_SECONDS, names.TASK_PEAK_RSS_BYTES
START = 1000.0


def test_runs_are_told_apart_by_changes_of_the_duration_gauge() -> None:
    durations = [
        # Set before the window: its stretch starts in the lookback, so it is no run of ours.
        series(DURATION, "prefork_threads", [(990, 0.5), (995, 0.5), (1000, 0.7), (1005, 0.7)]),
        # A prefork parent runs nothing: its gauge stays 0.
        series(DURATION, "prefork_threads", [(990, 0), (1005, 0)], role="main"),
        # A replaced child (same port, so the same series) starts over from 0.
        series(DURATION, "gevent_threads", [(1001, 0.2), (1002, 0), (1003, 0.3)], instance="g:2"),
    ]
    peaks = [
        # The first scrape of the 0.7 s run caught the task between its two gauge writes.
        series(PEAK, "prefork_threads", [(990, 9), (995, 9), (1000, 9), (1005, 11)]),
        series(PEAK, "prefork_threads", [(990, 0), (1005, 0)], role="main"),
        series(PEAK, "gevent_threads", [(1001, 5), (1002, 0), (1003, 6)], instance="g:2"),
    ]
    runs = runs_from_gauges(durations, peaks, START)
    assert [(r.seen_at, r.duration_s, r.task_peak_rss_bytes) for r in runs["prefork_threads"]] == [
        (1000, 0.7, 11)
    ]
    assert [(r.duration_s, r.task_peak_rss_bytes, r.instance) for r in runs["gevent_threads"]] == [
        (0.2, 5, "g:2"),
        (0.3, 6, "g:2"),
    ]


def test_outcomes_are_the_counter_steps_inside_the_window() -> None:
    runs = names.TASK_RUNS_TOTAL
    counters = [
        # 4 runs before the window (lookback), then 2 in it, a restart (reset), 3 more.
        series(runs, "gevent_threads", [(990, 4), (1000, 5), (1005, 6), (1010, 1), (1015, 3)])
        | {"metric": {"scenario": "gevent_threads", "outcome": "success"}},
        # A process born inside the window counts from 0.
        series(runs, "gevent_threads", [(1003, 1), (1008, 2)])
        | {"metric": {"scenario": "gevent_threads", "outcome": "failure"}},
        series(runs, "gevent_threads", [(990, 0), (1010, 0)])
        | {"metric": {"scenario": "gevent_threads", "outcome": "lost"}},
    ]
    assert outcome_counts(counters, START) == {"gevent_threads": {"success": 5, "failure": 2}}


def test_rows_carry_the_seed_labels_and_sort_by_peak_memory() -> None:
    def vector(values: dict[str, float]) -> list[Any]:
        return [series("x", s, [(2000, v)], instant="1") for s, v in values.items()]

    results = {
        "durations": [
            series(DURATION, "gevent_greenlets", [(1001, 0.4), (1006, 0.6)]),
            series(DURATION, "prefork_sequential", [(1001, 1.5)]),
        ],
        "task_peaks": [
            series(PEAK, "gevent_greenlets", [(1001, 80 << 20), (1006, 90 << 20)]),
            series(PEAK, "prefork_sequential", [(1001, 60 << 20)]),
        ],
        "runs": [
            series(
                names.TASK_RUNS_TOTAL,
                "prefork_sequential",
                [(990, 0), (1001, 2)],
                outcome="success",
            )
        ],
        "peak_rss": vector({"gevent_greenlets": 100 << 20, "prefork_sequential": 120 << 20}),
        "peak_pss": vector({"gevent_greenlets": 90 << 20}),
        "p50": vector({"gevent_greenlets": float("nan")}),
        "p90": vector({"gevent_greenlets": 0.45}),
    }
    rows = approaches(results, START)
    assert [a.label for a in rows] == ["gevent (gevent pool)", "prefork (sequential)"]
    gevent, prefork = rows
    assert gevent.execution_time_s == 0.5 and gevent.task_peaks["max"] == 90 << 20
    assert gevent.quantiles_s == {"p50": None, "p90": 0.45} and gevent.peak_pss_bytes == 90 << 20
    # Prometheus saw one of prefork's two runs: the second ended before the next scrape.
    assert (prefork.total_runs, len(prefork.runs), prefork.peak_pss_bytes) == (2, 1, None)


def test_every_query_names_the_rules_and_carries_its_time() -> None:
    window = Window(MAY_1, 600)
    match = promql.selector(["prefork_threads", "gevent_threads"])
    assert match == '{scenario=~"prefork_threads|gevent_threads"}'
    queries = promql.instant_queries(match, window)
    assert queries["peak_rss"] == (
        f"max_over_time({names.RULE_TREE_RSS_SUM}{match}[600s] @ 1714564800.000)"
    )
    # The per-task series of the benchmark's own task only, not the runner's helper tasks.
    task = '{scenario=~"prefork_threads|gevent_threads", task="membench.process_batch"}'
    assert promql.benchmark_task(match) == task
    assert queries["durations"] == f"{DURATION}{task}[900s] @ 1714564800.000"
    assert all("@ 1714564800.000" in q and (match in q or task in q) for q in queries.values())
    assert promql.selector(None) == "" and promql.timeline_step(Window(0, 86400)) == 87


def test_the_report_prints_the_seed_table_as_membench_run_does() -> None:
    from membench.cli.report import format_report
    from membench.query.report import Report

    rows = approaches(
        {
            "durations": [series(DURATION, "gevent_threads", [(1001, 0.43)])],
            "task_peaks": [series(PEAK, "gevent_threads", [(1001, 85 << 20)])],
            "runs": [],
            **{k: [] for k in ("peak_rss", "peak_pss", "p50", "p90")},
        },
        START,
    )
    text = format_report(Report("http://p", Window(2000, 1000), None, rows))
    assert text.splitlines()[:7] == seed_table([("gevent (multithreading)", None, 0.43)])
    assert "gevent (multithreading)" in text.splitlines()[5] and "0.43" in text.splitlines()[5]


class NotPrometheus(BaseHTTPRequestHandler):
    """Answers every GET with an HTML 404, as a web server that is no Prometheus would; keeps
    the Authorization header each request carried."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>not found</html>")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_prometheus() -> Iterator[str]:
    """A real HTTP server that is no Prometheus, on a free loopback port."""
    NotPrometheus.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_url_that_is_no_prometheus_is_one_line_exit_2(
    not_prometheus: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    url = f"http://reader:s%40cret@{not_prometheus}/prefix/"
    assert main(["report", "--prometheus", url, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("membench report: error: --prometheus:"), err
    assert "cret" not in err[0] and "HTTP 404" in err[0] and "/prefix/api/v1/query" in err[0]
    # The URL's credentials went as HTTP basic auth, the password unquoted.
    assert NotPrometheus.seen == ["Basic " + base64.b64encode(b"reader:s@cret").decode()]
    assert not out.exists()


# --- against a real Prometheus ------------------------------------------------------------

RUN_SCENARIOS = ("prefork_threads", "gevent_greenlets")


@pytest.mark.serial(
    reason="bounds Celery's own time around each run (its result stored) at 0.1 s: on a busy "
    "machine that wait for a core is longer"
)
@pytest.mark.slow
def test_the_report_equals_what_the_runs_reported(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    copy = prometheus_config(tmp_path, interval="250ms")
    config = copy / "prometheus.yml"
    # Rules evaluated as often as the scrape, so the tree sum keeps every scrape's value.
    config.write_text(
        config.read_text().replace("evaluation_interval: 5s", "evaluation_interval: 250ms")
    )
    port = free_port()
    proc = start_prometheus(binary, config, tmp_path / "data", port, tmp_path / "prometheus.log")
    try:
        run_out, report_out = tmp_path / "run", tmp_path / "report"
        result = membench(
            "run",
            *("--subtasks", "2", "--size", "4", "--time", "0.3", "--workers", "2", "--runs", "3"),
            *("--scenarios", ",".join(RUN_SCENARIOS)),
            *("--targets-dir", str(copy / "targets"), "--output", str(run_out)),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        url = f"http://127.0.0.1:{port}"
        report = membench(
            *("report", "--prometheus", url, "--last", "10m", "--output", str(report_out)),
            "--show-queries",
        )
        assert report.returncode == 0, report.stderr[-3000:]
        document = json.loads((report_out / "report.json").read_text())
        ran = json.loads((run_out / "results.json").read_text())
        got = {s["scenario"]: s for s in document["scenarios"]}
        assert set(got) == set(RUN_SCENARIOS)
        for scenario in ran["scenarios"]:
            name, runs = scenario["scenario"], scenario["runs"]
            row = got[name]
            assert row["approach"] == SCENARIOS[name].label and row["approach"] in report.stdout
            # The report reads the instrument's figures, Celery's window of each run (prerun to
            # postrun: the task's own wall, then its result stored); results.json the task's own.
            for key, overhead in (("task_peak_rss_bytes", 1 << 20), ("duration_s", 0.1)):
                reported = sorted(r[key] for r in row["runs"])
                own = sorted(r[key] for r in runs)
                assert len(reported) == len(own), (name, key, row["runs"], runs)
                gaps = [a - b for a, b in zip(reported, own, strict=True)]
                assert all(0 <= gap <= overhead for gap in gaps), (name, key, gaps)
            median = scenario["summary"]["duration_s"]["median"]
            assert 0 <= row["execution_time_s"] - median <= 0.1
            assert row["runs_by_outcome"] == {"success": 3} and row["runs_seen"] == 3
            # Peak Memory is the highest tree sum Prometheus sampled (every 250 ms), not the
            # runner's 50 ms-sampled peak.
            at = parse_time(document["range"]["end"])
            rule = f'{names.RULE_TREE_RSS_SUM}{{scenario="{name}"}}'
            sampled = prometheus_query(port, f"{rule}[10m] @ {at:.3f}")
            assert row["peak_rss_bytes"] == max(float(v) for s in sampled for _, v in s["values"])
            assert (report_out / row["plot"]).stat().st_size > 10_000
        # --show-queries printed every query the report ran, each ready to paste.
        shown = report.stderr.splitlines()
        assert [q for q in document["queries"] if q["query"] not in shown] == [], report.stderr
        for query in document["queries"]:
            if query["api"] == "query":
                assert prometheus_query(port, query["query"]) or "histogram" in query["query"]
        # A range before any run: one line, exit 1.
        empty = membench(
            *("report", "--prometheus", url, "--start", "0", "--end", "600"),
            *("--output", str(tmp_path / "e")),
        )
        assert empty.returncode == 1 and len(empty.stderr.strip().splitlines()) == 1
        assert "no runs" in empty.stderr and empty.stdout == ""
    finally:
        stop(proc)


@pytest.mark.slow
def test_the_stack_fed_by_the_loadgen_reports_all_four_approaches(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    prometheus = request.getfixturevalue("running_stack")["prometheus_url"]
    ran = f'sum by (scenario) ({names.TASK_RUNS_TOTAL}{{outcome="success"}}) > 0'
    port = int(prometheus.rsplit(":", 1)[1])
    wait_for(
        lambda: len(prometheus_query(port, ran)) == len(SEED_SCENARIOS),
        timeout=90,
        interval=1,
        what="a run of every scenario in Prometheus",
    )
    result = membench(
        "report", "--prometheus", prometheus, "--last", "10m", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    for name in SEED_SCENARIOS:
        assert SCENARIOS[name].label in result.stdout
        assert (tmp_path / f"memory_{name}.png").exists()
