"""Plain-text and JSON Lines output, for pipes and scripts (no rich).

Plain text is one tab-separated line per event; fields are escaped, so a tab
or newline inside an agent's string can never split a line or a column.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TextIO

from gatekeeper.operator.views.escape import visible
from gatekeeper.operator.views.records import Event, ReadStats
from gatekeeper.operator.views.rows import Row, json_line, row_of, with_exit
from gatekeeper.operator.views.summary import Ranking, Summary


def write_json_lines(events: Iterable[Event], out: TextIO) -> None:
    write = out.write
    for event in events:
        write(json_line(with_exit(event)) + "\n")


def write_plain(events: Iterable[Event], out: TextIO) -> None:
    write = out.write
    for event in events:
        write(plain_row(row_of(event)) + "\n")


def plain_row(row: Row) -> str:
    decision = row.decision.upper()
    fields = (row.time, decision, f"{row.key} {row.client}", row.canonical, row.command, row.why, row.outcome)
    return "\t".join(fields).rstrip("\t")


def summary_lines(summary: Summary) -> list[str]:
    lines = [f"decisions: {summary.decisions}", f"first seen: {stamp(summary.first_seen)}"]
    lines.append(f"last seen: {stamp(summary.last_seen)}")
    for field, ranking in summary.by_field.items():
        lines.extend(ranking_lines(f"by {field}", ranking))
    lines.extend(ranking_lines("top refused commands", summary.top_refused))
    lines.extend(ranking_lines("exit statuses", summary.exit_statuses))
    lines.append("attempts by hour of day (UTC): " + " ".join(map(str, summary.hour_of_day)))
    lines.append("decisions per day (UTC):")
    lines.extend(f"  {day}  {count:>9}" for day, count in summary.per_day)
    if summary.busiest_hour is not None:
        moment, count = summary.busiest_hour
        lines.append(f"busiest hour: {moment:%Y-%m-%d %H}:00Z ({count})")
    if summary.approximate:
        lines.append("note: too many distinct values; rare ones dropped, counts are lower bounds")
    return lines


def ranking_lines(title: str, ranking: Ranking) -> list[str]:
    lines = [f"{title}: ({ranking.distinct} distinct)"]
    lines.extend(f"  {count:>9}  {visible(label) or '-'}" for label, count in ranking.top)
    if ranking.rest:
        lines.append(f"  {ranking.rest:>9}  (others)")
    return lines


def stamp(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"


def stats_warning(stats: ReadStats) -> str | None:
    """One line for stderr about lines that were not records, or None."""
    if not stats.corrupt:
        return None
    where = ", ".join(visible(name) + (f":{number}" if number else "") for name, number in stats.samples)
    more = ", ..." if stats.corrupt > len(stats.samples) else ""
    return f"{stats.corrupt} corrupted line(s) skipped ({where}{more})"


def summary_json(summary: Summary) -> str:
    """The summary as one JSON object (ASCII only, agent strings escaped)."""
    document = {
        "decisions": summary.decisions,
        "first_seen": iso(summary.first_seen),
        "last_seen": iso(summary.last_seen),
        "by": {field: ranking_json(ranking) for field, ranking in summary.by_field.items()},
        "top_refused": ranking_json(summary.top_refused),
        "exit_statuses": ranking_json(summary.exit_statuses),
        "hour_of_day": list(summary.hour_of_day),
        "per_day": dict(summary.per_day),
        "busiest_hour": None
        if summary.busiest_hour is None
        else [iso(summary.busiest_hour[0]), summary.busiest_hour[1]],
        "approximate": summary.approximate,
    }
    return json_line(document)


def ranking_json(ranking: Ranking) -> dict[str, object]:
    return {
        "top": [list(pair) for pair in ranking.top],
        "distinct": ranking.distinct,
        "total": ranking.total,
    }


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
