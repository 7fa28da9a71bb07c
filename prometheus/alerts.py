"""The alerts, built from exporter/names.py and the mixin's settings.

Two groups: `membench-celery-alerts` for any Celery app instrumented with
`membench.celery.instrument(app)` (the benchmark's workers too), `membench-alerts` for the
benchmark's stack. No alert names a job: the selector picks the series, and aggregations keep
the group labels (namespace, job). Every alert has `for:`, a severity, a static summary, a
description with the values, and links to its runbook section and its dashboard.
Severity: critical = work is being lost now (a process killed or gone); warning = it may be.
"""

from __future__ import annotations

from typing import Any

from membench.exporter import names as n
from membench.prometheus import mixin as m
from membench.prometheus.mixin import Settings
from membench.units import KIB, MIB


def in_mib(count: int) -> str:
    """`count` MiB in a rule's expression: `50 * 1024 * 1024` shows its unit, 52428800 does not."""
    return f"{count} * {KIB} * {KIB}"


def alert(
    s: Settings,
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    dashboard_uid: str,
) -> dict[str, Any]:
    """One alerting rule; `<for>` in the description is the alert's `for:` duration."""
    return {
        "alert": name,
        "expr": expr,
        "for": s.for_(name),
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description.replace("<for>", s.for_(name)),
            "runbook_url": s.runbook(name),
            "dashboard_url": s.dashboard(dashboard_uid),
        },
    }


def celery_alerts(s: Settings) -> dict[str, Any]:
    per_worker = s.by("pod", "instance")
    on_target = f"on ({', '.join((*s.group_labels, 'instance'))})"
    retained = s.series(n.TASK_RETAINED_BYTES)
    rss = s.series(n.PROCESS_RSS_BYTES)
    worker = "worker {{ $labels.instance }} (job {{ $labels.job }})"
    return {
        "name": "membench-celery-alerts",
        # MembenchWorkerAbsent reads an hour of every process series: every 30 s (the default)
        # is plenty for alerts that wait a minute or more, and costs a tenth of the global 5 s.
        "interval": s.celery_interval,
        "rules": [
            alert(
                s,
                m.WORKER_ABSENT,
                # A process series seen within the lookback but not now, on a target Prometheus
                # still discovers (`up` 1 or 0): a child that died unreplaced, a worker that
                # hangs or died, a host that vanished. A clean stop leaves service discovery
                # (no `up`); a recycled child keeps its pool index, hence its series.
                f"(\n  last_over_time({rss}[{m.ABSENT_LOOKBACK}])\n  unless {rss}\n)\n"
                f"and {on_target} {s.series('up')}",
                "critical",
                "A Celery worker process is absent",
                "The {{ $labels.role }} process{{ with $labels.child }} (prefork child "
                "{{ . }}){{ end }} of " + worker + ", pool {{ $labels.pool }}, exported memory "
                "series until recently and has not for <for>, while its target is still "
                "discovered. Its last RSS was {{ $value | humanize1024 }}B.",
                m.CELERY_WORKER_UID,
            ),
            alert(
                s,
                m.TASK_RETAINED_GROWTH,
                # Sustained growth above a floor; `for` twice the slope's window, so a warm-up
                # that levels off never fires.
                f"{retained} > {in_mib(m.RETAINED_FLOOR_BYTES // MIB)}\n"
                f"and deriv({retained}[30m]) > 0",
                "warning",
                "A Celery task keeps retaining memory",
                "Runs of task {{ $labels.task }} on " + worker + " have left "
                "{{ $value | humanize1024 }}B more resident memory behind them than before "
                "them, and that figure has kept rising for <for> (floor "
                f"{m.RETAINED_FLOOR_BYTES // MIB} MiB). The task probably leaks.",
                m.CELERY_WORKER_UID,
            ),
            alert(
                s,
                m.CGROUP_NEAR_LIMIT,
                # Every process of a cgroup reads the same usage and limit: max, never sum.
                f"max {per_worker} ({s.series(n.CGROUP_MEMORY_USAGE_BYTES)})\n"
                f"/ max {per_worker} ({s.series(n.CGROUP_MEMORY_LIMIT_BYTES)})\n"
                f"> {m.CGROUP_NEAR_LIMIT_RATIO}",
                "warning",
                "A Celery worker's memory is near its cgroup limit",
                "The memory cgroup of " + worker + " has been above "
                f"{m.CGROUP_NEAR_LIMIT_RATIO:.0%} of its limit for <for> "
                "({{ $value | humanizePercentage }} now). Past the limit the kernel's OOM "
                "killer picks a process of this cgroup.",
                m.CELERY_WORKER_UID,
            ),
            alert(
                s,
                m.OOM_KILL,
                f"max {per_worker} (\n  increase({s.series(n.CGROUP_OOM_KILLS_TOTAL)}[10m])\n) > 0",
                "critical",
                "The OOM killer killed a process of a Celery worker's cgroup",
                'The kernel\'s OOM killer killed {{ $value | printf "%.0f" }} process(es) of '
                "the memory cgroup of " + worker + " in the last 10 minutes. A killed prefork "
                'child loses its task (outcome "lost"); a killed main process takes the worker '
                "down.",
                m.CELERY_WORKER_UID,
            ),
            alert(
                s,
                m.WORKER_TARGET_DOWN,
                # A target down in a job that exported worker series within the lookback: no
                # job name needed. MembenchWorkerAbsent (critical) covers what was scraped;
                # this also catches a target that never answered, e.g. a wrong advertised host.
                f"{s.series('up')} == 0\n"
                f"and on ({', '.join(s.group_labels)}) group {s.by()} (\n"
                f"  last_over_time({s.series(n.WORKER_INFO)}[{m.ABSENT_LOOKBACK}])\n)",
                "warning",
                "A Celery worker's exporter target is down",
                "Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) "
                "for <for>: that process's memory series are missing, so sums over its worker "
                "are understated.",
                m.CELERY_WORKER_UID,
            ),
        ],
    }


def benchmark_alerts(s: Settings) -> dict[str, Any]:
    failures = s.series(n.TASK_RUNS_TOTAL, f'{n.OUTCOME_LABEL}=~"failure|lost|rejected"')
    loadgen_failed = s.series(n.LOADGEN_RUNS_TOTAL, f'{n.OUTCOME_LABEL}=~"failure|timeout"')
    loadgen_seen = s.series(n.LOADGEN_LAST_RUN_TIMESTAMP_SECONDS)
    on_target = f"on ({', '.join((*s.group_labels, 'instance'))})"
    scenario = "scenario {{ $labels.scenario }} (job {{ $labels.job }})"
    return {
        "name": "membench-alerts",
        "rules": [
            alert(
                s,
                m.TASK_RUN_FAILURES,
                # A task's series appear at its first run: a first run that fails is a new
                # series already at 1, which increase() cannot see; the `unless ... offset`
                # arm counts it.
                f"sum {s.by('scenario', 'pool', 'strategy', n.OUTCOME_LABEL)} (\n"
                f"  increase({failures}[5m]) > 0\n"
                f"  or ({failures} > 0 unless {failures} offset 5m)\n) > 0",
                "warning",
                "Benchmark task runs are failing",
                '{{ $value | printf "%.0f" }} run(s) of ' + scenario + " ended with outcome "
                "{{ $labels.outcome }} in the last 5 minutes. Failed or lost runs leave no peak "
                "for that run; a killed child shows as lost.",
                m.OVERVIEW_UID,
            ),
            alert(
                s,
                m.SOAK_MEMORY_GROWTH,
                # deriv1h is in bytes/s, hence * 3600.
                f"{n.RULE_TREE_RSS_DERIV1H} * 3600 > {in_mib(m.SOAK_GROWTH_MIB_PER_HOUR)}",
                "warning",
                "A benchmark worker's idle memory keeps growing",
                "The idle baseline of " + scenario + ", pool {{ $labels.pool }}, strategy "
                "{{ $labels.strategy }}, has grown by {{ $value | humanize1024 }}B per hour for "
                f"<for> (threshold {m.SOAK_GROWTH_MIB_PER_HOUR} MiB/h). Compare with glibc arena "
                "retention before calling it a leak.",
                m.SOAK_UID,
            ),
            alert(
                s,
                m.LOADGEN_SKIPPING,
                f"sum {s.by('scenario')} (increase({s.series(n.LOADGEN_SKIPPED_TOTAL)}[15m])) > 0",
                "warning",
                "The load generator is skipping runs",
                '{{ $value | printf "%.0f" }} scheduled run(s) of ' + scenario + " were "
                "skipped in the last 15 minutes because the previous run had not finished. "
                "Lengthen the schedule's period or shrink the run.",
                m.OVERVIEW_UID,
            ),
            alert(
                s,
                m.LOADGEN_RUN_FAILURES,
                f"sum {s.by('scenario', n.OUTCOME_LABEL)} (\n"
                f"  increase({loadgen_failed}[15m])\n) > 0",
                "warning",
                "Load generator runs are failing",
                '{{ $value | printf "%.0f" }} loadgen run(s) of ' + scenario + " ended with "
                "outcome {{ $labels.outcome }} in the last 15 minutes. A timeout usually means "
                "the scenario's worker is down or its queue is backed up.",
                m.OVERVIEW_UID,
            ),
            alert(
                s,
                m.LOADGEN_TARGET_DOWN,
                f"{s.series('up')} == 0\n"
                f"and {on_target} last_over_time({loadgen_seen}[{m.ABSENT_LOOKBACK}])",
                "warning",
                "The load generator's exporter target is down",
                "Prometheus has failed to scrape the load generator {{ $labels.instance }} "
                "(job {{ $labels.job }}) for <for>: no scheduled runs are being fired or "
                "recorded.",
                m.OVERVIEW_UID,
            ),
        ],
    }
