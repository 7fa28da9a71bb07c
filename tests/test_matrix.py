"""membench/run/matrix.py: parsing --matrix axes and naming each combination's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from membench.run.matrix import MATRIX_FLAGS, MatrixError, combination_dir, parse_matrix


def test_no_axis_is_one_empty_combination() -> None:
    # itertools.product of nothing: a single run with no override, not zero runs.
    assert parse_matrix([]) == [{}]


def test_one_axis_keeps_the_values_order() -> None:
    assert parse_matrix(["malloc=jemalloc,glibc"]) == [{"malloc": "jemalloc"}, {"malloc": "glibc"}]


def test_the_product_varies_the_last_axis_fastest() -> None:
    assert parse_matrix(["malloc=glibc,jemalloc", "payload=bytes,dicts"]) == [
        {"malloc": "glibc", "payload": "bytes"},
        {"malloc": "glibc", "payload": "dicts"},
        {"malloc": "jemalloc", "payload": "bytes"},
        {"malloc": "jemalloc", "payload": "dicts"},
    ]


def test_values_are_parsed_like_their_flag() -> None:
    (combo,) = parse_matrix(["workers=4", "size=2.5", "time=1", "subtasks=3", "concurrency=2"])
    assert combo == {"workers": 4, "size": 2.5, "time": 1.0, "subtasks": 3, "concurrency": 2}
    assert isinstance(combo["time"], float) and isinstance(combo["workers"], int)


def test_spaces_around_axis_and_values_are_ignored() -> None:
    assert parse_matrix([" workers = 1 , 2 "]) == [{"workers": 1}, {"workers": 2}]


def test_every_axis_maps_to_a_run_parameter() -> None:
    assert MATRIX_FLAGS["size"].dest == "size_mb"
    assert MATRIX_FLAGS["time"].dest == "hold_s"
    for axis, flag in MATRIX_FLAGS.items():
        value = "1" if flag.parse is not str else "x"
        assert parse_matrix([f"{axis}={value}"]) == [{axis: flag.parse(value)}]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["malloc"], "expected AXIS=V1,V2"),
        (["colour=red"], "AXIS one of malloc, payload, workers"),
        (["=1"], "expected AXIS=V1,V2"),
        (["malloc=glibc", "malloc=jemalloc"], "axis 'malloc' given twice"),
        (["malloc="], "empty value"),
        (["malloc=glibc,,jemalloc"], "empty value"),
        (["workers=2,"], "empty value"),
        (["workers=two"], "workers: 'two' is not a int"),
        (["workers=2.5"], "workers: '2.5' is not a int"),
        (["size=big"], "size: 'big' is not a float"),
        (["malloc=glibc,glibc"], "malloc: 'glibc' given twice"),
        (["size=1,1.0"], "size: '1.0' given twice"),
    ],
)
def test_bad_axes_are_refused(specs: list[str], expected: str) -> None:
    with pytest.raises(MatrixError) as caught:
        parse_matrix(specs)
    assert expected in str(caught.value)


def test_matrix_error_is_a_value_error() -> None:
    # The CLI turns ValueErrors into its one-line usage errors.
    with pytest.raises(ValueError):
        parse_matrix(["nope=1"])


def test_without_a_label_the_output_itself_is_used(tmp_path: Path) -> None:
    assert combination_dir(tmp_path, "") == tmp_path


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("malloc=glibc payload=bytes", "malloc-glibc-payload-bytes"),
        ("size=2.5", "size-2.5"),
        ("malloc=jemalloc", "malloc-jemalloc"),
        ("payload=a/b", "payload-a-b"),
        ("  workers=4  ", "workers-4"),
        ("malloc=../../etc", "malloc-..-..-etc"),
    ],
)
def test_a_label_becomes_one_safe_directory_name(tmp_path: Path, label: str, name: str) -> None:
    directory = combination_dir(tmp_path, label)
    assert directory == tmp_path / name
    assert directory.parent == tmp_path  # never a nested or escaping path
