"""Every MEMBENCH_* environment variable, named and read in this one module.

Flags come first, then these variables, then the defaults here. Names are the contract between
`membench` commands, the worker processes they start, compose files and the Kubernetes manifests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

BROKER_URL = "MEMBENCH_BROKER_URL"  # Redis URL of broker and result backend
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


def _get(name: str, env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    return value or None  # an empty variable means unset, as in compose files


def broker_url(env: Mapping[str, str] | None = None) -> str | None:
    return _get(BROKER_URL, env)


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
