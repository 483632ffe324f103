"""glmkit.jsonl: UTF-8-safe JSON text and repair of a torn last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmkit.jsonl import dumps_utf8, json_line, repair_torn_tail


@pytest.mark.parametrize(
    "value",
    [
        "\ud83d",  # high surrogate alone (an emoji cut in half)
        "\ude00 tail",  # low surrogate alone
        "back\\slash \ud83d",  # a real backslash before the surrogate stays a backslash
        {"k\udc80": ["caf\u00e9", "\u4e2d\u6587", "\U0001f600"]},
    ],
)
def test_dumps_utf8_encodes_and_round_trips(value: object) -> None:
    for text in (dumps_utf8(value), dumps_utf8(value, indent=2), json_line(value)):
        text.encode("utf-8")  # never raises
        assert json.loads(text) == value
    line = json_line(value)
    assert line.endswith("\n") and line.count("\n") == 1


def test_dumps_utf8_keeps_readable_text_and_uses_default() -> None:
    assert dumps_utf8({"t": "caf\u00e9 \u4e2d \U0001f600"}) == '{"t": "caf\u00e9 \u4e2d \U0001f600"}'
    assert json.loads(dumps_utf8({"p": Path("a/b")}, default=str)) == {"p": "a/b"}


def test_repair_leaves_good_files_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    assert repair_torn_tail(path) is None  # missing
    path.write_text("")
    assert repair_torn_tail(path) is None  # empty
    path.write_text('{"a": 1}\n')
    assert repair_torn_tail(path) is None and path.read_text() == '{"a": 1}\n'


def test_repair_truncates_a_torn_fragment_and_warns(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": "half')
    with pytest.warns(
        UserWarning, match=r"s\.jsonl: its last line 3 .* cut short by a crash and was removed"
    ):
        assert repair_torn_tail(path) == "torn line removed"
    assert path.read_text() == '{"a": 1}\n{"b": 2}\n'


def test_repair_keeps_a_complete_last_record_and_adds_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}')
    with pytest.warns(UserWarning, match=r"s\.jsonl: its last line 2 lacked a newline"):
        assert repair_torn_tail(path) == "newline added"
    assert path.read_text() == '{"a": 1}\n{"b": 2}\n'


def test_repair_of_a_single_torn_line_and_of_a_tail_longer_than_a_chunk(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"x": "\xe2\x82')  # torn inside a multi-byte character
    with pytest.warns(UserWarning, match="last line 1 "):
        repair_torn_tail(path)
    assert path.read_bytes() == b""
    long_tail = '{"y": "' + "z" * 200_000
    path.write_text('{"a": 1}\n' * 3 + long_tail)
    with pytest.warns(UserWarning, match="last line 4 "):
        repair_torn_tail(path)
    assert path.read_text() == '{"a": 1}\n' * 3
