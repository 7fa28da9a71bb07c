"""Hosts on this one machine: Linux network namespaces, each with its own address on a bridge.

The bridge lives in a namespace of its own and every veth pair is created straight into the
namespaces it joins, so nothing appears in the machine's own network. Every name carries this
process's pid (two runs never collide), and a `Network` removes every namespace, link and
process it made when its `with` block ends, failed or not; what a SIGKILLed run left (its
processes die with it, its namespaces would not) the next `Network` removes. Processes are
started with `ip netns exec`, as a user would, plus `unshare --uts` so that each host has its
own hostname.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from membench.processes import pid_alive, spawn, wait_for

ETC_NETNS = Path("/etc/netns")  # `ip netns exec NAME` bind-mounts /etc/netns/NAME/* over /etc
PREFIX = "membench-net"  # a Network's names are PREFIX-<pid>-<host>
# Fetch a URL from inside a namespace: the body on stdout, exit 1 if it cannot be had.
FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as reply:\n"
    "        sys.stdout.buffer.write(reply.read())\n"
    "except OSError as exc:\n"
    "    sys.exit(f'{sys.argv[1]}: {exc}')\n"
)


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _ip_ok(*args: str) -> None:
    done = ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {' '.join(done.stderr.split())}")


def why_no_namespaces(*commands: str) -> str | None:
    """Why network namespaces cannot be made here (the skip reason), or None if they can;
    `commands`: what else the caller runs (e.g. unshare, ss)."""
    for binary in ("ip", *commands):
        if shutil.which(binary) is None:
            return f"no `{binary}` command"
    probe = f"membench-probe-{os.getpid()}"
    added = ip("netns", "add", probe)
    if added.returncode != 0:
        return f"`ip netns add` failed: {' '.join(added.stderr.split())}"
    ip("netns", "delete", probe)
    return None


@dataclass
class Namespace:
    """One named network namespace; `delete` kills what runs in it, by pid, and removes it."""

    name: str
    etc_files: dict[str, str] = field(default_factory=dict)  # /etc/<file> inside it
    inode: int = 0
    made_etc_netns: bool = False

    def create(self) -> None:
        _ip_ok("netns", "add", self.name)
        self.inode = os.stat(f"/run/netns/{self.name}").st_ino
        if self.etc_files:
            self.made_etc_netns = not ETC_NETNS.exists()
            directory = ETC_NETNS / self.name
            directory.mkdir(parents=True)
            for name, text in self.etc_files.items():
                (directory / name).write_text(text)

    def exec_argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def pids(self) -> list[int]:
        return [int(pid) for pid in ip("netns", "pids", self.name).stdout.split()]

    def kill_all(self, timeout: float = 15) -> list[int]:
        """SIGKILL every process in the namespace, by pid; return once each is gone."""
        killed = self.pids()
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(pid) for pid in killed), timeout, what="kill")
        return killed

    def delete(self) -> list[int]:
        """Kill its processes, remove it (and so its end of every veth); the pids killed."""
        killed = self.kill_all() if Path(f"/run/netns/{self.name}").exists() else []
        ip("netns", "delete", self.name)
        shutil.rmtree(ETC_NETNS / self.name, ignore_errors=True)
        if self.made_etc_netns:
            with contextlib.suppress(OSError):  # not empty: another run's files are there
                ETC_NETNS.rmdir()
        return killed

    def processes_inside(self) -> list[int]:
        """Pids of live processes still in this namespace, even once its name is deleted (a
        namespace lives on while a process holds it)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    inside = entry.joinpath("ns", "net").stat().st_ino == self.inode
                    if inside and pid_alive(int(entry.name)):
                        found.append(int(entry.name))
        return found


@dataclass
class Host(Namespace):
    """A namespace with one interface, `eth0`, at `address` on the network's bridge."""

    hostname: str = ""
    address: str = ""
    port_on_bridge: str = ""  # the veth's other end, in the bridge's namespace

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` as run on this host: its network, its own hostname (a new UTS namespace)."""
        in_uts = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"']
        return self.exec_argv([*in_uts, self.hostname, *argv])

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start `argv` on this host, in its own process group and tied to our life; every
        `exec` keeps the pid, so the Popen's pid is the command's."""
        return spawn(self.argv(argv), env=env, log_path=log)

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(argv), capture_output=True, text=True, timeout=timeout, env=env, **kw
        )

    def fetch(self, url: str, timeout: float = 5) -> str | None:
        """The body at `url` fetched from this host, or None if it cannot be had."""
        done = self.run([sys.executable, "-c", FETCH, url, str(timeout)], timeout=timeout + 30)
        return done.stdout if done.returncode == 0 else None

    def listening(self) -> set[str]:
        """Local address:port of every listening TCP socket on this host."""
        done = subprocess.run(
            self.exec_argv(["ss", "-ltnH"]), capture_output=True, text=True, timeout=30
        )
        return {line.split()[3] for line in done.stdout.splitlines() if line.strip()}


@dataclass
class Network:
    """A bridge and the hosts on it, all torn down by the `with` block's end (or `close`)."""

    subnet: str = "10.203.0"  # /24; each network has its own bridge, so runs never meet
    prefix: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}")
    hosts: list[Host] = field(default_factory=list)
    switch: Namespace | None = None

    def __enter__(self) -> Network:
        remove_stale_namespaces()
        try:
            self.switch = Namespace(f"{self.prefix}-switch")
            self.switch.create()
            _ip_ok("-n", self.switch.name, "link", "add", "br0", "type", "bridge")
            _ip_ok("-n", self.switch.name, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, label: str, etc_files: dict[str, str] | None = None) -> Host:
        assert self.switch is not None
        number = len(self.hosts) + 1
        host = Host(
            f"{self.prefix}-{label}",
            etc_files or {},
            hostname=f"{self.prefix}-{label}",
            address=f"{self.subnet}.{number}",
            port_on_bridge=f"veth{number}",
        )
        self.hosts.append(host)  # before creating: close() removes a half-made host too
        host.create()
        _ip_ok(
            *("link", "add", "eth0", "netns", host.name, "type", "veth"),
            *("peer", "name", host.port_on_bridge, "netns", self.switch.name),
        )
        _ip_ok("-n", self.switch.name, "link", "set", host.port_on_bridge, "master", "br0", "up")
        _ip_ok("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip_ok("-n", host.name, "link", "set", "eth0", "up")
        # A host's own lo: it reaches itself through it (Prometheus scraping its loadgen).
        _ip_ok("-n", host.name, "link", "set", "lo", "up")
        return host

    def remove_host(self, host: Host) -> list[int]:
        """Tear a host down as a machine that vanishes: its processes killed by pid, its
        namespace (and so its link to the bridge) deleted; the pids killed."""
        killed = host.delete()
        if host in self.hosts:
            self.hosts.remove(host)
        return killed

    def bridge_ports(self) -> set[str]:
        assert self.switch is not None
        done = ip("-n", self.switch.name, "-o", "link", "show", "master", "br0")
        return {line.split(":")[1].strip().partition("@")[0] for line in done.stdout.splitlines()}

    def close(self) -> None:
        """Remove every host, then the bridge; a host that fails to go does not keep the others."""
        errors = []
        for namespace in [*reversed(self.hosts), self.switch]:
            try:
                if namespace is not None:
                    namespace.delete()
            except Exception as exc:  # raised once everything was tried
                errors.append(exc)
        self.hosts.clear()
        self.switch = None
        if errors:
            raise errors[0]


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces of Networks whose process is gone (a SIGKILLed test run)."""
    removed = []
    for name in ip("netns", "list").stdout.split():
        owner = name.removeprefix(f"{PREFIX}-").partition("-")[0]
        if name.startswith(f"{PREFIX}-") and owner.isdigit() and not pid_alive(int(owner)):
            Namespace(name).delete()
            removed.append(name)
    return removed
