"""celery-membench Grafana dashboards, built in code (installed as `membench.grafana`).

`generate` is the CLI; `panels` reads queries back out of the JSON (stdlib only, so importing
this package must not pull in grafana-foundation-sdk).
"""
