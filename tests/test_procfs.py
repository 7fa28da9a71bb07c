"""The /proc readers, on fixture files (injectable root) and on this very process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from membench.procfs import (
    list_tree,
    read_cpu_seconds,
    read_process_memory,
    read_status_memory,
    read_thread_count,
    reset_peak_rss,
)
from membench.units import KIB, MIB

FIXTURES = Path(__file__).parent / "fixtures" / "proc"


def test_status_and_smaps_rollup_are_parsed_to_bytes() -> None:
    memory = read_process_memory(4242, FIXTURES)
    assert memory.rss == 102400 * KIB
    assert memory.peak_rss == 153600 * KIB
    assert memory.pss == 61440 * KIB
    assert memory.uss == (1000 + 59400) * KIB
    assert memory.swap == 512 * KIB


def test_missing_smaps_rollup_leaves_pss_unknown_not_zero() -> None:
    memory = read_process_memory(4300, FIXTURES)
    assert memory.rss == 30720 * KIB
    assert memory.pss is None and memory.uss is None


def test_cpu_seconds_survive_parentheses_in_the_command_name() -> None:
    assert read_cpu_seconds(4242, FIXTURES) == pytest.approx(300 / os.sysconf("SC_CLK_TCK"))


def test_tree_follows_children_of_every_thread() -> None:
    assert list_tree(4242, FIXTURES) == [4242, 4300]
    assert read_thread_count(4242, FIXTURES) == 2


def test_gone_process_raises() -> None:
    with pytest.raises(FileNotFoundError):
        read_process_memory(999999, FIXTURES)


def test_peak_reset_really_lowers_vmhwm_of_this_process() -> None:
    block = bytearray(64 * MIB)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    del block
    rss, peak_before = read_status_memory()
    assert peak_before >= rss + 32 * MIB
    assert reset_peak_rss() is True
    _, peak_after = read_status_memory()
    assert peak_after < peak_before - 32 * MIB


def test_own_memory_reads_status_through_open_descriptors_and_reopens_after_fork() -> None:
    from membench.procfs import OwnMemory, read_status_memory

    own = OwnMemory()
    # The peak starts from now: this process (a pytest worker) may have peaked higher before.
    assert own.reset_peak()
    rss, peak = own.read()
    status_rss, status_peak = read_status_memory()
    assert abs(rss - status_rss) < MIB and peak <= status_peak
    held = bytearray(64 * MIB)
    held[::4096] = b"\1" * len(held[::4096])  # every page written: resident
    del held
    high = own.read()[1]
    assert high >= peak + 60 * MIB
    assert own.reset_peak()
    assert own.read()[1] < high - 60 * MIB  # the peak starts again from the current RSS
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reads its own status, not its parent's through the inherited fd
        os.close(read)
        grown = bytearray(64 * MIB)
        grown[::4096] = b"\1" * len(grown[::4096])
        os.write(write, str(own.read()[0]).encode() + b" " + str(read_status_memory()[0]).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_own, child_status = map(int, os.read(read, 100).split())
    os.close(read)
    assert abs(child_own - child_status) < MIB
    assert child_own > own.read()[0] + 32 * MIB  # its 64 MiB: not the parent's RSS
