"""``gatekeeper audit --summary`` numbers on the fixture log (see fixtures/audit/README.md)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatekeeper.operator.views import parallel, summary
from gatekeeper.operator.views.filters import Criteria
from gatekeeper.operator.views.records import ReadStats, Source, expand_sources, iter_records
from gatekeeper.operator.views.summary import Summary, Tally

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
AUDIT = FIXTURES / "audit.jsonl"


def summarise(criteria: Criteria | None = None) -> Summary:
    sources = [Source(str(AUDIT))]
    return parallel.tally_sources(sources, criteria or Criteria(), ReadStats(), workers=1).result()


FIXTURE = summarise()

# field -> every (value, count) of the fixture, most frequent first ("" = no value)
RANKINGS = {
    "decision": [("allow", 6), ("deny", 6)],
    "rule": [
        ("allowed", 6),
        ("blocked-subcommand", 3),
        ("global-option", 1),
        ("shell-syntax", 1),
        ("not-allowed", 1),
    ],
    "canonical": [
        ("container ls", 3),
        ("container exec", 3),
        ("", 2),
        ("container logs", 1),
        ("image ls", 1),
        ("system dial-stdio", 1),
        ("container restart", 1),
    ],
    "key": [("SHA256:alpha", 6), ("SHA256:bravo", 5), ("", 1)],
    "client": [("10.0.0.1", 6), ("10.0.0.2", 5), ("192.168.7.7", 1)],
}


@pytest.mark.parametrize(("field", "expected"), RANKINGS.items(), ids=RANKINGS.keys())
def test_counts_by_field(field: str, expected: list[tuple[str, int]]) -> None:
    ranking = FIXTURE.by_field[field]
    assert sorted(ranking.top, key=lambda pair: -pair[1]) == sorted(expected, key=lambda pair: -pair[1])
    assert dict(ranking.top) == dict(expected)
    assert (ranking.distinct, ranking.total, ranking.rest) == (len(expected), 12, 0)


def test_headline_numbers() -> None:
    assert FIXTURE.decisions == 12
    assert FIXTURE.first_seen == datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    assert FIXTURE.last_seen == datetime(2026, 11, 25, 8, 11, tzinfo=UTC)
    assert not FIXTURE.approximate


def test_top_refused_commands() -> None:
    assert FIXTURE.top_refused.top[0] == ("docker exec -it web sh", 3)
    assert dict(FIXTURE.top_refused.top[1:]) == {
        "docker -H tcp://x ps": 1,
        "docker ps; id": 1,
        "docker system dial-stdio": 1,
    }


def test_exit_statuses() -> None:
    assert dict(FIXTURE.exit_statuses.top) == {"0": 4, "1": 1}


def test_attempts_by_hour_of_day_and_busiest_hour() -> None:
    expected = [0] * 24
    expected[8], expected[9], expected[10], expected[11], expected[12] = 5, 2, 1, 2, 2
    assert list(FIXTURE.hour_of_day) == expected
    assert FIXTURE.busiest_hour == (datetime(2026, 11, 25, 8, tzinfo=UTC), 3)


@pytest.mark.parametrize(
    ("criteria", "decisions", "refused"),
    [
        pytest.param(Criteria(decision="deny"), 6, 6, id="denied"),
        pytest.param(Criteria(decision="allow"), 6, 0, id="allowed"),
        pytest.param(Criteria(key="bravo"), 5, 2, id="key"),
        pytest.param(Criteria(since=datetime(2026, 11, 24, tzinfo=UTC)), 5, 2, id="since"),
    ],
)
def test_summary_respects_filters(criteria: Criteria, decisions: int, refused: int) -> None:
    filtered = summarise(criteria)
    assert filtered.decisions == decisions
    assert filtered.top_refused.total == refused


def test_split_tallies_merge_to_the_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    big.write_bytes(AUDIT.read_bytes() * 50)
    jobs = parallel.jobs_for(Source(str(big)), Criteria(), 3, min_bytes=0)
    assert [job.span is not None for job in jobs] == [True, True, True]
    merged = Tally()
    for job in jobs:
        merged.merge(parallel.tally_job(job)[0])
    whole = summary.tally(iter_records([Source(str(big))], ReadStats()))
    assert merged.result() == whole.result()
    assert merged.result().decisions == 600


def rotated_year(directory: Path) -> list[Source]:
    """Three gzipped weeks, last week plain, this week plain with a corrupt line."""
    body = AUDIT.read_bytes() * 20
    for week in (4, 3, 2):
        (directory / f"audit.jsonl.{week}.gz").write_bytes(gzip.compress(body))
    (directory / "audit.jsonl.1").write_bytes(body)
    (directory / "audit.jsonl").write_bytes(body + b"garbage line\n")
    return expand_sources([str(directory / "audit.jsonl")], rotated=True)


@pytest.mark.parametrize("min_bytes", [0, 10**9], ids=["files-split-too", "one-job-per-file"])
def test_parallel_processes_give_the_same_summary(tmp_path: Path, min_bytes: int) -> None:
    sources = rotated_year(tmp_path)
    stats = ReadStats()
    result = parallel.tally_sources(sources, Criteria(), stats, workers=2, min_bytes=min_bytes).result()
    assert result == summary.tally(iter_records(sources, ReadStats())).result()
    assert result.decisions == 5 * 240
    assert (stats.corrupt, stats.samples) == (1, [(sources[-1].name, 341)]), "line numbers are the file's"


def test_odd_values_are_counted_not_fatal() -> None:
    tally = Tally()
    odd = {"event": "decision", "decision": "deny", "rule": ["x"], "key": {"a": 1}, "client": 5, "cmd": [1]}
    tally.add(odd)
    tally.add({"event": "decision", "ts": "2026-02-30T00:00:00Z"})  # invalid date: no time
    tally.add({"event": "exit", "exit": [1]})
    result = tally.result()
    assert result.decisions == 2
    assert dict(result.by_field["rule"].top) == {'["x"]': 1, "": 1}
    assert dict(result.top_refused.top) == {"[1]": 1}
    assert result.first_seen is None


def test_non_canonical_timestamps_are_normalised_to_utc() -> None:
    tally = Tally()
    tally.add({"event": "decision", "ts": "2026-11-25T10:30:00+02:00"})
    tally.add({"event": "decision", "ts": "2026-11-25T07:00:00.000000Z"})
    result = tally.result()
    assert result.first_seen == datetime(2026, 11, 25, 7, tzinfo=UTC)
    assert result.last_seen == datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    assert result.hour_of_day[8] == 1


def test_memory_stays_bounded_when_every_command_is_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "COUNTER_CAP", 100)
    monkeypatch.setattr(summary, "PRUNE_EVERY", 10)
    tally = Tally()
    for number in range(1000):
        tally.add({"event": "decision", "decision": "deny", "cmd": f"docker ps {number}"})
    assert len(tally.refused) <= 100
    assert tally.result().approximate


def test_summary_json_is_ascii_and_complete() -> None:
    from gatekeeper.operator.views.plain import summary_json

    document = json.loads(summary_json(FIXTURE))
    assert document["decisions"] == 12
    assert document["first_seen"] == "2026-11-20T08:00:00Z"
    assert document["by"]["client"]["top"][0] == ["10.0.0.1", 6]
    assert summary_json(FIXTURE).isascii()


def test_counts_by_profile_and_per_day() -> None:
    assert dict(FIXTURE.by_field["profile"].top) == {"default": 12}
    assert FIXTURE.per_day == (
        ("2026-11-20", 2),
        ("2026-11-21", 2),
        ("2026-11-22", 1),
        ("2026-11-23", 2),
        ("2026-11-24", 2),
        ("2026-11-25", 3),
    )


# Filters apply to exit statuses too: an exit line counts only if its decision matched.
EXITS_UNDER_FILTERS = [
    (Criteria(), {"0": 4, "1": 1}, "no-filter-counts-every-exit"),
    (Criteria(decision="deny"), {}, "refusals-have-no-exits"),
    (Criteria(key="alpha"), {"0": 3}, "one-key"),
    (Criteria(session="s03"), {"1": 1}, "one-session"),
    (Criteria(profile="ci"), {}, "other-profile"),
]


@pytest.mark.parametrize(
    ("criteria", "expected"), [pytest.param(c, e, id=i) for c, e, i in EXITS_UNDER_FILTERS]
)
def test_filters_apply_to_exit_statuses(criteria: Criteria, expected: dict[str, int]) -> None:
    assert dict(summarise(criteria).exit_statuses.top) == expected


def test_summary_json_has_profiles_and_days() -> None:
    from gatekeeper.operator.views import plain

    document = json.loads(plain.summary_json(FIXTURE))
    assert document["by"]["profile"]["top"] == [["default", 12]]
    assert document["per_day"]["2026-11-25"] == 3
