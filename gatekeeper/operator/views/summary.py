"""Counts over decision records: what the agent tried, what was refused, when.

``Tally`` is the streaming accumulator (one pass, bounded memory, mergeable so
the work can be split across processes); ``Summary`` is its frozen result.

The hot loop counts one tuple per decision, (decision, rule, canonical, key,
client address), instead of five separate counters: real logs have a few
thousand such combinations, and the per-field counts are sums over them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from gatekeeper.operator.views.records import Record

TOP: Final = 10
HOURS_PER_DAY: Final = 24
RANKED: Final = ("decision", "profile", "rule", "canonical", "key", "client")  # client: address, no ports
# Distinct values kept per counter. Every string is chosen by the agent, so
# an agent sending a million distinct commands must not exhaust memory: past
# the cap the rarest half is dropped and the counts become lower bounds.
COUNTER_CAP: Final = 100_000
PRUNE_EVERY: Final = 4096
# Timestamps as our writer makes them: 2026-11-25T20:16:10.123456Z. They sort
# as text, so first/last seen and hour buckets need no datetime per record.
CANONICAL_STAMP_LENGTH: Final = 27
fromisoformat: Final = datetime.fromisoformat

Combo = tuple[object, object, object, object, object, object]
# Sessions of matching allowed decisions remembered so that their exit lines are
# counted under the same filters (an exit line carries no key, client or rule).
MATCHED_SESSIONS: Final = 100_000


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
    per_day: tuple[tuple[str, int], ...]  # ("2026-11-25", decisions), oldest first, UTC
    busiest_hour: tuple[datetime, int] | None
    first_seen: datetime | None
    last_seen: datetime | None
    approximate: bool


class Tally:
    """Streaming counts; ``add`` each record, ``merge`` partial tallies."""

    __slots__ = ("approximate", "combos", "exits", "first", "hours", "last", "refused", "seen")

    def __init__(self) -> None:
        self.seen = 0
        self.combos: Counter[Combo] = Counter()
        self.refused: Counter[object] = Counter()
        self.exits: Counter[object] = Counter()
        self.hours: Counter[str] = Counter()  # "2026-11-25T20", UTC
        self.first: str | None = None
        self.last: str | None = None
        self.approximate = False

    def add(self, record: Record) -> None:
        event = record.get("event")
        if event == "decision":
            self.add_decision(record)
        elif event == "exit":
            self.exits[hashable(record.get("exit"))] += 1

    def add_decision(self, record: Record) -> None:
        get = record.get
        client = get("client")
        address = client.partition(" ")[0] if type(client) is str else client
        combo = (get("decision"), get("profile"), get("rule"), get("canonical"), get("key"), address)
        try:
            self.combos[combo] += 1
        except TypeError:  # a list or object where a string belongs
            self.combos[hashable_combo(combo)] += 1
        if combo[0] == "deny":
            self.refused[hashable(get("cmd"))] += 1
        stamp = canonical_stamp(get("ts"))
        if stamp is not None:
            self.hours[stamp[:13]] += 1
            if self.first is None or stamp < self.first:
                self.first = stamp
            if self.last is None or stamp > self.last:
                self.last = stamp
        self.seen += 1
        if not self.seen % PRUNE_EVERY:
            self.prune()

    def prune(self) -> None:
        counters: tuple[Counter[Any], ...] = (self.combos, self.refused, self.exits, self.hours)
        for counter in counters:
            if len(counter) > COUNTER_CAP:
                keep_most_common(counter, COUNTER_CAP // 2)
                self.approximate = True

    def merge(self, other: Tally) -> None:
        self.seen += other.seen
        self.combos.update(other.combos)
        self.refused.update(other.refused)
        self.exits.update(other.exits)
        self.hours.update(other.hours)
        for stamp in (other.first, other.last):
            self.add_bounds(stamp)
        self.approximate = self.approximate or other.approximate
        self.prune()

    def add_bounds(self, stamp: str | None) -> None:
        if stamp is not None:
            self.first = stamp if self.first is None else min(self.first, stamp)
            self.last = stamp if self.last is None else max(self.last, stamp)

    def result(self) -> Summary:
        return Summary(
            decisions=self.seen,
            by_field=field_rankings(self.combos),
            top_refused=ranking(self.refused),
            exit_statuses=ranking(self.exits),
            hour_of_day=hour_of_day(self.hours),
            per_day=per_day(self.hours),
            busiest_hour=busiest_hour(self.hours),
            first_seen=parse_stamp(self.first),
            last_seen=parse_stamp(self.last),
            approximate=self.approximate,
        )


def tally(records: Iterable[Record], check: Callable[[Record], bool] | None = None) -> Tally:
    """Tally the decisions that pass ``check`` (all when None) and the exit lines of those
    sessions: filters apply to exit statuses too."""
    result = Tally()
    add_decision, exits = result.add_decision, result.exits
    matched: dict[str, None] = {}
    for record in records:
        event = record.get("event")
        if event == "decision":
            if check is None or check(record):
                add_decision(record)
                session = record.get("session")
                if check is not None and type(session) is str and record.get("decision") == "allow":
                    matched[session] = None
                    if len(matched) > MATCHED_SESSIONS:
                        del matched[next(iter(matched))]
        elif event == "exit":
            if check is not None:
                session = record.get("session")
                if type(session) is not str or matched.pop(session, 0) is not None:
                    continue
            status = record.get("exit")
            exits[status if type(status) is int else hashable(status)] += 1
    return result


# ---------------------------------------------------------------- values


def hashable(value: object) -> object:
    """Strings, numbers and None as they are; lists and objects as their JSON."""
    if type(value) in (list, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def keep_most_common(counter: Counter[Any], size: int) -> None:
    kept = counter.most_common(size)
    counter.clear()
    counter.update(dict(kept))


def hashable_combo(combo: Combo) -> Combo:
    decision, profile, rule, canonical, key, client = map(hashable, combo)
    return (decision, profile, rule, canonical, key, client)


def label(value: object) -> str:
    """How a counted value is shown: text as is, None as "", anything else as JSON."""
    if type(value) is str:
        return value
    return "" if value is None else json.dumps(value)


def canonical_stamp(stamp: object) -> str | None:
    """The time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (sortable text), or None if invalid."""
    if type(stamp) is not str:
        return None
    try:
        moment = fromisoformat(stamp)  # also validates the fast path below
    except ValueError:
        return None
    if len(stamp) == CANONICAL_STAMP_LENGTH and stamp[26] == "Z" and stamp[10] == "T" and stamp[19] == ".":
        return stamp
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(stamp: str | None) -> datetime | None:
    return None if stamp is None else datetime.fromisoformat(stamp)


# ---------------------------------------------------------------- results


def field_rankings(combos: Counter[Combo]) -> dict[str, Ranking]:
    per_field: list[Counter[str]] = [Counter() for _ in RANKED]
    for combo, count in combos.items():
        for counter, value in zip(per_field, combo, strict=True):
            counter[label(value)] += count
    return {field: ranking(counter) for field, counter in zip(RANKED, per_field, strict=True)}


def ranking(counter: Counter[object] | Counter[str], top: int = TOP) -> Ranking:
    shown: Counter[str] = Counter()
    for value, count in counter.items():
        shown[label(value)] += count
    return Ranking(tuple(shown.most_common(top)), len(shown), sum(shown.values()))


def hour_of_day(hours: Counter[str]) -> tuple[int, ...]:
    counts = [0] * HOURS_PER_DAY
    for hour, count in hours.items():
        counts[int(hour[11:13])] += count
    return tuple(counts)


def per_day(hours: Counter[str]) -> tuple[tuple[str, int], ...]:
    days: Counter[str] = Counter()
    for hour, count in hours.items():
        days[hour[:10]] += count
    return tuple(sorted(days.items()))


def busiest_hour(hours: Counter[str]) -> tuple[datetime, int] | None:
    if not hours:
        return None
    hour, count = max(hours.items(), key=lambda item: (item[1], item[0]))
    return datetime.fromisoformat(f"{hour}:00:00+00:00"), count
