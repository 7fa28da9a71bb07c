"""What the exporter costs the worker it runs in, and how it answers under load, one topic with
a part per question (the parts share the workers, the scrapes and the command line).

`python benchmarks/exporter.py PART [flags]` (`PART --help` lists them). The parts, each with the
JSON it writes to docs/results/performance/ (`--output` to change):

- `overhead` (exporter_overhead): per pool, `--repetitions` fresh idle workers with the exporter and
  as many with MEMBENCH_EXPORTER=off, alternating; after `--settle` s and `--scrapes` scrapes of
  every exporter, RSS (status) and USS/PSS (smaps_rollup) of the main and child processes. The
  difference of the medians is the exporter's cost. Target: <= 1 MiB RSS per process.
- `soak` (exporter_soak): one idle worker per pool, every exporter scraped every `--interval` s
  for `--minutes`; per process, the least-squares RSS slope after the `--warmup` fraction and the
  series count. A control worker per pool (MEMBENCH_EXPORTER=off, never scraped) gives the slope
  an idle Celery worker has by itself. Target: slope <= 0 within noise, series constant.
- `scrape-cost` (scrape_cost): 1. per exporter of an idle worker, scraped as curl asks (text) and
  as Prometheus asks (OpenMetrics, gzip): CPU (utime + stime) over `--scrapes` back-to-back
  scrapes minus the CPU of an equally long idle window, per scrape, in `--repetitions` windows;
  2. CPU per call of the /proc readers on an idle worker and on this process holding `--big` MiB;
  3. gzip of the prefork main exposition at levels 1, 6 and 9. Target: <= 2 ms CPU per scrape.
- `latency` (scrape_latency): per scenario, a fresh worker runs `--repetitions` tasks of
  `--subtasks` x `--size` MB of ~1 KB str records (CPU work that never yields, and holds the GIL
  in a prefork child); the exporter of the process running it is scraped every `--pause` s, and
  scrapes that saw a subtask in progress count. Target: p99 <= 20 ms.
- `syscalls` (scrape_syscalls, needs strace): the system calls of the exporter thread per scrape
  (each may release the GIL), from each accept to the next, over `--scrapes` scrapes 0.3 s apart
  of an idle worker per pool; the scrape with the fewest is the scrape's own.
- `slow-clients` (slow_clients): a gevent_greenlets worker's main exporter, held by `--clients`
  slow clients of each kind (`idle`: send nothing; `trickle`: a byte every `--trickle-interval`
  s, never ending the headers; one the exporter closes is reopened at once) while `--scrapes`
  scrapes, `--pause` s apart, are timed. Target: every scrape answered within 1 s under 300.
"""

from __future__ import annotations

import argparse
import collections
import errno
import functools
import gzip
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _bench

from membench.exporter import names
from membench.procfs import (
    read_cpu_seconds,
    read_process_memory,
    read_smaps_rollup,
    read_status_memory,
    read_thread_count,
)
from membench.stats import percentile, slope
from membench.units import MIB


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    readings: dict[str, dict[str, list[dict[str, dict[str, int]]]]] = {}
    with _bench.workers() as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            readings[pool] = {"with": [], "without": []}
            for rep in range(args.repetitions):
                for variant, reading in readings[pool].items():
                    exported = variant == "with"
                    worker = ws.start(scenario) if exported else ws.start_unexported(scenario)
                    time.sleep(args.settle)
                    # An exporter is only worth its memory once it has answered.
                    for _ in range(args.scrapes if exported else 0):
                        for _role, address in _bench.exporters(worker).values():
                            _bench.scrape(address)
                    memory = {pid: read_process_memory(pid) for pid in worker.tree()}
                    kinds = ("rss", "uss", "pss")
                    roles = {pid: "main" if pid == worker.pid else "child" for pid in memory}
                    reading.append(
                        {
                            roles[p]: {k: getattr(m, k) or 0 for k in kinds}
                            for p, m in memory.items()
                        }
                    )
                    ws.stop(worker)
                print(f"{pool}: repetition {rep + 1}/{args.repetitions} done", flush=True)
    rows, results = [], {}
    for pool, by_variant in readings.items():
        for role in ["main", "child"] if pool == "prefork" else ["main"]:
            entry: dict[str, Any] = {}
            row: dict[str, Any] = {"process": f"{pool}/{role}"}
            for key in ("rss", "uss", "pss"):
                with_, without = ([r[role][key] for r in by_variant[v]] for v in by_variant)
                delta = statistics.median(with_) - statistics.median(without)
                entry[key] = {
                    "with_bytes": _bench.summary(with_),
                    "without_bytes": _bench.summary(without),
                    "delta_median_bytes": delta,
                }
                row[f"{key} with/without/delta"] = (
                    f"{statistics.median(with_) / MIB:.2f} / "
                    f"{statistics.median(without) / MIB:.2f} / {delta / MIB:+.2f}"
                )
            entry["met"] = entry["rss"]["delta_median_bytes"] <= MIB
            results[f"{pool}/{role}"] = entry
            rows.append(row | {"<= 1 MiB RSS": entry["met"]})
    _bench.print_table(f"idle worker memory, MiB, medians of {args.repetitions} workers", rows)
    return {"settle_s": args.settle, "scrapes": args.scrapes, "results": results}


def soak(args: argparse.Namespace) -> dict[str, Any]:
    processes: dict[int, dict[str, Any]] = {}
    complete = False
    with _bench.workers() as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            worker, control = ws.start(scenario), ws.start_unexported(scenario)
            addresses = {pid: address for pid, (_, address) in _bench.exporters(worker).items()}
            for pid in worker.tree() + control.tree():
                role = "main" if pid in (worker.pid, control.pid) else "child"
                name = f"{pool}/{role}" + ("" if pid in addresses else " (no exporter)")
                processes[pid] = {"name": name, "address": addresses.get(pid), "errors": 0}
                processes[pid] |= {"t_s": [], "rss": [], "series": []}
        t_start = next_tick = last_print = time.monotonic()
        try:
            while time.monotonic() < t_start + args.minutes * 60:
                for pid, proc in processes.items():
                    try:
                        text = _bench.scrape(proc["address"]) if proc["address"] else None
                        rss = read_status_memory(pid)[0]
                    except OSError:
                        proc["errors"] += 1
                        continue
                    proc["t_s"].append(time.monotonic() - t_start)
                    proc["rss"].append(rss)
                    if text is not None:
                        proc["series"].append(_bench.series_count(text))
                if time.monotonic() - last_print >= 60:
                    last_print = time.monotonic()
                    print(f"{(last_print - t_start) / 60:5.1f} min", flush=True)
                next_tick += args.interval
                time.sleep(max(0.0, next_tick - time.monotonic()))
            complete = True
        except KeyboardInterrupt:
            print("interrupted: stopping the workers, writing what was measured")
    for proc in processes.values():
        t, rss, series = proc.pop("t_s"), proc.pop("rss"), proc.pop("series")
        cut = t[-1] * args.warmup if t else 0.0
        kept = [(x, y) for x, y in zip(t, rss, strict=True) if x >= cut]
        # 0.0 where no slope fits (under two points, one instant).
        fitted = slope([x for x, _ in kept], [y for _, y in kept]) or 0.0
        proc |= {
            "scrapes": len(t),
            "rss_first_bytes": rss[0] if rss else None,
            "rss_last_bytes": rss[-1] if rss else None,
            "slope_kib_per_hour": round(fitted * 3600 / 1024, 3),
            "series": f"{min(series)}-{max(series)}" if series else None,
        }
    slopes = {p["name"]: p["slope_kib_per_hour"] for p in processes.values()}
    for proc in processes.values():
        control = slopes.get(proc["name"] + " (no exporter)")
        proc["minus_control_kib_per_hour"] = (
            None if control is None else round(proc["slope_kib_per_hour"] - control, 3)
        )
    _bench.print_table(
        f"exporter soak, {args.minutes} min, scrape every {args.interval} s (RSS in bytes)",
        [{k: v for k, v in p.items() if k != "address"} for p in processes.values()],
    )
    return {
        "complete": complete,
        **{"minutes": args.minutes, "interval_s": args.interval, "warmup_fraction": args.warmup},
        "processes": list(processes.values()),
    }


def cpu_ms(call: Callable[[], object], calls: int) -> float:
    c0 = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - c0) * 1000 / calls


def scrape_cpu_ms(
    pid: int, address: str, scrapes: int, headers: dict[str, str] | None
) -> tuple[float, float]:
    """(CPU ms per scrape net of what the process uses idle over an equally long window, that
    idle CPU in ms per second)."""
    c0, t0 = read_cpu_seconds(pid), time.monotonic()
    for _ in range(scrapes):
        _bench.scrape(address, headers=headers)
    c1, t1 = read_cpu_seconds(pid), time.monotonic()
    time.sleep(t1 - t0)
    c2, t2 = read_cpu_seconds(pid), time.monotonic()
    idle = (c2 - c1) * (t1 - t0) / (t2 - t1)
    return ((c1 - c0) - idle) * 1000 / scrapes, idle * 1000 / (t1 - t0)


def reader_costs(pid: int | str, calls: int, repetitions: int, where: str) -> dict[str, Any]:
    rss = read_status_memory(pid)[0]
    return {
        f"{reader.__name__}, {where} ({rss / MIB:.0f} MiB RSS)": _bench.summary(
            [cpu_ms(functools.partial(reader, pid), calls) for _ in range(repetitions)]
        )
        for reader in (read_status_memory, read_smaps_rollup, read_process_memory)
    }


def scrape_cost(args: argparse.Namespace) -> dict[str, Any]:
    scrapes: dict[str, Any] = {}
    reads: dict[str, Any] = {}
    with _bench.workers() as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            worker = ws.start(scenario)
            time.sleep(1.0)
            for pid, (role, address) in _bench.exporters(worker).items():
                _bench.scrape(address)  # the first scrape builds what later ones reuse
                for how, headers in (("text", None), ("prometheus", _bench.PROMETHEUS_HEADERS)):
                    windows = [
                        scrape_cpu_ms(pid, address, args.scrapes, headers)
                        for _ in range(args.repetitions)
                    ]
                    values = [net for net, _ in windows]
                    scrapes[f"scrape, {pool}/{role}, {how}"] = {
                        "cpu_ms_per_scrape": _bench.summary(values),
                        "idle_cpu_ms_per_s": _bench.summary([idle for _, idle in windows]),
                        "scrape_bytes": len(_bench.scrape(address, headers=headers)),
                        "met": statistics.median(values) <= 2.0,
                    }
            if pool == "prefork":
                exposition = _bench.scrape(_bench.exporters(worker)[worker.pid][1]).encode()
                reads |= reader_costs(worker.pid, args.calls, args.repetitions, "idle worker")
            ws.stop(worker)
    block = bytearray(args.big * MIB)
    block[::4096] = b"x" * len(range(0, len(block), 4096))  # every page resident
    reads |= reader_costs("self", max(50, args.calls // 10), args.repetitions, "this process")
    del block
    gzips: dict[str, Any] = {"body_bytes": len(exposition)}
    for level in (1, 6, 9):
        size = len(gzip.compress(exposition, compresslevel=level))
        compress = functools.partial(gzip.compress, exposition, compresslevel=level)
        values = [cpu_ms(compress, args.calls) for _ in range(args.repetitions)]
        gzips[f"level {level}"] = {"cpu_ms": _bench.summary(values), "bytes": size}
    rows = [{"what": k, "CPU ms": v["cpu_ms_per_scrape"]["median"]} for k, v in scrapes.items()]
    rows += [{"what": k, "CPU ms": v["median"]} for k, v in reads.items()]
    rows += [
        {
            "what": f"gzip {k}, {len(exposition)} -> {v['bytes']} bytes",
            "CPU ms": v["cpu_ms"]["median"],
        }
        for k, v in gzips.items()
        if k != "body_bytes"
    ]
    _bench.print_table(f"CPU ms, medians of {args.repetitions} windows (target: scrape <= 2)", rows)
    return {"scrapes": args.scrapes, "scrape": scrapes, "reads": reads, "gzip": gzips}


def latency(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    batch = {"subtasks": args.subtasks, "size_mb": args.size, "hold_s": 0, "workers": 1}
    in_progress = re.compile(rf"^{names.SUBTASKS_IN_PROGRESS}{{.*}} [1-9]", re.M)
    with _bench.workers() as ws:
        for scenario in args.scenarios.split(","):
            worker = ws.start(scenario)
            role = "child" if worker.scenario.pool == "prefork" else "main"
            (address,) = [a for r, a in _bench.exporters(worker).values() if r == role]
            reps = []
            for _ in range(args.repetitions):
                result, ms = ws.send_batch(worker, payload="records", **batch), []
                while not result.ready():
                    t0 = time.perf_counter()
                    if in_progress.search(_bench.scrape(address)):
                        ms.append((time.perf_counter() - t0) * 1000)
                    time.sleep(args.pause)
                assert result.get(timeout=120)["subtasks_done"] == args.subtasks
                reps.append({"scrapes": len(ms), "max_ms": max(ms)})
                reps[-1] |= {f"p{q}_ms": percentile(ms, q) for q in (50, 99)}
            ws.stop(worker)
            p99s = [r["p99_ms"] for r in reps]
            results[scenario] = {
                "role": role,
                "scrapes": sum(r["scrapes"] for r in reps),
                "p50_ms_median": statistics.median(r["p50_ms"] for r in reps),
                "p99_ms_median": statistics.median(p99s),
                "p99_ms_range": f"{min(p99s):.1f}-{max(p99s):.1f}",
                "max_ms": max(r["max_ms"] for r in reps),
                "met": statistics.median(p99s) <= 20.0,
                "repetitions": reps,
            }
            print(f"{scenario}: done", flush=True)
    _bench.print_table(
        f"/metrics latency (ms) under a CPU-bound subtask, medians of {args.repetitions} tasks",
        [{"scenario": s} | r for s, r in results.items()],
    )
    return {"subtasks": args.subtasks, "size_mb": args.size, "pause_s": args.pause} | {
        "results": results
    }


STRACE_LINE = re.compile(r"^(\d+) +(?:<\.\.\. )?([a-z_0-9]+)[( ]")


def count_syscalls(trace: str) -> list[dict[str, int]]:
    """Calls of the exporter thread per scrape: from each accept4 that returned to the next."""
    calls = [(m[1], m[2], line) for line in trace.splitlines() if (m := STRACE_LINE.match(line))]
    tid = next(t for t, name, _ in calls if name == "accept4")
    scrapes: list[collections.Counter[str]] = []
    for t, name, line in calls:
        if t != tid or (name == "accept4" and "unfinished" in line):
            continue
        if name == "accept4":  # an accept that returned
            scrapes.append(collections.Counter())
        if scrapes:
            scrapes[-1][name] += 1
    return [dict(c) for c in scrapes if c.get("sendto")]  # the last accept is still waiting


def syscalls(args: argparse.Namespace) -> dict[str, Any]:
    strace = shutil.which("strace")
    if strace is None:
        sys.exit("exporter.py syscalls: error: strace is not installed")
    results: dict[str, Any] = {}
    with _bench.workers() as ws:
        for pool, scenario in _bench.POOL_SCENARIOS.items():
            worker = ws.start(scenario)
            role = "child" if pool == "prefork" else "main"
            pid, address = next(
                (p, a) for p, (r, a) in _bench.exporters(worker).items() if r == role
            )
            _bench.scrape(address)  # the first scrape builds what later ones reuse
            out = ws.directory / f"{pool}.strace"
            tracer = subprocess.Popen(
                [strace, "-f", "-p", str(pid), "-o", str(out)], stderr=subprocess.DEVNULL
            )
            time.sleep(1.0)  # attached to every thread
            for _ in range(args.scrapes):
                _bench.scrape(address)
                time.sleep(0.3)
            tracer.terminate()
            tracer.wait()
            scrapes = count_syscalls(out.read_text())
            totals = [sum(c.values()) for c in scrapes]
            fewest = scrapes[totals.index(min(totals))]
            results[f"{pool}/{role}"] = {"totals": totals, "fewest": fewest, "scrapes": scrapes}
            ws.stop(worker)
    _bench.print_table(
        "system calls of the exporter thread for one scrape",
        [
            {"process": k, "calls per scrape": " ".join(map(str, r["totals"]))}
            | {"the fewest, by name": ", ".join(f"{n} {c}" for n, c in sorted(r["fewest"].items()))}
            for k, r in results.items()
        ],
    )
    return {"results": results}


SLOW_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: " + b"a" * 4000


class SlowClients(threading.Thread):
    """Holds `count` connections to `address` open, reopening any the server closes; with
    `trickle_s`, sends each a byte of a request that never ends every `trickle_s` seconds."""

    def __init__(self, address: str, count: int, trickle_s: float | None) -> None:
        super().__init__(daemon=True)
        host, port = address.rsplit(":", 1)
        self.target, self.count, self.trickle_s = (host, int(port)), count, trickle_s
        self.selector = selectors.DefaultSelector()
        self.sent: dict[socket.socket, int] = {}
        self.reopened = 0
        self.stopping = threading.Event()

    def open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        # Non-blocking: past the server's backlog a connect waits for the kernel to retry its SYN.
        sock.connect_ex(self.target)
        self.selector.register(sock, selectors.EVENT_READ)
        self.sent[sock] = 0

    def reopen(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        del self.sent[sock]
        sock.close()
        self.reopened += 1
        self.open()

    def connected(self) -> int:
        """How many of the connections the kernel has completed."""
        done = 0
        for sock in list(self.sent):
            try:
                sock.getpeername()
                done += 1
            except OSError:
                pass
        return done

    def run(self) -> None:
        for _ in range(self.count):
            self.open()
        next_byte = time.monotonic()
        while not self.stopping.is_set():
            wait = max(0.0, next_byte - time.monotonic()) if self.trickle_s else 0.1
            for key, _ in self.selector.select(wait):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if sock.recv(65536):
                        continue  # an answer (a 431 or a reply): the close follows
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                self.reopen(sock)
            if self.trickle_s and time.monotonic() >= next_byte:
                next_byte += self.trickle_s
                for sock, n in list(self.sent.items()):
                    try:
                        self.sent[sock] += sock.send(SLOW_REQUEST[n % len(SLOW_REQUEST) :][:1])
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.ENOTCONN):
                            self.reopen(sock)
        for sock in list(self.sent):
            sock.close()
        self.selector.close()


def held(pid: int) -> dict[str, int]:
    """A process's open descriptors and threads."""
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": read_thread_count(pid)}


def slow_clients(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {}
    with _bench.workers() as ws:
        worker = ws.start("gevent_greenlets")
        address = _bench.exporters(worker)[worker.pid][1]
        idle = held(worker.pid)
        for kind in args.kinds.split(","):
            for count in map(int, args.clients.split(",")):
                clients = SlowClients(
                    address, count, args.trickle_interval if kind == "trickle" else None
                )
                clients.start()
                try:
                    deadline = time.monotonic() + 5
                    while clients.connected() < count and time.monotonic() < deadline:
                        time.sleep(0.05)
                    connected, ms, timeouts = clients.connected(), [], 0
                    for _ in range(args.scrapes):
                        t0 = time.perf_counter()
                        try:
                            _bench.scrape(address, timeout=args.timeout)
                            ms.append((time.perf_counter() - t0) * 1000)
                        except OSError:  # URLError and socket timeouts both are
                            timeouts += 1
                        time.sleep(args.pause)
                    worker_held = held(worker.pid)
                finally:
                    clients.stopping.set()
                    clients.join(10)
                quantiles = {f"p{q}_ms": percentile(ms, q) if ms else None for q in (50, 99)}
                results.setdefault(kind, []).append(
                    {
                        "clients": count,
                        "connected_at_start": connected,
                        "reopened": clients.reopened,
                    }
                    | {"scrapes": args.scrapes, "answered": len(ms), "timeouts": timeouts}
                    | quantiles
                    | {"max_ms": max(ms, default=None)}
                    | {f"worker_{k}": v for k, v in worker_held.items()}
                    | {"met": timeouts == 0 and bool(ms) and max(ms) < 1000.0}
                )
                print(f"{kind} x {count}: done", flush=True)
    _bench.print_table(
        "/metrics latency (ms) of a gevent worker's exporter while slow clients hold it",
        [{"kind": kind} | r for kind, levels in results.items() for r in levels],
    )
    return {
        **{"scrapes": args.scrapes, "pause_s": args.pause, "timeout_s": args.timeout},
        **{"trickle_interval_s": args.trickle_interval, "worker_idle": idle, "results": results},
    }


# part -> its function, its JSON's stem and its flags (`_bench.add_flags`)
PARTS: dict[str, tuple[Callable[[argparse.Namespace], dict[str, Any]], str, str]] = {
    "overhead": (overhead, "exporter_overhead", "repetitions=5 settle=2.0 scrapes=3"),
    "soak": (soak, "exporter_soak", "minutes=30.0 interval=1.0 warmup=0.1"),
    "scrape-cost": (scrape_cost, "scrape_cost", "repetitions=5 scrapes=500 calls=2000 big=1024"),
    "latency": (
        latency,
        "scrape_latency",
        "repetitions=5 subtasks=2 size=150.0 pause=0.02 "
        "scenarios=gevent_greenlets,gevent_threads,prefork_sequential,prefork_threads",
    ),
    "syscalls": (syscalls, "scrape_syscalls", "scrapes=5"),
    "slow-clients": (
        slow_clients,
        "slow_clients",
        "clients=0,100,300 kinds=idle,trickle scrapes=50 pause=0.06 timeout=5.0 "
        "trickle-interval=0.1",
    ),
}


def main(argv: list[str]) -> int:
    parser = _bench.parser(__doc__)
    parts = parser.add_subparsers(dest="part", required=True)
    for part, (_, stem, spec) in PARTS.items():
        sub = parts.add_parser(part, help=f"writes {stem}.json", allow_abbrev=False)
        sub.add_argument("--output", type=Path, default=argparse.SUPPRESS)
        _bench.add_flags(sub, spec)
    args = parser.parse_args(argv)
    run, stem, _ = PARTS[args.part]
    fields = run(args)
    _bench.save(stem, argv, args.output, **fields)
    return 0 if fields.get("complete", True) else 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
