"""The monitoring mixin's settings, shared by the rules (prometheus/generate.py) and the
dashboards (grafana/generate.py): which series they read, which labels aggregations keep, the
alert thresholds and durations, and where runbook and dashboard links point.

Stdlib and the core's units and durations only, and below both generators in the layout, so a
dashboard draws the very threshold its alert compares with.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from membench.durations import parse_duration
from membench.units import MIB

# Alert names: the rules, the runbook sections, the dashboards and the tests use these.
WORKER_ABSENT = "MembenchWorkerAbsent"
TASK_RETAINED_GROWTH = "MembenchTaskRetainedGrowth"
CGROUP_NEAR_LIMIT = "MembenchCgroupMemoryNearLimit"
OOM_KILL = "MembenchOOMKill"
WORKER_TARGET_DOWN = "MembenchWorkerTargetDown"
TASK_RUN_FAILURES = "MembenchTaskRunFailures"
SOAK_MEMORY_GROWTH = "MembenchSoakMemoryGrowth"
LOADGEN_SKIPPING = "MembenchLoadgenSkippingRuns"
LOADGEN_RUN_FAILURES = "MembenchLoadgenRunFailures"
LOADGEN_TARGET_DOWN = "MembenchLoadgenTargetDown"

# How long each alert's condition must hold (`for:`): argued per alert in docs/runbooks.md.
DEFAULT_FOR: dict[str, str] = {
    WORKER_ABSENT: "5m",
    TASK_RETAINED_GROWTH: "1h",
    CGROUP_NEAR_LIMIT: "5m",
    OOM_KILL: "1m",
    WORKER_TARGET_DOWN: "5m",
    TASK_RUN_FAILURES: "1m",
    SOAK_MEMORY_GROWTH: "30m",
    LOADGEN_SKIPPING: "5m",
    LOADGEN_RUN_FAILURES: "1m",
    LOADGEN_TARGET_DOWN: "5m",
}
ALERTS = tuple(DEFAULT_FOR)

# Thresholds an alert compares with and a dashboard panel draws.
RETAINED_FLOOR_BYTES = 50 * MIB
CGROUP_NEAR_LIMIT_RATIO = 0.9
SOAK_GROWTH_MIB_PER_HOUR = 10
# A worker process seen within this window and gone now is absent (MembenchWorkerAbsent).
ABSENT_LOOKBACK = "1h"

DEFAULT_GRAFANA_URL = "http://127.0.0.1:3000"
DEFAULT_RUNBOOK_URL = (
    "https://github.com/celery-membench/celery-membench/blob/main/docs/runbooks.md"
)
# Dashboard uids: the alerts link to them, grafana/ builds them.
OVERVIEW_UID = "membench-overview"
SOAK_UID = "membench-soak"
CELERY_WORKER_UID = "membench-celery-worker"

_MATCHER = r'\s*[A-Za-z_]\w*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"^(?:{_MATCHER}(?:,{_MATCHER})*,?)?$")
_LABEL = re.compile(r"^[A-Za-z_]\w*$")


def is_duration(text: str) -> bool:
    """Whether Prometheus reads `text` as a duration in a rule file (`0s` included)."""
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Settings:
    """What a deployment sets; the defaults are the bundled stack's.

    `selector`: PromQL label matchers added to every series the rules and dashboards read
    (e.g. `namespace="shop"`), empty for all. `cluster_label`: a target label that tells
    clusters apart; aggregations keep it and dashboards get a variable for it. `for_durations`:
    per-alert `for:` overrides (alert name -> Prometheus duration). `celery_interval`: how
    often the instrument's alert group is evaluated.
    """

    selector: str = ""
    cluster_label: str | None = None
    for_durations: Mapping[str, str] = field(default_factory=dict)
    celery_interval: str = "30s"
    grafana_url: str = DEFAULT_GRAFANA_URL
    runbook_url: str = DEFAULT_RUNBOOK_URL

    def __post_init__(self) -> None:
        if not _SELECTOR.match(self.selector):
            raise ValueError(
                f"--selector {self.selector!r} is not PromQL label matchers such as "
                'namespace="shop", job=~"celery.*"'
            )
        if self.cluster_label is not None and not _LABEL.match(self.cluster_label):
            raise ValueError(f"--cluster-label {self.cluster_label!r} is not a label name")
        if not is_duration(self.celery_interval):
            raise ValueError(f"--celery-interval {self.celery_interval!r} is not a duration")
        for alert, duration in self.for_durations.items():
            if alert not in DEFAULT_FOR:
                raise ValueError(f"--for: no alert named {alert!r} (one of {', '.join(ALERTS)})")
            if not is_duration(duration):
                raise ValueError(
                    f"--for {alert}: {duration!r} is not a Prometheus duration like 5m"
                )

    @property
    def matchers(self) -> str:
        """The selector, normalised: `a="x", b=~"y"`, or "" for none."""
        return ", ".join(m.strip() for m in re.findall(_MATCHER, self.selector))

    def series(self, metric: str, *matchers: str) -> str:
        """`metric{selector, matchers...}`, or the bare name when nothing narrows it."""
        inside = ", ".join(filter(None, (self.matchers, *matchers)))
        return f"{metric}{{{inside}}}" if inside else metric

    @property
    def group_labels(self) -> tuple[str, ...]:
        """What every aggregation keeps, so two stacks or namespaces never merge."""
        cluster = (self.cluster_label,) if self.cluster_label else ()
        return (*cluster, "namespace", "job")

    def by(self, *labels: str) -> str:
        """`by (namespace, job, labels...)`."""
        return f"by ({', '.join((*self.group_labels, *labels))})"

    def for_(self, alert: str) -> str:
        return self.for_durations.get(alert, DEFAULT_FOR[alert])

    def runbook(self, alert: str) -> str:
        """The alert's section of docs/runbooks.md (GitHub's anchor: the heading lower-cased)."""
        return f"{self.runbook_url}#{alert.lower()}"

    def dashboard(self, uid: str) -> str:
        """The dashboard, narrowed to the alert's job (a template the alert fills in)."""
        return f"{self.grafana_url.rstrip('/')}/d/{uid}?var-job={{{{ $labels.job }}}}"


def generate(
    args: argparse.Namespace,
    prog: str,
    script: str,
    kind: str,
    settings_of: Callable[[argparse.Namespace], Settings],
    stale_files: Callable[[Path, Settings], list[str]],
    write: Callable[[Path, Settings], list[Path]],
) -> int:
    """Both generators' command once parsed: settings from `args` (a bad one: one line, exit 2),
    then `--check` (exit 1 naming the stale files of `kind`) or the files written."""
    try:
        settings = settings_of(args)
    except ValueError as exc:  # one line, as every membench command says a bad input
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_files(args.output_dir, settings)
        if stale:
            print(
                f"stale {kind} in {args.output_dir}: {', '.join(stale)}; run python {script}",
                file=sys.stderr,
            )
            return 1
        print(f"{kind} in {args.output_dir} are up to date")
        return 0
    for path in write(args.output_dir, settings):
        print(f"wrote {path}")
    return 0


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """The settings both generators take (the rules' generator adds durations and links)."""
    parser.add_argument("--selector", default="", help='e.g. namespace="shop" (default: all)')
    parser.add_argument("--cluster-label", default=None, help="e.g. cluster (default: none)")
