"""The type check (.ci/typecheck.py) sees the package as it is installed: every module of the
checkout at its installed name in the link tree mypy reads, and mypy's paths said as the
checkout's."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from helpers import REPO
from test_layout import modules


def typecheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("typecheck", REPO / ".ci" / "typecheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_link_tree_holds_every_module_at_its_installed_name(tmp_path: Path) -> None:
    script = typecheck()
    script.lay_out(tmp_path, script.package_dirs())
    for name, source in modules().items():
        place = tmp_path.joinpath(*name.split("."))
        laid = place / "__init__.py" if source.name == "__init__.py" else place.with_suffix(".py")
        assert laid.resolve() == source.resolve(), name
    # Nothing of the tree is written into the checkout: its links point out of the tree.
    assert not (REPO / "membench" / "exporter").exists()


def test_reported_paths_are_the_checkouts() -> None:
    script = typecheck()
    in_checkout = script.checkout_paths(script.package_dirs())
    error = ": error: Incompatible types  [assignment]\n"
    assert in_checkout("membench/exporter/server.py:1" + error) == "exporter/server.py:1" + error
    assert in_checkout("membench/workers/app.py:9" + error) == "workers/app.py:9" + error
    assert in_checkout("membench/cli/run.py:2" + error) == "membench/cli/run.py:2" + error
    note = "Found 1 error in membench/exporter/server.py\n"
    assert in_checkout(note) == note  # only a path that opens the line is mypy's location
