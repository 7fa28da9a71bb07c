"""Prometheus's configuration as package data: prometheus.yml, rules/, and their promtool tests.

Installed as `membench.prometheus`, so `membench stack up` finds it without a source checkout.
"""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
