"""`python -m seedrepro` (from benchmarks/): the same as `python benchmarks/reproduce_seed.py`."""

import sys

from .cli import main

sys.exit(main())
