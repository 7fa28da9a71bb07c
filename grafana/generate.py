"""Build the celery-membench Grafana dashboards with grafana-foundation-sdk and write their JSON.

`python grafana/generate.py` (or `python -m membench.grafana.generate`) rewrites
grafana/dashboards/*.json; `--check` exits 1 when the committed files are stale.
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
from membench.grafana.records import Dashboard
from membench.grafana.sdk import build
from membench.grafana.soak import SOAK

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

DASHBOARDS: dict[str, Dashboard] = {
    spec.file_name: spec for spec in (OVERVIEW, SOAK, CELERY_WORKER)
}


def build_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON (plain dicts), built fresh."""
    return {
        name: json.loads(json.dumps(build(spec).build(), cls=JSONEncoder))
        for name, spec in DASHBOARDS.items()
    }


def render(dashboard: dict[str, Any]) -> str:
    """The committed form: sorted keys, indent 2, trailing newline, so diffs stay small."""
    return json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path) -> list[str]:
    """Names of dashboard files in `directory` that differ from (or are missing versus) a build."""
    stale = []
    for name, dashboard in build_dashboards().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(dashboard):
            stale.append(name)
    return sorted(stale)


def write(directory: Path) -> list[Path]:
    """Write every dashboard into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_dashboards().items():
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
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.output_dir)
        if stale:
            print(
                f"stale dashboards in {args.output_dir}: {', '.join(stale)}; "
                "run python grafana/generate.py",
                file=sys.stderr,
            )
            return 1
        print(f"dashboards in {args.output_dir} are up to date")
        return 0
    for path in write(args.output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
