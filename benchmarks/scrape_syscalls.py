"""System calls one scrape makes in the exporter thread (each may release the GIL).

Usage::

    python benchmarks/scrape_syscalls.py

Needs `strace` (Debian: apt-get install strace) and permission to trace a child process. Starts
an idle worker per pool, attaches `strace -f` to the exporting process (gevent: main; prefork:
the child), scrapes it once, and counts the system calls of the thread that accepted the
connection, from each accept to the next, by name. While a CPU-bound subtask
holds the GIL, each GIL-releasing call can cost the exporter up to the switch interval. Traces
`--scrapes` scrapes 0.3 s apart: a scrape that met other activity of the process shows futex
calls (the GIL changing hands) and more; the fewest is the scrape's own.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from typing import Any

import _bench

LINE = re.compile(r"^(\d+) +(?:<\.\.\. )?([a-z_0-9]+)[( ]")


def count(trace: str) -> list[dict[str, int]]:
    """Calls of the exporter thread per scrape: from each accept4 that returned to the next."""
    lines = trace.splitlines()
    tid = next(m.group(1) for line in lines if (m := LINE.match(line)) and "accept4" in line)
    scrapes: list[collections.Counter[str]] = []
    for line in lines:
        m = LINE.match(line)
        if not m or m.group(1) != tid:
            continue
        name = m.group(2)
        if name == "accept4" and "unfinished" not in line:  # an accept that returned
            scrapes.append(collections.Counter())
        if scrapes and not (name == "accept4" and "unfinished" in line):
            scrapes[-1][name] += 1
    return [dict(c) for c in scrapes if c.get("sendto")]  # the last accept is still waiting


def main(argv: list[str]) -> int:
    script = _bench.Script("scrape_syscalls", __doc__)
    script.add_argument("--scrapes", type=int, default=5)
    args = script.parse(argv)
    strace = _bench.which("strace", "strace is not installed")
    if strace is None:
        return 2
    results: dict[str, Any] = {}
    rows = []
    with _bench.broker() as (url, app), _bench.workdir() as wd, _bench.Workers(url, app, wd) as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            worker = ws.start(scenario)
            role = "child" if pool == "prefork" else "main"
            pid, address = next(
                (p, a) for p, (r, a) in _bench.exporter_addresses(worker).items() if r == role
            )
            _bench.scrape(address)  # the first scrape builds what later ones reuse
            out = wd / f"{pool}.strace"
            tracer = subprocess.Popen(
                [strace, "-f", "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL
            )
            time.sleep(1.0)  # attached to every thread
            for _ in range(args.scrapes):
                _bench.scrape(address)
                time.sleep(0.3)
            tracer.terminate()
            tracer.wait()
            scrapes = count(out.read_text())
            totals = [sum(c.values()) for c in scrapes]
            fewest = scrapes[totals.index(min(totals))]
            results[f"{pool}/{role}"] = {"totals": totals, "fewest": fewest, "scrapes": scrapes}
            rows.append(
                [
                    f"{pool}/{role}",
                    " ".join(map(str, totals)),
                    ", ".join(f"{k} {v}" for k, v in sorted(fewest.items())),
                ]
            )
            ws.stop(worker)
    print("\nsystem calls of the exporter thread for one scrape")
    _bench.print_table(["process", "calls per scrape", "by name (the scrape with fewest)"], rows)
    return script.save(results=results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
