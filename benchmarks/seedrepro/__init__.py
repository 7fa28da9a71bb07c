"""Reproduce the seed benchmark's published table, and compute the terms of every difference.

`python benchmarks/reproduce_seed.py` runs its steps with `membench run`: `seed` (the seed's use
case, its four approaches), `matrix` (allocator x payload over the concurrent and one-process
scenarios), `arenas` (MALLOC_ARENA_MAX=64, one glibc arena per thread) and `numpy` (the seed's own
subtask and method, seedmethod.py). It copies the JSON into docs/results/seed-reproduction/,
writes summary.json there and fills the tables of docs/results/seed-reproduction.md, whose
narrative is written by hand: every number it quotes names its JSON figure, and page.py reports a
quote the figures do not give. `--render-only` re-renders the page from the saved JSON.

Modules: cli (flags, the steps, the pipeline), collect (reading the JSON, the arithmetic),
seedmethod (the seed's own method), tables (the generated Markdown), page (filling the page,
checking its quotes), common (what they share).
"""
