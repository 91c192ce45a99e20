"""Counts over decision records: what the agent tried, what was refused, when.

``Tally`` is the streaming accumulator (one pass, bounded memory, mergeable so
the work can be split across processes); ``Summary`` is its frozen result.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from gatekeeper.views.filters import record_time
from gatekeeper.views.records import Record, is_decision, is_exit, text_field

TOP: Final = 10
HOURS_PER_DAY: Final = 24
# Distinct values kept per counter. Every string is chosen by the agent, so
# an agent sending a million distinct commands must not exhaust memory: past
# the cap the rarest half is dropped and the counts become lower bounds.
COUNTER_CAP: Final = 100_000
PRUNE_EVERY: Final = 4096
COUNTED_FIELDS: Final = ("decision", "rule", "canonical", "key")
RANKED: Final = (*COUNTED_FIELDS, "client")  # client: the address, without ports


@dataclass(frozen=True)
class Ranking:
    """The most frequent values of one field."""

    top: tuple[tuple[str, int], ...]
    distinct: int
    total: int

    @property
    def rest(self) -> int:
        return self.total - sum(count for _, count in self.top)


@dataclass(frozen=True)
class Summary:
    decisions: int
    by_field: dict[str, Ranking]  # keyed by RANKED
    top_refused: Ranking
    exit_statuses: Ranking
    hour_of_day: tuple[int, ...]  # 24 counts, UTC
    busiest_hour: tuple[datetime, int] | None
    first_seen: datetime | None
    last_seen: datetime | None
    approximate: bool


class Tally:
    """Streaming counts; ``add`` each record, ``merge`` partial tallies."""

    __slots__ = ("approximate", "counters", "exits", "first", "hours", "last", "refused", "seen")

    def __init__(self) -> None:
        self.seen = 0
        self.counters: dict[str, Counter[str]] = {field: Counter() for field in RANKED}
        self.refused: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.hours: Counter[int] = Counter()  # hours since year 1, UTC
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.approximate = False

    def add(self, record: Record) -> None:
        if is_decision(record):
            self.add_decision(record)
        elif is_exit(record):
            self.exits[text_field(record, "exit")] += 1

    def add_decision(self, record: Record) -> None:
        self.seen += 1
        for field in COUNTED_FIELDS:
            self.counters[field][text_field(record, field)] += 1
        self.counters["client"][client_address(record)] += 1
        if record.get("decision") == "deny":
            self.refused[text_field(record, "cmd")] += 1
        self.add_time(record_time(record))
        if self.seen % PRUNE_EVERY == 0:
            self.prune()

    def add_time(self, moment: datetime | None) -> None:
        if moment is None:
            return
        self.hours[moment.toordinal() * HOURS_PER_DAY + moment.hour] += 1
        if self.first is None or moment < self.first:
            self.first = moment
        if self.last is None or moment > self.last:
            self.last = moment

    def prune(self) -> None:
        for counter in (*self.counters.values(), self.refused, self.exits, self.hours):
            if len(counter) > COUNTER_CAP:
                kept = dict(counter.most_common(COUNTER_CAP // 2))
                counter.clear()
                counter.update(kept)
                self.approximate = True

    def merge(self, other: Tally) -> None:
        self.seen += other.seen
        for field, counter in self.counters.items():
            counter.update(other.counters[field])
        self.refused.update(other.refused)
        self.exits.update(other.exits)
        self.hours.update(other.hours)
        for moment in (other.first, other.last):
            self.add_time_bounds(moment)
        self.approximate = self.approximate or other.approximate
        self.prune()

    def add_time_bounds(self, moment: datetime | None) -> None:
        if moment is not None:
            self.first = moment if self.first is None else min(self.first, moment)
            self.last = moment if self.last is None else max(self.last, moment)

    def result(self) -> Summary:
        return Summary(
            decisions=self.seen,
            by_field={field: ranking(counter) for field, counter in self.counters.items()},
            top_refused=ranking(self.refused),
            exit_statuses=ranking(self.exits),
            hour_of_day=hour_of_day(self.hours),
            busiest_hour=busiest_hour(self.hours),
            first_seen=self.first,
            last_seen=self.last,
            approximate=self.approximate,
        )


def client_address(record: Record) -> str:
    """The client's address: the first word of SSH_CONNECTION (ports change every time)."""
    return text_field(record, "client").split(" ", 1)[0]


def tally(records: Iterable[Record]) -> Tally:
    result = Tally()
    add = result.add
    for record in records:
        add(record)
    return result


def ranking(counter: Counter[str], top: int = TOP) -> Ranking:
    return Ranking(tuple(counter.most_common(top)), len(counter), sum(counter.values()))


def hour_of_day(hours: Counter[int]) -> tuple[int, ...]:
    counts = [0] * HOURS_PER_DAY
    for hour, count in hours.items():
        counts[hour % HOURS_PER_DAY] += count
    return tuple(counts)


def busiest_hour(hours: Counter[int]) -> tuple[datetime, int] | None:
    if not hours:
        return None
    hour, count = max(hours.items(), key=lambda item: (item[1], -item[0]))
    day = datetime.fromordinal(hour // HOURS_PER_DAY).replace(tzinfo=UTC)
    return day + timedelta(hours=hour % HOURS_PER_DAY), count
