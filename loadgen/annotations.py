"""Grafana annotations: one per finished loadgen run, so dashboards show when each run happened."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from membench.files import read_bounded
from membench.units import MIB

log = logging.getLogger("membench.loadgen")

# Dashboards show annotations carrying this tag (grafana/generate.py's annotation query).
ANNOTATION_TAG = "membench"


@dataclass
class GrafanaAnnotator:
    """Posts one Grafana annotation per finished run; failures are logged, never fatal."""

    url: str
    token: str
    timeout_s: float = 2.0
    _failing: bool = field(default=False, repr=False)

    def post(self, scenario: str, outcome: str, start: float, end: float, text: str) -> bool:
        import urllib.request  # only when annotating: keeps `membench worker` start-up lean

        body = {
            "time": int(start * 1000),
            "timeEnd": int(end * 1000),
            "tags": [ANNOTATION_TAG, scenario, outcome],
            "text": text,
        }
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/api/annotations",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                read_bounded(response, MIB, self.timeout_s)  # Grafana answers a few bytes
        except (OSError, ValueError) as exc:  # UnreadableFile is a ValueError
            # One warning per outage, not one per run for hours.
            if not self._failing:
                log.warning("grafana annotation to %s failed: %s", self.url, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("grafana annotations to %s work again", self.url)
        self._failing = False
        return True
