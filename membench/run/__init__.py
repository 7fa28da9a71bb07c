"""`membench run`'s engine: a worker per scenario, sampled from outside; results, tables, plots."""
