"""Reproduce the seed benchmark's published table, and explain every difference from measurements.

The entry script; the work is in the package seedrepro/ beside it (its docstring says how).
"""

from __future__ import annotations

import sys

from seedrepro.cli import main

if __name__ == "__main__":
    sys.exit(main())
