"""Type-check the package `membench` as it is installed: mypy over a link tree of the checkout.

pyproject.toml's package-dir installs the top-level folders (exporter/, workers/, ...) as
membench.exporter and its siblings; mypy reads folders, not that mapping, nor the editable
install's import hook. So build/typecheck/src/ lays the package out as installed, in symlinks
to the checkout, mypy runs there with pyproject.toml's [tool.mypy], and the paths it reports
are turned back into the checkout's. Arguments are passed on to mypy.

Usage, from anywhere: python .ci/typecheck.py [mypy options]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "build" / "typecheck"  # /build/ is in .gitignore
TREE = WORK / "src"


def package_dirs() -> dict[str, str]:
    """Installed package -> folder of the checkout, as pyproject.toml's package-dir says."""
    with open(REPO / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["tool"]["setuptools"]["package-dir"])


def lay_out(tree: Path, dirs: dict[str, str]) -> None:
    """Symlinks under `tree` that place each folder where its package is installed. A package
    holding another of the mapping is a real folder of links to its entries, so that the nested
    one's link lands beside them rather than inside the checkout."""
    shutil.rmtree(tree, ignore_errors=True)
    for package, folder in sorted(dirs.items()):
        place = tree.joinpath(*package.split("."))
        source = REPO / folder
        if any(other.startswith(package + ".") for other in dirs):
            place.mkdir(parents=True)
            for entry in sorted(source.iterdir()):
                if entry.name != "__pycache__" and not (place / entry.name).exists():
                    (place / entry.name).symlink_to(entry)
        else:
            place.parent.mkdir(parents=True, exist_ok=True)
            place.symlink_to(source, target_is_directory=True)


def checkout_paths(dirs: dict[str, str]) -> Callable[[str], str]:
    """A line of mypy's output with the path it starts with (membench/exporter/server.py) turned
    into the checkout's (exporter/server.py)."""
    folder_of = {p.replace(".", "/") + "/": f + "/" for p, f in dirs.items()}
    prefixes = sorted(folder_of, key=len, reverse=True)
    pattern = re.compile("^(" + "|".join(map(re.escape, prefixes)) + ")")
    return lambda line: pattern.sub(lambda m: folder_of[m[1]], line)


def main(argv: list[str]) -> int:
    dirs = package_dirs()
    lay_out(TREE, dirs)
    in_checkout = checkout_paths(dirs)
    roots = sorted({p.split(".")[0] for p in dirs})
    command = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")]
    command += ["--cache-dir", str(WORK / "cache")]
    command += [arg for root in roots for arg in ("-p", root)] + argv
    with subprocess.Popen(
        command, cwd=TREE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as mypy:
        assert mypy.stdout is not None
        for line in mypy.stdout:
            sys.stdout.write(in_checkout(line))
    return mypy.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
