"""Alertmanager's configuration: one route to the `membench` receiver, grouped per alert,
namespace and job, and the inhibition that keeps a target-down warning quiet while the same
target's process is reported absent.

Plain data (stdlib only, written as JSON, which is YAML): `membench stack up` writes it with a
webhook from MEMBENCH_ALERT_WEBHOOK_URL, the end-to-end test with its own, and
prometheus/generate.py commits the default as prometheus/alertmanager.yml for compose.
"""

from __future__ import annotations

from typing import Any

from membench.prometheus import mixin

RECEIVER = "membench"
GROUP_BY = ["alertname", "namespace", "job"]


def config(
    webhook_url: str | None = None,
    *,
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
) -> dict[str, Any]:
    """The configuration; without `webhook_url` the receiver delivers nowhere and the alerts
    are only in Alertmanager's UI and API (add your Slack, PagerDuty, email... under it)."""
    receiver: dict[str, Any] = {"name": RECEIVER}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {
            "receiver": RECEIVER,
            "group_by": GROUP_BY,
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [receiver],
        "inhibit_rules": [
            {
                # A process gone (critical) explains its target down (warning): one page.
                "source_matchers": [f"alertname={mixin.WORKER_ABSENT}"],
                "target_matchers": [f"alertname={mixin.WORKER_TARGET_DOWN}"],
                "equal": ["namespace", "job", "instance"],
            }
        ],
    }
