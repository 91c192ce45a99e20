"""Which decisions each filter selects, on the fixture log; and the raw pre-filter's soundness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.operator.views import audit, filters, records
from gatekeeper.operator.views.filters import Criteria
from gatekeeper.operator.views.records import ReadStats

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
AUDIT = FIXTURES / "audit.jsonl"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
ALL = [f"s{n:02}" for n in range(1, 13)]


def selected(argv: list[str]) -> list[object]:
    """Sessions listed by ``gatekeeper audit ARGV`` on the fixture (clock at NOW)."""
    args = audit.audit_parser().parse_args(audit.joined_negative_times(["--log", str(AUDIT), *argv]))
    criteria = audit.criteria_from(args, NOW)
    events = audit.events(records.expand_sources(args.log, rotated=False), criteria, ReadStats())
    return [event.decision["session"] for event in filters.last(events, args.limit)]


# Each row: the filter as typed, then the sessions it must select (fixture README).
FILTER_TABLE = [
    ([], ALL, "no-filter"),
    (["--denied"], ["s02", "s04", "s05", "s07", "s08", "s10"], "denied"),
    (["--allowed"], ["s01", "s03", "s06", "s09", "s11", "s12"], "allowed"),
    (["--since", "2026-11-24"], ["s08", "s09", "s10", "s11", "s12"], "since-date"),
    (["--until", "2026-11-21"], ["s01", "s02"], "until-date-is-exclusive"),
    (["--since", "2026-11-21", "--until", "2026-11-23"], ["s03", "s04", "s05"], "since-until"),
    (["--since", "2026-11-25T08:05:00Z"], ["s11", "s12"], "since-datetime"),
    (["--since", "2026-11-25T09:05:00+01:00"], ["s11", "s12"], "since-with-offset"),
    (["--since", "2h"], ["s10", "s11", "s12"], "since-relative-hours"),
    (["--since", "6d", "--until", "4d"], ["s01", "s02"], "relative-window-until-exclusive"),
    (["--user", "other"], ["s12"], "user"),
    (["--key", "SHA256:bravo"], ["s03", "s04", "s08", "s09", "s12"], "key-full"),
    (["--key", "bravo"], ["s03", "s04", "s08", "s09", "s12"], "key-without-prefix"),
    (["--key", "brav"], ["s03", "s04", "s08", "s09", "s12"], "key-prefix"),
    (["--key", "SHA256:al"], ["s01", "s02", "s05", "s06", "s10", "s11"], "key-prefix-with-sha256"),
    (["--key", "lpha"], [], "key-prefix-is-a-prefix"),
    (["--profile", "default", "--denied"], ["s02", "s04", "s05", "s07", "s08", "s10"], "profile"),
    (["--profile", "ci"], [], "profile-other"),
    (["--session", "s07"], ["s07"], "session"),
    (["--canonical", "container exec"], ["s02", "s04", "s10"], "canonical-exact"),
    (
        ["--canonical", "container"],
        ["s01", "s02", "s03", "s04", "s09", "s10", "s11", "s12"],
        "canonical-words",
    ),
    (["--canonical", "contain"], [], "canonical-whole-words-only"),
    (["--not-rule", "allowed"], ["s02", "s04", "s05", "s07", "s08", "s10"], "not-rule"),
    (["--not-rule", "allowed", "--not-rule", "blocked-subcommand"], ["s05", "s07", "s08"], "not-rule-twice"),
    (["--since", "-2h"], ["s10", "s11", "s12"], "since-minus-relative"),
    (["--since=-2h"], ["s10", "s11", "s12"], "since-minus-relative-equals"),
    (["--since", "today"], ["s10", "s11", "s12"], "since-today"),
    (["--since", "yesterday", "--until", "today"], ["s08", "s09"], "yesterday"),
    (["--client", "10.0.0.2"], ["s03", "s04", "s08", "s09", "s12"], "client-address"),
    (["--client", "192.168.0.0/16"], ["s05"], "client-cidr"),
    (["--client", "10.0.0.0/8"], [s for s in ALL if s != "s05"], "client-wide-cidr"),
    (["--client", "10.0.0.22"], [], "client-is-not-a-prefix"),
    (["--rule", "blocked-subcommand"], ["s02", "s04", "s10"], "rule"),
    (["--grep", "exec"], ["s02", "s04", "s10"], "grep-command"),
    (["--grep", "dial-stdio"], ["s08"], "grep"),
    (["--grep", "image ls"], ["s06"], "grep-canonical"),
    (["--denied", "--key", "alpha"], ["s02", "s05", "s10"], "denied-and-key"),
    (["--allowed", "--grep", "ps"], ["s01", "s09", "s12"], "allowed-and-grep"),
    (["--limit", "2"], ["s11", "s12"], "limit-is-the-last-n"),
    (["--denied", "--limit", "1"], ["s10"], "denied-limit"),
    (["--limit", "100"], ALL, "limit-above-count"),
]


@pytest.mark.parametrize(("argv", "expected"), [pytest.param(a, e, id=i) for a, e, i in FILTER_TABLE])
def test_filter_selects(argv: list[str], expected: list[str]) -> None:
    assert selected(argv) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("90s", NOW - timedelta(seconds=90), id="seconds"),
        pytest.param("30m", NOW - timedelta(minutes=30), id="minutes"),
        pytest.param("2h", NOW - timedelta(hours=2), id="hours"),
        pytest.param("7d", NOW - timedelta(days=7), id="days"),
        pytest.param("2w", NOW - timedelta(weeks=2), id="weeks"),
        pytest.param("-1h", NOW - timedelta(hours=1), id="minus-hours"),
        pytest.param("now", NOW, id="now"),
        pytest.param("today", datetime(2026, 11, 25, tzinfo=UTC), id="today-is-utc-midnight"),
        pytest.param("Yesterday", datetime(2026, 11, 24, tzinfo=UTC), id="yesterday"),
        pytest.param("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC), id="date-is-utc-midnight"),
        pytest.param("2026-11-01T12:30", datetime(2026, 11, 1, 12, 30, tzinfo=UTC), id="naive-is-utc"),
        pytest.param("2026-11-01T12:30Z", datetime(2026, 11, 1, 12, 30, tzinfo=UTC), id="zulu"),
        pytest.param("2026-11-01T14:30+02:00", datetime(2026, 11, 1, 12, 30, tzinfo=UTC), id="offset"),
    ],
)
def test_time_bounds(text: str, expected: datetime) -> None:
    assert filters.parse_time_bound(text, NOW) == expected


@pytest.mark.parametrize("text", ["2h ago", "--2h", "2026-13-01", "", "2x", "tomorrow"])
def test_bad_time_bounds_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        filters.parse_time_bound(text, NOW)


def test_records_without_a_valid_time_never_match_a_time_filter() -> None:
    check = filters.matcher(Criteria(since=NOW - timedelta(days=400)))
    assert not check({"event": "decision", "ts": "not a time"})
    assert not check({"event": "decision", "ts": 12})
    assert not check({"event": "decision"})


# ---------------------------------------------------------------- raw pre-filter


@pytest.mark.parametrize(
    ("criteria", "keep_exits", "triggers"),
    [
        pytest.param(Criteria(), True, (), id="nothing-to-search-for"),
        pytest.param(Criteria(decision="deny"), False, (b"deny", b"\\u", b"MESSAGE"), id="denied"),
        pytest.param(
            Criteria(decision="allow"),
            True,
            (b"allow", b"\\u", b"MESSAGE", b"exit"),
            id="allowed-keeps-exits",
        ),
        pytest.param(
            Criteria(decision="deny", grep="exec"), False, (b"exec", b"\\u", b"MESSAGE"), id="grep-first"
        ),
        pytest.param(Criteria(grep='say "hi"'), True, (), id="quote-has-a-short-escape"),
        pytest.param(Criteria(grep="a/b"), True, (), id="slash-has-a-short-escape"),
        pytest.param(Criteria(grep="caf\u00e9"), True, (), id="non-ascii"),
        pytest.param(Criteria(key="SHA256:x", client="10.0.0.1"), True, (), id="not-text-criteria"),
    ],
)
def test_raw_prefilter_triggers(criteria: Criteria, keep_exits: bool, triggers: tuple[bytes, ...]) -> None:
    assert filters.raw_prefilter(criteria, keep_exits=keep_exits) == triggers


plain_text = st.text(alphabet=st.characters(codec="ascii"), max_size=10)


def encoded_line(record: dict[str, str], *, ensure_ascii: bool, escape_letters: bool, journald: str) -> str:
    """One way a writer (or a forger) may spell ``record`` as a line."""
    line = json.dumps(record, ensure_ascii=ensure_ascii)
    if escape_letters:  # legal JSON: "d\u0065ny" is "deny"
        line = line.replace('"deny"', '"d\\u0065ny"').replace('"allow"', '"\\u0061llow"')
    trusted = {"_UID": "0", "_COMM": "python3", "_EXE": "/usr/bin/python3"}
    if journald == "string":
        return json.dumps({**trusted, "MESSAGE": "gatekeeper[1]: " + line})
    if journald == "bytes":
        return json.dumps({**trusted, "MESSAGE": list(line.encode("utf-8", "surrogateescape"))})
    return line


@settings(deadline=None)  # timing varies on a shared CI machine; correctness does not
@given(
    cmd=st.text(max_size=10),
    decision=st.sampled_from(["allow", "deny"]),
    rule=st.sampled_from(["allowed", "blocked-subcommand"]),
    grep=st.none() | plain_text,
    want=st.sampled_from([None, "allow", "deny"]),
    ensure_ascii=st.booleans(),
    escape_letters=st.booleans(),
    journald=st.sampled_from(["no", "string", "bytes"]),
)
def test_prefilter_never_drops_a_line_that_matches(
    cmd: str,
    decision: str,
    rule: str,
    grep: str | None,
    want: str | None,
    ensure_ascii: bool,
    escape_letters: bool,
    journald: str,
) -> None:
    """If the full filter selects the record, the raw line contains a trigger."""
    record = {"event": "decision", "cmd": cmd, "decision": decision, "rule": rule, "canonical": "image ls"}
    line = encoded_line(record, ensure_ascii=ensure_ascii, escape_letters=escape_letters, journald=journald)
    criteria = Criteria(decision=want, grep=grep)
    triggers = filters.raw_prefilter(criteria, keep_exits=False)
    parsed = records.as_record(records.parse_line(line) or {})
    assert parsed == record
    if triggers and filters.matcher(criteria)(parsed):
        raw = line.encode("utf-8", "surrogateescape")
        assert any(trigger in raw for trigger in triggers)


@pytest.mark.parametrize(("argv", "_expected", "_id"), FILTER_TABLE, ids=[row[2] for row in FILTER_TABLE])
def test_prefiltered_and_full_reads_agree_on_the_fixture(
    argv: list[str], _expected: object, _id: str
) -> None:
    args = audit.audit_parser().parse_args(audit.joined_negative_times(["--log", str(AUDIT), *argv]))
    criteria = audit.criteria_from(args, NOW)
    source = [records.Source(str(AUDIT))]
    check = filters.matcher(criteria)
    full = [
        r["session"] for r in records.iter_records(source, ReadStats()) if records.is_decision(r) and check(r)
    ]
    assert [e.decision["session"] for e in audit.events(source, criteria, ReadStats())] == full
