"""Soak test: run `membench stack up` on a compressed schedule and measure growth over time.

Usage::

    python benchmarks/soak.py --minutes 30 --output docs/results/soak.json
    python benchmarks/soak.py --minutes 60 --faults --output docs/results/soak-faults.json

Starts `membench stack up` (needs the `prometheus` binary on PATH) in a temporary directory with
a schedule it writes: all four scenarios, small tasks, fired every few seconds. It polls the
stack's Prometheus HTTP API every `--interval` seconds, then stops the stack with SIGTERM to the
`stack up` process, checks that every pid listed in stack.json is gone, prints a table and writes
JSON. Ctrl-C stops the stack too (and writes what was measured, with "complete": false).

Figures (details in docs/soak.md):

- runs per scenario: fired/success/failure/timeout (membench_loadgen_runs_total) and skipped
  (membench_loadgen_skipped_total), the counters' values at the last poll;
- idle-baseline growth per approach: least-squares slope, in MB/hour, of the polled tree RSS
  floor over 5 min (each live process's floor, summed: _soak_figures.BASELINE_QUERY), computed
  here because the rules' 15 min window is long next to a 30 min soak;
- main-process RSS (membench_process_rss_bytes{role="main"}) first vs last poll per scenario;
- Prometheus series count count({__name__=~"membench_.*"}) at the first and last poll;
- the machine;
- with --faults (_soak_faults.py, _soak_runs.py): a fault every --fault-every seconds, rotating
  (SIGKILL a prefork child mid-task, SIGKILL a gevent worker, restart redis-server, restart
  Prometheus, SIGSTOP a worker 30 s); per fault the runs it hit, how each was counted and the
  recovery time; firings = success + failure + timeout + skipped per scenario from the loadgen's
  log and counters; the series count over time; baseline slopes within fault-free segments.

Standard library only, plus the installed `membench`: its stack command, and membench.stats,
membench.processes and membench.jsonfile (the figures are in _soak_figures.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import git_state, soak_machine
from _soak_faults import FAULT_MAX_S, FAULTS_BY_NAME, Injector, as_dicts
from _soak_figures import BASELINE_QUERY, SCENARIOS, summarise, table
from _soak_runs import all_accounted_for, faults_document

from membench.jsonfile import write_json_atomic
from membench.processes import leave_hung_up_terminal, pid_alive, same_process
from membench.query.client import Prometheus, PrometheusError

SCHEDULE = """\
# Written by benchmarks/soak.py: a compressed soak schedule (small tasks, short period).
[defaults]
subtasks = {subtasks}
size_mb = {size_mb}
hold_s = {hold_s}
workers = {workers}
payload = "bytes"
period_s = {period_s}
jitter_s = {jitter_s}
deadline_s = {deadline_s}

[scenarios.prefork_threads]

[scenarios.prefork_sequential]

[scenarios.gevent_threads]

[scenarios.gevent_greenlets]
"""
# A run whose task is lost (its worker killed, its result lost with redis-server) is counted a
# timeout after this long, not after the 64 s derived from the task, and the scenario, which
# skips while a run is in flight, fires again: the runs take <= 1.7 s, so 20 s is generous.
DEADLINE_S = 20.0
QUERIES = {
    "baseline_min5m": BASELINE_QUERY,
    "baseline_min15m_rule": "scenario:membench_tree_rss_bytes:min15m",
    "main_rss": 'membench_process_rss_bytes{role="main"}',
    "tree_rss": "scenario:membench_tree_rss_bytes:sum",
    "runs": "sum by (scenario, outcome) (membench_loadgen_runs_total)",
    "skipped": "sum by (scenario) (membench_loadgen_skipped_total)",
    "series": 'count({__name__=~"membench_.*"})',
}


class SoakError(Exception):
    """The soak cannot go on; the message says why in one line."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP (a closed terminal) to this script."""


def _on_signal(signum: int, frame: Any) -> None:
    if signum == signal.SIGHUP:
        leave_hung_up_terminal()  # soak.json must not die on a print to a closed terminal
    raise Interrupted(signal.Signals(signum).name)


def poll(prometheus_url: str, started: float) -> dict[str, Any]:
    """One poll: every query of QUERIES, reduced to plain dicts keyed by scenario."""
    now = time.time()
    client = Prometheus(prometheus_url)
    raw = {
        name: [
            {"labels": item["metric"], "value": float(item["value"][1])}
            for item in client.query(promql)
        ]
        for name, promql in QUERIES.items()
    }
    by_scenario = {
        name: {item["labels"].get("scenario", ""): item["value"] for item in raw[name]}
        for name in ("baseline_min5m", "baseline_min15m_rule", "main_rss", "tree_rss", "skipped")
    }
    runs: dict[str, dict[str, float]] = {}
    for item in raw["runs"]:
        runs.setdefault(item["labels"]["scenario"], {})[item["labels"]["outcome"]] = item["value"]
    return {
        "t": round(now - started, 3),
        "time": now,
        **by_scenario,
        "runs": runs,
        "series": raw["series"][0]["value"] if raw["series"] else None,
    }


def stop_stack(
    proc: subprocess.Popen[bytes], state: dict[str, Any] | None, signalled: list[dict[str, Any]]
) -> dict[str, Any]:
    """SIGTERM the `stack up` process, wait for it, then check every pid of stack.json is gone,
    and every pid a fault signalled (their replacements are in stack.json)."""
    began = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    pids: dict[str, int] = {}
    if state:
        pids["stack-up"] = int(state["pid"])
        pids.update({name: int(s["pid"]) for name, s in state.get("services", {}).items()})

    def alive() -> dict[str, int]:
        found = {name: pid for name, pid in pids.items() if pid_alive(pid)}
        # The processes faults signalled, by identity: their pids may name others by now.
        found.update({f"signalled-{i['pid']}": i["pid"] for i in signalled if same_process(i)})
        return found

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    return {
        "stack_up_exit_code": proc.returncode,
        "stop_seconds": round(time.monotonic() - began, 2),
        "pids_checked": {**pids, **{f"signalled-{i['pid']}": i["pid"] for i in signalled}},
        "pids_still_alive": alive(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    parser.add_argument("--output", type=Path, default=Path("soak.json"), help="JSON file")
    parser.add_argument("--interval", type=float, default=30.0, help="poll every S seconds")
    parser.add_argument("--period", type=float, default=6.0, help="schedule period_s")
    parser.add_argument("--jitter", type=float, default=1.0, help="schedule jitter_s")
    parser.add_argument("--subtasks", type=int, default=8)
    parser.add_argument("--size-mb", type=float, default=4.0)
    parser.add_argument("--hold-s", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keep-dir", action="store_true", help="keep the stack dir and logs")
    parser.add_argument("--faults", action="store_true", help="inject a fault every period")
    parser.add_argument("--fault-every", type=float, default=600.0, help="seconds between faults")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.fault_every <= 0:
        parser.error("--minutes, --interval and --fault-every must be > 0")
    if args.faults and args.minutes * 60 < 1.5 * args.fault_every:
        parser.error("--faults: --minutes must cover 1.5 x --fault-every (one fault + recovery)")
    if shutil.which("prometheus") is None:
        print(
            "soak: error: the `prometheus` binary is not on PATH; the soak reads every figure "
            "from it (apt-get install --no-install-recommends prometheus)",
            file=sys.stderr,
        )
        return 2

    directory = Path(tempfile.mkdtemp(prefix="membench-soak-"))
    stack_dir = directory / "stack"
    schedule_params = {
        "subtasks": args.subtasks,
        "size_mb": args.size_mb,
        "hold_s": args.hold_s,
        "workers": args.workers,
        "period_s": args.period,
        "jitter_s": args.jitter,
        "deadline_s": DEADLINE_S,
    }
    schedule = directory / "schedule.toml"
    schedule.write_text(SCHEDULE.format(**schedule_params))
    command = [sys.executable, "-m", "membench", "stack", "up"]
    command += ["--dir", str(stack_dir), "--schedule", str(schedule)]
    stack_log = directory / "stack-up.log"
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    info = soak_machine()
    git_info = git_state()
    print(f"soak: starting the stack in {stack_dir} (log {stack_log})", file=sys.stderr)
    with stack_log.open("wb") as log:
        # Own session: a terminal Ctrl-C reaches this script only, which then stops the stack.
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    state: dict[str, Any] | None = None
    polls: list[dict[str, Any]] = []
    complete = False
    error: str | None = None
    started = time.time()
    stop_info: dict[str, Any] = {}
    injector: Injector | None = None
    try:
        deadline = time.monotonic() + 180
        state_file = stack_dir / "stack.json"
        while not state_file.exists():
            if proc.poll() is not None:
                tail = stack_log.read_text(errors="replace")[-2000:]
                raise SoakError(f"`membench stack up` exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise SoakError(f"no {state_file} after 180 s; see {stack_log}")
            time.sleep(0.5)
        state = json.loads(state_file.read_text())
        prometheus_url = state.get("prometheus_url")
        if not prometheus_url:
            raise SoakError("stack.json has no prometheus_url: Prometheus did not start")
        print(f"soak: stack up, Prometheus at {prometheus_url}", file=sys.stderr)
        # Wait until Prometheus has scraped every worker's main process and the rules ran once.
        deadline = time.monotonic() + 120
        while True:
            try:
                first = poll(prometheus_url, time.time())
                if all(s in first["main_rss"] and s in first["baseline_min5m"] for s in SCENARIOS):
                    break
            except PrometheusError:
                pass
            if time.monotonic() > deadline:
                raise SoakError(f"Prometheus at {prometheus_url} has no data for every scenario")
            time.sleep(2)
        started = time.time()
        end = started + args.minutes * 60
        next_poll = started
        if args.faults:
            injector = Injector(stack_dir, started, args.fault_every, end)
            injector.start()
        while True:
            if proc.poll() is not None:
                raise SoakError(
                    f"`membench stack up` exited early ({proc.returncode}); see {stack_log}"
                )
            now = time.time()
            if now >= next_poll or now >= end:
                try:
                    polls.append(poll(prometheus_url, started))
                except PrometheusError as exc:  # e.g. Prometheus restarting: said, kept
                    polls.append({"t": round(now - started, 3), "time": now, "error": str(exc)})
                p = polls[-1]
                done = sum(sum(r.values()) for r in p.get("runs", {}).values())
                print(
                    f"soak: t={p['t']:7.0f}s series={p.get('series')} runs={done:.0f}"
                    + (f" (poll failed: {p['error']})" if "error" in p else ""),
                    file=sys.stderr,
                    flush=True,
                )
                next_poll += args.interval
                if now >= end:
                    break
            time.sleep(max(0.0, min(next_poll, end) - time.time()))
        complete = True
    except Interrupted as exc:
        error = f"interrupted by {exc}"
        print(f"soak: {error}: stopping the stack", file=sys.stderr)
    except SoakError as exc:
        error = str(exc)
        print(f"soak: error: {error}", file=sys.stderr)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if injector is not None:
            if complete:  # a fault still in progress finishes, its recovery watched
                injector.join(timeout=FAULT_MAX_S)
            injector.stopping.set()  # a SIGSTOPped worker gets its SIGCONT first
            injector.join(timeout=60)
        with contextlib.suppress(OSError, ValueError):  # today's pids: restarts changed them
            state = json.loads((stack_dir / "stack.json").read_text())
        print("soak: stopping the stack (SIGTERM to `stack up`)", file=sys.stderr, flush=True)
        signalled = [i for f in injector.faults for i in f.identities] if injector else []
        stop_info = stop_stack(proc, state, signalled)
    loadgen_summary = ""
    loadgen_log = stack_dir / "logs" / "loadgen.log"
    if loadgen_log.exists():
        text = loadgen_log.read_text(errors="replace")
        start = text.rfind("scenario ")
        loadgen_summary = text[start:].strip() if start >= 0 else ""

    skip_s = 300.0 if args.minutes >= 15 else 0.0
    faults = as_dicts(injector.faults) if injector else []
    cuts: dict[str, list[float]] = {}
    for fault in faults:
        if FAULTS_BY_NAME[fault["kind"]].replaces_process:
            cuts.setdefault(fault["scenario"], []).append(fault["at"] - started)
    summary = summarise(polls, skip_s, cuts)
    report = table(summary, polls, args.minutes)
    faults_report: dict[str, Any] | None = None
    if injector is not None:
        log_text = loadgen_log.read_text(errors="replace") if loadgen_log.exists() else ""
        faults_report, text = faults_document(faults, polls, log_text, loadgen_summary, started)
        report += "\n" + text
        faults_report.update(every_s=args.fault_every, injector_error=injector.error)
        faults_report["restarts"] = (state or {}).get("restarts", [])
    print(report)
    if stop_info["pids_still_alive"]:
        print(f"soak: WARNING: still alive after stop: {stop_info['pids_still_alive']}")
    else:
        print(
            f"soak: stack stopped in {stop_info['stop_seconds']} s; all "
            f"{len(stop_info['pids_checked'])} pids of stack.json are gone"
        )
    result = {
        "schema": "membench-soak/1",
        "complete": complete,
        "error": error,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "minutes_requested": args.minutes,
        "minutes_polled": polls[-1]["t"] / 60 if polls else 0,
        "poll_interval_s": args.interval,
        "started_at": started,
        "schedule": schedule_params,
        "stack_command": command,
        "machine": info,
        "git": git_info,
        "series_count": {
            "start": polls[0]["series"] if polls else None,
            "end": polls[-1]["series"] if polls else None,
        },
        "scenarios": summary,
        "stop": stop_info,
        "loadgen_summary": loadgen_summary,
        "faults": faults_report,
        "table": report,
        "polls": polls,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, result)
    print(f"soak: wrote {args.output}", file=sys.stderr)
    if args.keep_dir:
        print(f"soak: kept {directory}", file=sys.stderr)
    else:
        shutil.rmtree(directory, ignore_errors=True)
    if error and error.startswith("interrupted"):
        return 130
    lost = faults_report is not None and (
        bool(faults_report["injector_error"]) or not all_accounted_for(faults_report)
    )
    if lost:
        print("soak: a fault was not recovered from, or a run is unaccounted for", file=sys.stderr)
    return 0 if complete and not stop_info["pids_still_alive"] and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
