"""Reading audit logs: files, rotated siblings, gzip, stdin, journald, corrupt lines, pairing."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.operator.views import records
from gatekeeper.operator.views.records import ReadStats, Source

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
AUDIT = FIXTURES / "audit.jsonl"


def read(*paths: str | Path, rotated: bool = False) -> tuple[list[dict[str, object]], ReadStats]:
    stats = ReadStats()
    sources = records.expand_sources([str(p) for p in paths], rotated=rotated)
    return list(records.iter_records(sources, stats)), stats


def sessions(found: list[dict[str, object]], event: str = "decision") -> list[object]:
    return [r["session"] for r in found if r["event"] == event]


def test_reads_every_record_of_the_fixture_in_order() -> None:
    found, stats = read(AUDIT)
    assert sessions(found) == [f"s{n:02}" for n in range(1, 13)]
    assert sessions(found, "exit") == ["s01", "s03", "s06", "s11", "s12"]
    assert (stats.lines, stats.corrupt, stats.foreign) == (17, 0, 0)


# ---------------------------------------------------------------- rotation


@pytest.mark.parametrize(
    ("names", "expected_order"),
    [
        pytest.param(["a.jsonl", "a.jsonl.1"], ["a.jsonl.1", "a.jsonl"], id="one-rotation"),
        pytest.param(
            ["a.jsonl", "a.jsonl.1", "a.jsonl.2.gz", "a.jsonl.10.gz"],
            ["a.jsonl.10.gz", "a.jsonl.2.gz", "a.jsonl.1", "a.jsonl"],
            id="numbered-higher-is-older-not-lexical",
        ),
        pytest.param(
            ["a.jsonl", "a.jsonl-20261101.gz", "a.jsonl-20261108"],
            ["a.jsonl-20261101.gz", "a.jsonl-20261108", "a.jsonl"],
            id="dateext",
        ),
        pytest.param(
            ["a.jsonl", "a.jsonl.bak", "a.jsonl.1.tmp", "a.jsonlx.1", "b.jsonl.1"],
            ["a.jsonl"],
            id="unrelated-names-ignored",
        ),
    ],
)
def test_rotated_siblings_come_oldest_first(
    tmp_path: Path, names: list[str], expected_order: list[str]
) -> None:
    for name in names:
        (tmp_path / name).write_bytes(b"")
    sources = records.expand_sources([str(tmp_path / "a.jsonl")], rotated=True)
    assert [Path(s.name).name for s in sources] == expected_order


def split_fixture_into_rotation(directory: Path) -> Path:
    """audit.jsonl.2.gz (s01..s04), audit.jsonl.1 (s05..s08), audit.jsonl (the rest)."""
    lines = AUDIT.read_bytes().splitlines(keepends=True)
    with gzip.open(directory / "audit.jsonl.2.gz", "wb") as older:
        older.writelines(lines[:6])
    (directory / "audit.jsonl.1").write_bytes(b"".join(lines[6:11]))
    (directory / "audit.jsonl").write_bytes(b"".join(lines[11:]))
    return directory / "audit.jsonl"


def test_rotated_and_gzipped_siblings_read_as_one_log(tmp_path: Path) -> None:
    base = split_fixture_into_rotation(tmp_path)
    whole, _ = read(AUDIT)
    assert read(base, rotated=True)[0] == whole
    assert sessions(read(base, rotated=False)[0]) == ["s09", "s10", "s11", "s12"]


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    disguised = tmp_path / "audit.log"
    disguised.write_bytes(gzip.compress(AUDIT.read_bytes()))
    assert read(disguised)[0] == read(AUDIT)[0]


def test_several_logs_and_stdin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    copy = tmp_path / "copy.jsonl"
    shutil.copy(AUDIT, copy)
    fake_stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(gzip.compress(AUDIT.read_bytes()))))
    monkeypatch.setattr("sys.stdin", fake_stdin)
    found, _ = read(copy, "-")
    assert len(sessions(found)) == 24
    assert not fake_stdin.closed, "standard input is read, never closed"


# ---------------------------------------------------------------- journald


@pytest.fixture
def agent_uid_1001(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's agent uid, whatever this machine's ai-worker has."""
    monkeypatch.setattr(records, "journald_trusted_uids", lambda: frozenset({"0", "1001"}))


def test_journald_entries_yield_our_records(agent_uid_1001: None) -> None:
    found, stats = read(FIXTURES / "journal.json")
    assert sessions(found) == ["s21", "s22", "s23"]
    assert sessions(found, "exit") == ["s22"]
    assert found[3]["cmd"] == "docker ps \udcff", "a byte-array MESSAGE keeps its invalid byte"
    assert (stats.corrupt, stats.foreign) == (0, 7), "the sshd line and six forgeries are foreign"


def test_forged_journald_entries_were_read_before_the_writer_check(
    agent_uid_1001: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: without the trusted-field check every forgery reads as a record."""
    monkeypatch.setattr(records, "journald_writer_is_gatekeeper", lambda entry: True)
    found, _ = read(FIXTURES / "journal.json")
    assert sessions(found) == ["s21", "s22", "s23", "f01", "f02", "f03", "f04", "f05", "f06"]


# ---------------------------------------------------------------- corrupt lines


def test_corrupt_lines_are_counted_with_their_line_numbers() -> None:
    found, stats = read(FIXTURES / "corrupt.jsonl")
    assert sessions(found) == ["c01", "c02"]
    assert stats.corrupt == 6
    assert stats.foreign == 1
    assert [number for _, number in stats.samples] == [2, 3, 4, 5, 9], "first five kept"


def test_invalid_utf8_survives_as_surrogates(tmp_path: Path) -> None:
    line = b'{"event":"decision","session":"u1","cmd":"docker ps \xff\xfe"}\n'
    log = tmp_path / "bad.jsonl"
    log.write_bytes(line + b"\xff\xfe not json at all\n")
    found, stats = read(log)
    assert found[0]["cmd"] == "docker ps \udcff\udcfe"
    assert stats.corrupt == 1


def test_a_missing_file_raises_oserror_for_the_boundary(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read(tmp_path / "absent.jsonl")


# ---------------------------------------------------------------- parsing


@settings(deadline=None)  # timing varies on a shared CI machine; correctness does not
@given(st.text(max_size=60))
def test_parse_line_never_raises_and_agrees_with_json_loads(text: str) -> None:
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        expected = None
    assert records.parse_line(text) == (expected if isinstance(expected, dict) else None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None)  # timing varies on a shared CI machine; correctness does not
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5), st.sampled_from(["", " ", "\t", " \r"]))
def test_parse_line_round_trips_objects(value: dict[str, object], space: str) -> None:
    assert records.parse_line(space + json.dumps(value) + space) == value


# ---------------------------------------------------------------- byte ranges


@settings(deadline=None)  # timing varies on a shared CI machine; correctness does not
@given(
    st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    st.lists(st.integers(min_value=0, max_value=200), max_size=4),
    st.booleans(),
)
def test_byte_ranges_visit_every_line_exactly_once(
    pieces: list[bytes], cuts: list[int], final_newline: bool
) -> None:
    data = b"\n".join(pieces) + (b"\n" if final_newline and pieces else b"")
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    seen: list[str] = []
    for start, end in itertools.pairwise(bounds):
        stream = io.BufferedReader(io.BytesIO(data))
        for _, lines in records.range_lines(stream, start, end, ReadStats()):
            seen.extend(lines)
    whole = data.decode("utf-8", "surrogateescape").split("\n")
    if whole and whole[-1] == "":
        whole.pop()
    assert seen == whole


# ---------------------------------------------------------------- pairing


def test_exit_lines_pair_with_their_decisions_in_decision_order() -> None:
    found, _ = read(AUDIT)
    events = list(records.pair_exits(found))
    assert [e.decision["session"] for e in events] == [f"s{n:02}" for n in range(1, 13)]
    exits = {e.decision["session"]: e.exit["exit"] for e in events if e.exit is not None}
    assert exits == {"s01": 0, "s03": 1, "s06": 0, "s11": 0, "s12": 0}


def test_pairing_gives_up_after_the_window_and_keeps_order() -> None:
    stream = [
        {"event": "decision", "session": "long", "decision": "allow"},
        *({"event": "decision", "session": f"d{n}", "decision": "deny"} for n in range(5)),
        {"event": "exit", "session": "long", "exit": 0},
    ]
    events = list(records.pair_exits(stream, window=3))
    assert [e.decision["session"] for e in events] == ["long", "d0", "d1", "d2", "d3", "d4"]
    assert events[0].exit is None, "waited 3 records, then shown without its exit"


def test_orphan_exits_and_odd_sessions_are_dropped_safely() -> None:
    stream = [
        {"event": "exit", "session": "nobody", "exit": 0},
        {"event": "decision", "session": ["not", "a", "string"], "decision": "allow"},
        {"event": "exit", "session": {"x": 1}},
    ]
    events = list(records.pair_exits(stream))
    assert len(events) == 1
    assert events[0].exit is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param("docker ps", "docker ps", id="string"),
        pytest.param(None, "", id="null"),
        pytest.param(7, "7", id="number"),
        pytest.param(["a", "b"], '["a", "b"]', id="list-as-json"),
    ],
)
def test_text_field_turns_any_json_value_into_text(value: object, text: str) -> None:
    assert records.text_field({"cmd": value}, "cmd") == text


def test_source_stdin_flag() -> None:
    assert Source("-").is_stdin
    assert not Source("/var/log/gatekeeper/audit.jsonl").is_stdin
