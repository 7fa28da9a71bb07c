"""The soak's figures from its Prometheus polls (runs, idle-baseline slope, main RSS growth) and
the table it prints; benchmarks/soak.py runs the stack and polls."""

from __future__ import annotations

from typing import Any

from membench.stats import slope

SCENARIOS = ("prefork_threads", "prefork_sequential", "gevent_threads", "gevent_greenlets")
MB = 1024 * 1024
BASELINE_QUERY = "min_over_time(scenario:membench_tree_rss_bytes:sum[5m])"


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) in bytes per hour; None under 3 points (or when
    every poll has the same time)."""
    if len(points) < 3:
        return None
    per_second = slope([t for t, _ in points], [v for _, v in points])
    return None if per_second is None else per_second * 3600


def summarise(polls: list[dict[str, Any]], skip_s: float) -> dict[str, Any]:
    """Per-scenario figures from the polled series."""
    result: dict[str, Any] = {}
    if not polls:
        return result
    first, last = polls[0], polls[-1]
    for scenario in SCENARIOS:
        series = [
            (p["t"], p["baseline_min5m"][scenario])
            for p in polls
            if scenario in p["baseline_min5m"]
        ]
        late = [(t, v) for t, v in series if t >= skip_s]
        runs = last["runs"].get(scenario, {})
        success, failure, timeout = (int(runs.get(k, 0)) for k in ("success", "failure", "timeout"))
        main_first = first["main_rss"].get(scenario)
        main_last = last["main_rss"].get(scenario)
        span_h = (last["t"] - first["t"]) / 3600
        main_delta = main_last - main_first if None not in (main_first, main_last) else None
        all_slope = slope_per_hour(series)
        late_slope = slope_per_hour(late)
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
        "idle baseline = min_over_time(tree RSS [5m]); slope = least squares over the polls (MB/h)",
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
    return "\n".join(lines)
