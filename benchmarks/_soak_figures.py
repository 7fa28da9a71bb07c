"""The soak's figures from its Prometheus polls (runs, idle-baseline slope, main RSS growth) and
the table it prints; benchmarks/soak.py runs the stack and polls."""

from __future__ import annotations

import itertools
from typing import Any

from membench.stats import slope

SCENARIOS = ("prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets")
MB = 1024 * 1024
# The floor of each live process over 5 min, summed per tree: the min15m rule's shape. A floor of
# the summed tree would keep an evaluation that saw only one of its processes (at start-up, or
# while a killed child's replacement is not scraped yet) as the baseline for 5 minutes.
BASELINE_QUERY = (
    "sum by (scenario, pool, strategy) "
    "(min_over_time(membench_process_rss_bytes[5m]) and membench_process_rss_bytes)"
)


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) in bytes per hour; None under 3 points (or when
    every poll has the same time)."""
    if len(points) < 3:
        return None
    per_second = slope([t for t, _ in points], [v for _, v in points])
    return None if per_second is None else per_second * 3600


def pooled_slope_per_hour(
    series: list[tuple[float, float]], skip_s: float, cuts: list[float]
) -> float | None:
    """The baseline's slope within segments: a new segment begins at each cut (a fault replaced
    one of the scenario's processes, so its level starts afresh) and its first `skip_s` seconds
    are left out (the new process's 5 min floor is still filling, so it can only fall). Each
    segment is centred on its own means, so the level jumps between segments do not count as
    growth; with no cut this is the plain slope after the warm-up."""
    bounds = [0.0, *sorted(cuts), float("inf")]
    centred: list[tuple[float, float]] = []
    for begin, end in itertools.pairwise(bounds):
        segment = [(t, v) for t, v in series if begin + skip_s <= t < end]
        if len(segment) >= 3:
            mean_t = sum(t for t, _ in segment) / len(segment)
            mean_v = sum(v for _, v in segment) / len(segment)
            centred += [(t - mean_t, v - mean_v) for t, v in segment]
    return slope_per_hour(centred)


def summarise(
    polls: list[dict[str, Any]], skip_s: float, cuts: dict[str, list[float]] | None = None
) -> dict[str, Any]:
    """Per-scenario figures from the polled series (polls Prometheus did not answer skipped);
    `cuts`: per scenario, the soak times at which a fault replaced one of its processes."""
    result: dict[str, Any] = {}
    polls = [p for p in polls if not p.get("error")]
    if not polls:
        return result
    first, last = polls[0], polls[-1]
    for scenario in SCENARIOS:
        series = [
            (p["t"], p["baseline_min5m"][scenario])
            for p in polls
            if scenario in p["baseline_min5m"]
        ]
        scenario_cuts = (cuts or {}).get(scenario, [])
        runs = last["runs"].get(scenario, {})
        success, failure, timeout = (int(runs.get(k, 0)) for k in ("success", "failure", "timeout"))
        main_first = first["main_rss"].get(scenario)
        main_last = last["main_rss"].get(scenario)
        span_h = (last["t"] - first["t"]) / 3600
        main_delta = main_last - main_first if None not in (main_first, main_last) else None
        all_slope = slope_per_hour(series)
        late_slope = pooled_slope_per_hour(series, skip_s, scenario_cuts)
        result[scenario] = {
            "runs": {
                "fired": success + failure + timeout,
                "success": success,
                "failure": failure,
                "timeout": timeout,
                "skipped": int(last["skipped"].get(scenario, 0)),
            },
            "baseline": {
                "query": BASELINE_QUERY,
                "first_bytes": series[0][1] if series else None,
                "last_bytes": series[-1][1] if series else None,
                "slope_mb_per_hour": None if all_slope is None else all_slope / MB,
                "slope_after_warmup_mb_per_hour": None if late_slope is None else late_slope / MB,
                "warmup_skipped_s": skip_s,
                "segments_cut_at_s": scenario_cuts,
                "points": len(series),
                "min15m_rule_last_bytes": last["baseline_min15m_rule"].get(scenario),
            },
            "main_rss": {
                "first_bytes": main_first,
                "last_bytes": main_last,
                "delta_mb": None if main_delta is None else main_delta / MB,
                "mb_per_hour": None
                if main_delta is None or not span_h
                else main_delta / MB / span_h,
                "runs_tasks": scenario.startswith("gevent"),
            },
        }
    return result


def _fmt(value: float | None, spec: str = "8.2f") -> str:
    return f"{value:{spec}}" if value is not None else f"{'-':>{len(format(0.0, spec))}}"


def table(summary: dict[str, Any], polls: list[dict[str, Any]], minutes: float) -> str:
    missed = len(polls) - len(polls := [p for p in polls if not p.get("error")])
    lines = [
        f"SOAK RESULTS ({minutes:g} min requested, {polls[-1]['t'] / 60:.1f} min polled, "
        f"{len(polls)} polls)"
        if polls
        else "SOAK RESULTS (no polls)",
        "",
        f"{'scenario':<20}{'fired':>7}{'success':>9}{'failure':>9}{'timeout':>9}{'skipped':>9}",
    ]
    for scenario, figures in summary.items():
        r = figures["runs"]
        lines.append(
            f"{scenario:<20}{r['fired']:>7}{r['success']:>9}{r['failure']:>9}"
            f"{r['timeout']:>9}{r['skipped']:>9}"
        )
    lines += [
        "",
        "idle baseline = sum of each process's min_over_time(RSS [5m]); slope = least squares",
        "over the polls (MB/h)",
        'main RSS = membench_process_rss_bytes{role="main"}, first vs last poll (MB)',
        "",
        f"{'scenario':<20}{'base first':>11}{'base last':>11}{'slope/h':>9}{'slope/h*':>10}"
        f"{'main first':>12}{'main last':>11}{'delta':>8}{'delta/h':>9}",
    ]
    for scenario, figures in summary.items():
        b, m = figures["baseline"], figures["main_rss"]
        lines.append(
            f"{scenario:<20}"
            f"{_fmt(b['first_bytes'] and b['first_bytes'] / MB, '11.2f')}"
            f"{_fmt(b['last_bytes'] and b['last_bytes'] / MB, '11.2f')}"
            f"{_fmt(b['slope_mb_per_hour'], '9.2f')}"
            f"{_fmt(b['slope_after_warmup_mb_per_hour'], '10.2f')}"
            f"{_fmt(m['first_bytes'] and m['first_bytes'] / MB, '12.2f')}"
            f"{_fmt(m['last_bytes'] and m['last_bytes'] / MB, '11.2f')}"
            f"{_fmt(m['delta_mb'], '8.2f')}"
            f"{_fmt(m['mb_per_hour'], '9.2f')}"
        )
    if polls:
        skip = next(iter(summary.values()))["baseline"]["warmup_skipped_s"] if summary else 0
        lines += [
            f"slope/h*: the same slope over polls after the first {skip:g} s (warm-up excluded)",
            "prefork main processes run no task: their growth is exporter + Celery overhead;",
            "gevent main processes run the tasks, so theirs includes the task's leftovers.",
            "",
            f'Prometheus series count({{__name__=~"membench_.*"}}): '
            f"start {_fmt(polls[0]['series'], '.0f')}, end {_fmt(polls[-1]['series'], '.0f')}",
        ]
    if missed:
        lines.append(f"{missed} poll(s) unanswered (Prometheus down): left out of every figure")
    return "\n".join(lines)


def series_timeline(polls: list[dict[str, Any]], every_s: float = 300.0) -> list[dict[str, Any]]:
    """The series count every `every_s` seconds, with its min and max since the previous row."""
    rows: list[dict[str, Any]] = []
    answered = [p for p in polls if not p.get("error") and p.get("series") is not None]
    mark, seen = 0.0, []
    for poll in answered:
        seen.append(poll["series"])
        if poll["t"] >= mark or poll is answered[-1]:
            rows.append(
                {"t": poll["t"], "series": poll["series"], "min": min(seen), "max": max(seen)}
            )
            # The next mark after this poll: a gap of unanswered polls gives one row, not a burst.
            mark, seen = (poll["t"] // every_s + 1) * every_s, []
    return rows


def fault_steps(
    polls: list[dict[str, Any]], fault_times: list[float], settle_s: float = 330.0
) -> list[dict[str, float | None]]:
    """What each fault left in each scenario's idle baseline, MB: the last poll before it
    against the first poll `settle_s` after it, once the 5 min floor holds only later samples
    (the growth of those minutes is included: ~0.1 MB at 1 MB/h)."""
    answered = [p for p in polls if not p.get("error")]
    steps: list[dict[str, float | None]] = []
    for at in fault_times:
        row: dict[str, float | None] = {}
        for scenario in SCENARIOS:
            series = [(p["t"], p["baseline_min5m"].get(scenario)) for p in answered]
            before = [v for t, v in series if t < at and v is not None][-1:]
            after = [v for t, v in series if t >= at + settle_s and v is not None][:1]
            row[scenario] = (after[0] - before[0]) / MB if before and after else None
        steps.append(row)
    return steps


def fault_table(
    faults: list[dict[str, Any]],
    effects: list[dict[str, Any]],
    steps: list[dict[str, float | None]],
    accounts: dict[str, Any],
    timeline: list[dict[str, Any]],
    start: float,
) -> str:
    """The faults (when, what, recovery, the runs each hit and how each was counted), the
    accounting per scenario, and the series count over time."""
    lines = [
        "",
        "FAULTS (recovery: first successful run that began after the fault, ended after it was",
        "over; restart_prometheus: every worker target scraped up again)",
        "",
        f"{'t (s)':>7}  {'fault':<19}{'pids':<15}{'mid-task':>9}{'recovery s':>11}  runs hit",
    ]
    for fault, effect in zip(faults, effects, strict=True):
        counted = ", ".join(f"{n} {o}" for o, n in effect["outcomes"].items() if n) or "none"
        recovery = _fmt(effect["recovery_s"], "11.2f") if effect["recovered"] else "    never"
        mid = "-" if fault["mid_task"] is None else ("yes" if fault["mid_task"] else "no")
        pids = ",".join(map(str, fault["pids"]))[:14]
        lines.append(
            f"{fault['at'] - start:7.0f}  {fault['kind']:<19}{pids:<15}{mid:>9}{recovery}  "
            f"{counted}{'; ERROR ' + fault['error'] if fault['error'] else ''}"
        )
        for run in effect["runs_hit"]:
            if run["outcome"] != "success":
                lines.append(
                    f"{'':9}{run['scenario']} run {run['run']}: {run['outcome']} "
                    f"({run['duration_s']:.2f} s): {run['detail'][:70]}"
                )
    lines += [
        "",
        "BASELINE STEP per fault, MB (last poll before it vs the first poll 330 s after)",
        "",
        f"{'fault':<21}" + "".join(f"{scenario:>20}" for scenario in SCENARIOS),
    ]
    for fault, step in zip(faults, steps, strict=True):
        cells = "".join(_fmt(step[scenario], "20.2f") for scenario in SCENARIOS)
        lines.append(f"{fault['kind']:<21}{cells}")
    lines += [
        "",
        "ACCOUNTING: firings = success + failure + timeout + skipped (log = the loadgen's per-run",
        "lines; loadgen = its own counters at its stop); missing / twice = run numbers with no",
        "outcome line / with two",
        "",
        f"{'scenario':<20}{'firings':>8}{'success':>9}{'failure':>9}{'timeout':>9}{'skipped':>9}"
        f"{'missing':>9}{'twice':>7}{'log = loadgen':>15}",
    ]
    for scenario, a in accounts.items():
        log = a["log"]
        lines.append(
            f"{scenario:<20}{a['firings']:>8}{log['success']:>9}{log['failure']:>9}"
            f"{log['timeout']:>9}{log['skipped']:>9}{len(a['runs_without_outcome']):>9}"
            f"{len(a['runs_with_two_outcomes']):>7}"
            f"{'yes' if a['log_matches_loadgen'] else 'NO':>15}"
        )
    lines += ["", "SERIES COUNT over time (min/max since the row before)", ""]
    lines += [
        f"  t={r['t']:6.0f}s  {r['series']:5.0f}  (min {r['min']:.0f}, max {r['max']:.0f})"
        for r in timeline
    ]
    return "\n".join(lines)
