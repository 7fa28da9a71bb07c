"""The size units: membench's MB is 2^20 bytes, and the tables print it to 2 places."""

from __future__ import annotations

from membench.units import GIB, KIB, MIB, format_mb


def test_the_units_are_binary() -> None:
    assert (KIB, MIB, GIB) == (2**10, 2**20, 2**30)


def test_the_tables_print_mb_to_two_places_and_a_dash_when_unknown() -> None:
    assert format_mb(3 * MIB + MIB // 2) == "3.50"
    assert format_mb(0) == "0.00"
    assert format_mb(None) == "-"
