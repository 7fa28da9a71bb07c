"""Reproduce the seed benchmark's published table, and compute the terms of every difference.

Run it as `python benchmarks/reproduce_seed.py [--output DIR] [--runs N] [--skip-run]`:

1. Runs the seed's use case (its four approaches, 1 worker process, 40 threads/greenlets,
   200 subtasks of 3 MB, 0.5 s each) with `membench run ... --malloc-trim`.
2. Runs an explanation matrix on the concurrent approaches plus the two single-process
   scenarios (solo and threads pools): allocator (glibc, MALLOC_ARENA_MAX=2, jemalloc) x payload
   (one 3 MB buffer per subtask, or ~1 KiB str records).
3. Runs prefork-threads, solo-threads and gevent-greenlets (control) with MALLOC_ARENA_MAX=64 in
   the workers' environment: one glibc arena per thread, as a machine with 8+ cores allows
   (the default limit is 8 x cores; membench has no flag for it, so the variable is recorded
   in OUT/arenas/environment.json).
3b. (`numpy` step, seedmethod.py) Runs the seed's own subtask and method: `membench run --payload
   numpy --reuse-worker` at --concurrency 1 and 2, and the seed driver's idle RSS; the JSON goes
   straight into docs/results/seed-reproduction/ (numpy-c1.json, numpy-c2.json, driver-rss.json).
4. Fills the tables of docs/results/seed-reproduction.md from the JSON (the seed's table is
   parsed from its README, vendored as seed-README.md), copies the raw results into
   docs/results/seed-reproduction/, writes summary.json there and prints a short table. The
   page's narrative is written by hand; every number it quotes names the JSON figure it came
   from, and a quote the figures do not give is reported (page.py), so it cannot drift.

`--skip-run` regenerates the report from the JSON already in `--output`; `--render-only [DIR]`
re-renders it from the copies saved in docs/results/seed-reproduction/ (or DIR) without running
or copying anything; `--steps` runs only some steps. The full run takes about 17 minutes and is
timing-sensitive: run it alone, e.g. under the shared lock::

    flock /tmp/membench-test.lock python benchmarks/reproduce_seed.py --output /tmp/seedrepro

Modules: cli (flags, running the steps), seedmethod (the seed's own method and its figures),
collect (reading the JSON), decompose (the arithmetic), tables, seedtables and blocks (the
generated Markdown), page (filling the page, checking its quoted numbers), build (the pipeline,
summary.json, render-only). Standard library only, plus the installed `membench` (its command,
and membench.jsonfile).
"""
