"""`python -m membench`: the same as the `membench` console script."""

from membench.cli.main import entry_point

entry_point()
