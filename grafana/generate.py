"""Build the celery-membench Grafana dashboards with grafana-foundation-sdk and write their JSON.

`python grafana/generate.py` (or `python -m membench.grafana.generate`) rewrites
grafana/dashboards/*.json; `--check` exits 1 when the committed files are stale. `--selector`
and `--cluster-label` (the mixin's settings, as for the rules) build them for another
deployment into `--output-dir`.
The panels live in overview.py, soak.py and celery_worker.py (written with the factories of
kinds.py), the SDK glue in sdk.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from membench.grafana.celery_worker import CELERY_WORKER
from membench.grafana.overview import OVERVIEW
from membench.grafana.records import SETTINGS, Dashboard
from membench.grafana.sdk import DATASOURCE_VARIABLE, build
from membench.grafana.soak import SOAK
from membench.prometheus.mixin import Settings, add_settings_options, generate

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

DASHBOARDS: dict[str, Dashboard] = {
    spec.file_name: spec for spec in (OVERVIEW, SOAK, CELERY_WORKER)
}


# What Grafana's import asks for: the Prometheus the `datasource` variable starts on.
IMPORT_INPUT = "DS_PROMETHEUS"
INPUTS = [
    {
        "name": IMPORT_INPUT,
        "label": "Prometheus",
        "description": "The Prometheus that scrapes the instrumented Celery workers",
        "type": "datasource",
        "pluginId": "prometheus",
        "pluginName": "Prometheus",
    }
]


def settings_matchers(settings: Settings) -> str:
    """What stands for records.SETTINGS: the selector and the cluster variable's matcher."""
    cluster = f'{settings.cluster_label}=~"$cluster"' if settings.cluster_label else ""
    return ", ".join(filter(None, (cluster, settings.matchers)))


def _put_settings(value: Any, matchers: str) -> Any:
    """Every string of the JSON with SETTINGS replaced (with its comma when there is none)."""
    if isinstance(value, dict):
        return {k: _put_settings(v, matchers) for k, v in value.items()}
    if isinstance(value, list):
        return [_put_settings(v, matchers) for v in value]
    if isinstance(value, str) and SETTINGS in value:
        if matchers:
            return value.replace(SETTINGS, matchers)
        return value.replace(f", {SETTINGS}", "").replace(f"{{{SETTINGS}}}", "")
    return value


def importable(dashboard: dict[str, Any]) -> dict[str, Any]:
    """`__inputs` for Grafana's import; the datasource variable starts on what it picks (a file
    provider, which fills no input, falls back to the first Prometheus datasource)."""
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == DATASOURCE_VARIABLE:
            chosen = f"${{{IMPORT_INPUT}}}"
            variable["current"] = {"selected": False, "text": chosen, "value": chosen}
    return {"__inputs": INPUTS, **dashboard}


def build_dashboards(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON (plain dicts), built fresh with `settings` (the defaults:
    every series, no cluster variable)."""
    settings = settings or Settings()
    matchers = settings_matchers(settings)
    built = {}
    for name, spec in DASHBOARDS.items():
        dashboard = json.loads(json.dumps(build(spec, settings).build(), cls=JSONEncoder))
        built[name] = importable(_put_settings(dashboard, matchers))
    return built


def render(dashboard: dict[str, Any]) -> str:
    """The committed form: sorted keys, indent 2, trailing newline, so diffs stay small."""
    return json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path, settings: Settings | None = None) -> list[str]:
    """Names of dashboard files in `directory` that differ from (or are missing versus) a build."""
    stale = []
    for name, dashboard in build_dashboards(settings).items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(dashboard):
            stale.append(name)
    return sorted(stale)


def write(directory: Path, settings: Settings | None = None) -> list[Path]:
    """Write every dashboard into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_dashboards(settings).items():
        path = directory / name
        path.write_text(render(dashboard), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the JSON on disk differs from a build"
    )
    parser.add_argument("--output-dir", type=Path, default=DASHBOARDS_DIR)
    add_settings_options(parser)
    args = parser.parse_args(argv)
    return generate(
        args,
        parser.prog,
        "grafana/generate.py",
        "dashboards",
        lambda a: Settings(selector=a.selector, cluster_label=a.cluster_label),
        stale_files,
        write,
    )


if __name__ == "__main__":
    sys.exit(main())
