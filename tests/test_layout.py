"""The layout holds: imports run one way (commands -> engines -> core), lazy ones included; every
module says its job in a docstring, and one past LONG_MODULE lines says why it is one topic."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
from helpers import REPO

# Installed package -> folder of the checkout (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "membench": "membench",
    "membench.exporter": "exporter",
    "membench.workers": "workers",
    "membench.loadgen": "loadgen",
    "membench.grafana": "grafana",
    "membench.prometheus": "prometheus",
}
# Lower tiers never import higher ones; rooms of one tier never import each other, but for the
# core's small modules (tier 0). README.md's layout section lists the same (a test compares).
TIERS = {
    "membench.settings": 0,
    "membench.stats": 0,
    "membench.jsonfile": 0,
    "membench.processes": 0,
    "membench.procfs": 0,
    "membench.targets": 0,
    "membench.cgroup": 0,
    "membench.urls": 0,
    "membench.units": 0,
    "membench.results": 0,  # the typed model of results.json, between every part
    "membench.durations": 0,
    "membench.files": 0,
    "membench.tempdirs": 0,
    "membench.descendants": 0,
    "membench.query": 4,
    "membench.exporter": 1,
    "membench.workers": 2,
    "membench.grafana": 2,
    "membench.prometheus": 2,
    "membench.prometheus.mixin": 1,  # the settings rules and dashboards share (stdlib only)
    "membench.broker": 3,
    "membench.run": 4,
    "membench.stack": 4,
    "membench.loadgen": 4,
    "membench.soak": 4.5,  # reads Prometheus (query), drives the stack: above those engines
    "membench.cli": 5,
    "membench.__main__": 6,  # `python -m membench`: the console script
    "membench.celery": 2,  # the public entry point of the instrument
    "membench": 6,  # the package's __init__: re-exports the public API (membench.celery), lazily
}
# Modules are split by topic, not by length; past this many lines the docstring says why the
# module is still one topic, so that a reviewer reads the reason rather than a count.
LONG_MODULE = 500


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = [p for p in path.relative_to(REPO / folder).with_suffix("").parts]
            name = ".".join([package, *(p for p in parts if p != "__init__")])
            found.setdefault(name, path)
    return found


def room(module: str) -> str:
    """The longest TIERS key that is `module` or a package holding it."""
    candidates = [k for k in TIERS if module == k or module.startswith(k + ".")]
    return max(candidates, key=len)


def readme_tiers() -> dict[str, float]:
    """The tiers README.md's layout section states, from its `<!-- tiers -->` block."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- tiers: ")[1].split("<!-- /tiers -->")[0]
    stated: dict[str, float] = {}
    tier = -1.0
    for line in block.splitlines():
        if line.startswith("tier "):
            tier = float(line.split()[1])
        for name in re.findall(r"\bmembench(?:\.\w+)*", line):
            stated[name] = tier
    return stated


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "membench" or n.startswith("membench.")}


def test_the_layout_has_its_rooms() -> None:
    found = modules()
    for expected in (
        "membench.cli.main",
        "membench.run.runner",
        "membench.stack.supervisor",
        "membench.loadgen.schedule",
        "membench.loadgen.scheduler",
        "membench.exporter.names",
    ):
        assert expected in found
    assert all(name.startswith("membench") for name in found)


def test_the_readme_states_the_tiers() -> None:
    """What a reader is told of the layout is what this test enforces."""
    assert readme_tiers() == {name: float(tier) for name, tier in TIERS.items()}


@pytest.mark.parametrize("module", sorted(modules()))
def test_every_module_has_its_tier(module: str) -> None:
    """A module in no room would fall to the package's own tier and escape the check."""
    assert room(module) != "membench" or module == "membench", f"{module}: add it to TIERS"


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_run_one_way(module: str) -> None:
    mine = room(module)
    for target in sorted(imported(modules()[module])):
        theirs = room(target)
        if theirs == mine or theirs == "membench":
            continue
        core_on_core = TIERS[mine] == TIERS[theirs] == 0
        assert core_on_core or TIERS[theirs] < TIERS[mine], (
            f"{module} ({mine}) imports {target} ({theirs})"
        )


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, at module level, in a function or under
    TYPE_CHECKING alike; `from package import module` is an edge to the module."""
    found = modules()
    graph: dict[str, set[str]] = {}
    for module, path in found.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    edges.add(
                        f"{node.module}.{alias.name}"
                        if f"{node.module}.{alias.name}" in found
                        else node.module
                    )
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[module] = {e for e in edges if e in found and e != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it (depth-first, from the sorted names)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                loop = [*path[path.index(target) :], target]
                if frozenset(loop) not in seen:
                    seen.add(frozenset(loop))
                    found.append(loop)
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return found


def test_no_import_cycle() -> None:
    """A cycle makes two modules one topic in two files, and the order they load in matters."""
    assert cycles(import_graph()) == []


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]


# Modules tested only end to end, through a test named after the behaviour, not the module.
UNMIRRORED = {
    # Whether a process outlives its membench is only observable with real processes killed.
    "membench.processes": "tests/test_faults_orphans.py and every test that starts a process",
    "membench.descendants": "tests/test_faults_orphans.py (a payload escaping its session)",
    "membench.tempdirs": "tests/test_faults_orphans.py (the next membench removes them)",
}


def has_logic(path: Path) -> bool:
    """A function or class at the top: a module of names only (names.py) has nothing to test."""
    body = ast.parse(path.read_text()).body
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in body)


def mirrored(module: str, tests: set[str]) -> bool:
    """The rule (README.md, Contributing): `<package>/<module>.py` is tested in
    tests/test_<module>.py, or in tests/test_<package>.py where the package is tested as a
    whole; either may be split by topic as test_<name>_<topic>.py."""
    parts = module.split(".")[1:]
    names = {parts[-1], "_".join(parts)} | ({parts[0]} if len(parts) > 1 else set())
    return any(t == f"test_{n}" or t.startswith(f"test_{n}_") for n in names for t in tests)


def unmirrored() -> list[str]:
    tests = {p.stem for p in (REPO / "tests").glob("test_*.py")}
    return [
        f"{module} ({path.relative_to(REPO)})"
        for module, path in sorted(modules().items())
        if module not in UNMIRRORED
        and module not in ("membench", "membench.__main__")
        and has_logic(path)
        and not mirrored(module, tests)
    ]


def test_tests_mirror_the_package() -> None:
    assert unmirrored() == []


def test_the_mirror_rule() -> None:
    assert mirrored("membench.procfs", {"test_procfs"})
    assert mirrored("membench.stack.restarts", {"test_stack_restarts"})
    assert mirrored("membench.soak.trend", {"test_soak_stats"})  # the package, by topic
    assert not mirrored("membench.procfs", {"test_proc", "test_cgroup"})
    assert not mirrored("membench.stack.restarts", {"test_restart", "test_soak"})


def test_an_exemption_names_a_module_that_exists() -> None:
    assert set(UNMIRRORED) <= set(modules())


def hand_written() -> list[Path]:
    files = [p for p in modules().values()]
    files += sorted((REPO / "benchmarks").rglob("*.py")) + sorted((REPO / "tests").glob("*.py"))
    return files


@pytest.mark.parametrize("path", hand_written(), ids=lambda p: str(p.relative_to(REPO)))
def test_each_module_says_its_job_and_a_long_one_why_it_is_one_topic(path: Path) -> None:
    text = path.read_text()
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{path.relative_to(REPO)}: no module docstring"
    lines = text.count("\n")
    assert lines <= LONG_MODULE or "one topic" in docstring, (
        f"{path.relative_to(REPO)}: {lines} lines; its docstring does not say why it is one topic"
    )


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def private_uses(path: Path) -> list[str]:
    """`_name`s of another of our modules that `path` imports or reads through a module alias."""
    tree = ast.parse(path.read_text())
    ours = ("membench", "generate")  # the package, and deploy/kubernetes/generate.py
    aliases: set[str] = set()
    uses: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ours):
            for alias in node.names:
                bound = alias.asname or alias.name
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                elif is_module(f"{node.module}.{alias.name}"):
                    aliases.add(bound)
        elif isinstance(node, ast.Import):
            aliases.update(
                (a.asname or a.name).partition(".")[0]
                for a in node.names
                if a.name.startswith(ours)
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            uses.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return uses


@pytest.mark.parametrize(
    "path",
    [*hand_written(), REPO / "deploy" / "kubernetes" / "generate.py"],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_no_private_name_of_another_module_is_used(path: Path) -> None:
    """A module's `_name` is its own: what another module needs is public and says so."""
    assert private_uses(path) == []


def test_a_private_use_is_found(tmp_path: Path) -> None:
    source = tmp_path / "user.py"
    source.write_text(
        "from membench.exporter import server\n"
        "from membench.run.worker import _hidden\n"
        "print(server._count, server.public)\n"
    )
    assert private_uses(source) == [
        "line 2: from membench.run.worker import _hidden",
        "line 3: server._count",
    ]
