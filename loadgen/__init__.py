"""Drives the benchmark: the `membench` CLI, the one-shot runner and the scheduled loadgen."""
