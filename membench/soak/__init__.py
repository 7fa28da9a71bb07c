"""Soak tests as a product: `membench soak` over the local stack, or over any Prometheus that
scrapes the instrument, and a leak verdict (growth per worker process with its uncertainty, runs
lost, OOM kills) a pipeline can gate a release on."""

from membench.soak.runner import run_local, run_remote

__all__ = ["run_local", "run_remote"]
