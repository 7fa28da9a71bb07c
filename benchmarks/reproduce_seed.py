"""Reproduce the seed benchmark's published table and explain every difference from measurements:
the entry script, the work is in the package seedrepro/ beside it (its docstring says how)."""

import sys

from seedrepro.cli import main

if __name__ == "__main__":
    sys.exit(main())
