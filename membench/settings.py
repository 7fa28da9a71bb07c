"""Every environment variable membench reads, named and read in this one module, and the
default ports.

Flags come first, then these variables, then the defaults here. Names are the contract between
`membench` commands, the worker processes they start, compose files and the Kubernetes manifests.
Every other option of a command reads MEMBENCH_<COMMAND>_<OPTION> (membench/cli/options.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from membench.jsonfile import replaced_atomically

BROKER_URL = "MEMBENCH_BROKER_URL"  # Redis URL of broker and result backend
# What every Celery user already has set; read after MEMBENCH_BROKER_URL.
CELERY_BROKER_URL = "CELERY_BROKER_URL"
BROKER_URL_VARIABLES = (BROKER_URL, CELERY_BROKER_URL)
# The prefix of the variable each command option reads: MEMBENCH_RUN_SUBTASKS for `run --subtasks`.
OPTION_PREFIX = "MEMBENCH"
TARGETS_DIR = "MEMBENCH_TARGETS_DIR"  # file_sd directory exporters register in
METRICS_HOST = "MEMBENCH_METRICS_HOST"  # address worker exporters bind
METRICS_PORT = "MEMBENCH_METRICS_PORT"  # main exporter's port; prefork child i: +1+i
METRICS_MODE = "MEMBENCH_METRICS_MODE"  # per-process (a port each) or one-port (the main's)
ADVERTISE_HOST = "MEMBENCH_ADVERTISE_HOST"  # host written into file_sd targets
SCENARIO = "MEMBENCH_SCENARIO"  # set by `membench worker` for the worker's own labels
READY_FILE = "MEMBENCH_READY_FILE"  # the worker writes its pid here once ready
STARTED_DIR = "MEMBENCH_STARTED_DIR"  # where membench started: --payload MODULE:FUNCTION's home
EXPORTER = "MEMBENCH_EXPORTER"  # "off": no exporter (to measure what it costs)
GRAFANA_URL = "MEMBENCH_GRAFANA_URL"  # loadgen posts run annotations here
GRAFANA_TOKEN = "MEMBENCH_GRAFANA_TOKEN"  # bearer token for those annotations
ALERT_WEBHOOK_URL = "MEMBENCH_ALERT_WEBHOOK_URL"  # `stack up`'s Alertmanager posts alerts here
# Read by Grafana's provisioning files, set by `membench stack up`.
PROMETHEUS_URL = "MEMBENCH_PROMETHEUS_URL"
GRAFANA_DASHBOARDS_DIR = "MEMBENCH_GRAFANA_DASHBOARDS_DIR"

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_METRICS_HOST = "127.0.0.1"
# Outside 9100-9999, the exporters' range of Prometheus's default port allocations (full; 9100
# is node_exporter's, celery-exporter's 9808), and clear of Elasticsearch (9200, 9300), Flower
# (5555), Prometheus (9090), Alertmanager (9093) and Grafana (3000). The instrument's main
# process listens on 19808, prefork child i on 19809+i; the load generator just below.
DEFAULT_METRICS_PORT = 19808
DEFAULT_LOADGEN_METRICS_PORT = 19807


def _get(name: str, env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    return value or None  # an empty variable means unset, as in compose files


def broker_url(env: Mapping[str, str] | None = None) -> str | None:
    """MEMBENCH_BROKER_URL, else CELERY_BROKER_URL (the first one set and not empty)."""
    return next(filter(None, (_get(name, env) for name in BROKER_URL_VARIABLES)), None)


def broker_url_source(env: Mapping[str, str] | None = None) -> str | None:
    """The name of the variable broker_url() reads its URL from, for errors."""
    return next((name for name in BROKER_URL_VARIABLES if _get(name, env)), None)


def broker_url_or_default(env: Mapping[str, str] | None = None) -> str:
    return broker_url(env) or DEFAULT_BROKER_URL


def targets_dir(env: Mapping[str, str] | None = None) -> Path | None:
    value = _get(TARGETS_DIR, env)
    return Path(value) if value else None


def metrics_host(env: Mapping[str, str] | None = None) -> str:
    return _get(METRICS_HOST, env) or DEFAULT_METRICS_HOST


def metrics_port(env: Mapping[str, str] | None = None) -> int:
    return int(_get(METRICS_PORT, env) or 0)


def advertise_host(env: Mapping[str, str] | None = None) -> str | None:
    return _get(ADVERTISE_HOST, env)


def scenario(env: Mapping[str, str] | None = None) -> str:
    return _get(SCENARIO, env) or "unknown"


def ready_file(env: Mapping[str, str] | None = None) -> Path | None:
    value = _get(READY_FILE, env)
    return Path(value) if value else None


def announce_ready(env: Mapping[str, str] | None = None) -> None:
    """Write this process's pid to the ready file, where one is asked for: the runner's sign
    that the worker is ready. Through a temporary file, so the pid is never read half written."""
    path = ready_file(env)
    if path is not None:
        with replaced_atomically(path) as tmp:
            tmp.write_text(str(os.getpid()))


def started_dir(env: Mapping[str, str] | None = None) -> str | None:
    return _get(STARTED_DIR, env)


def exporter_enabled(env: Mapping[str, str] | None = None) -> bool:
    return (_get(EXPORTER, env) or "on").lower() != "off"


def grafana_url(env: Mapping[str, str] | None = None) -> str | None:
    return _get(GRAFANA_URL, env)


def grafana_token(env: Mapping[str, str] | None = None) -> str | None:
    return _get(GRAFANA_TOKEN, env)


def alert_webhook_url(env: Mapping[str, str] | None = None) -> str | None:
    return _get(ALERT_WEBHOOK_URL, env)
