"""The local stack's monitoring services: Grafana (and Alertmanager), started into a Stack
like every other service, on loopback."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import membench.grafana
from membench import settings
from membench.processes import free_port

if TYPE_CHECKING:
    from membench.stack.supervisor import Stack

GRAFANA_DIR = Path(membench.grafana.__file__).resolve().parent


def start_grafana(stack: Stack, prometheus_url: str) -> None:
    """Grafana on a free loopback port, provisioned with membench's datasource and dashboards."""
    port = free_port()
    password = os.environ.get("GRAFANA_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    home = Path(shutil.which("grafana-server") or "").resolve().parent.parent / "share/grafana"
    env = dict(
        os.environ,
        GF_PATHS_PROVISIONING=str(GRAFANA_DIR / "provisioning"),
        GF_PATHS_DATA=str(stack.directory / "grafana-data"),
        GF_PATHS_LOGS=str(stack.directory / "logs"),
        GF_SERVER_HTTP_ADDR="127.0.0.1",
        GF_SERVER_HTTP_PORT=str(port),
        GF_SECURITY_ADMIN_PASSWORD=password,
        GF_USERS_ALLOW_SIGN_UP="false",
        GF_ANALYTICS_REPORTING_ENABLED="false",
    )
    env[settings.PROMETHEUS_URL] = prometheus_url
    env[settings.GRAFANA_DASHBOARDS_DIR] = str(GRAFANA_DIR / "dashboards")
    argv = ["grafana-server"] + ([f"--homepath={home}"] if home.is_dir() else [])
    stack.add("grafana", argv, env, f"http://127.0.0.1:{port}/api/health")
    if not os.environ.get("GRAFANA_ADMIN_PASSWORD"):
        secret = stack.directory / "grafana-admin-password"
        secret.touch(mode=0o600)  # before writing: never readable by other local users
        secret.write_text(password + "\n")
