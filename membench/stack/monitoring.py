"""The local stack's monitoring services: Alertmanager and Grafana, started into a Stack like
every other service (supervised, restarted), on loopback."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Protocol

import membench.grafana
from membench import settings
from membench.processes import free_port
from membench.prometheus import alertmanager
from membench.targets import write_target

GRAFANA_DIR = Path(membench.grafana.__file__).resolve().parent
# Debian's package name for the binary first, then upstream's.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


class Stack(Protocol):
    """Where a service starts (supervisor.Stack): its directory, and `add`, which spawns it."""

    @property
    def directory(self) -> Path: ...

    def add(self, name: str, argv: list[str], env: dict[str, str], url: str = "") -> object: ...


def alertmanager_binary() -> str | None:
    return next(filter(None, map(shutil.which, ALERTMANAGER_BINARIES)), None)


def start_alertmanager(stack: Stack, binary: str, targets: Path) -> None:
    """Alertmanager on a free loopback port, its storage in the stack's directory, no gossip
    (one instance), announced to Prometheus through a file_sd target in `targets`. Its
    receiver posts to MEMBENCH_ALERT_WEBHOOK_URL when set: the config holding it is 0600 and
    the URL is never printed (a chat webhook's URL is its secret)."""
    port = free_port()
    home = stack.directory / "alertmanager"
    home.mkdir(mode=0o700, exist_ok=True)
    config = home / "alertmanager.yml"  # JSON, which is YAML
    config.touch(mode=0o600)
    config.write_text(json.dumps(alertmanager.config(settings.alert_webhook_url()), indent=2))
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    stack.add("alertmanager", argv, dict(os.environ), f"http://127.0.0.1:{port}/-/ready")
    write_target(targets, f"127.0.0.1:{port}", {})


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
