"""Rich output for a terminal. The only module that imports rich.

Every cell is a ``rich.text.Text`` built from an already escaped string (see
``rows`` and ``escape``); no string is ever passed as markup, so ``[bold]``
or ``[link=...]`` typed by the agent is shown as the characters it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal, TextIO

from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gatekeeper.operator.views.escape import visible
from gatekeeper.operator.views.rows import Row

if TYPE_CHECKING:
    from gatekeeper.operator.views.replay import Change, ReplayReport
    from gatekeeper.operator.views.summary import Ranking, Summary

BARS: Final = " ▁▂▃▄▅▆▇█"
KEY_SHOWN: Final = 19
ColorSystem = Literal["auto", "standard", "256", "truecolor", "windows"]  # rich's Console(color_system=)
DECISION_STYLE: Final = MappingProxyType({"allow": "green", "deny": "bold red"})


def make_console(
    file: TextIO | None = None, *, force_terminal: bool | None = None,
    color_system: ColorSystem | None = "auto",
) -> Console:
    """A console that interprets nothing: no markup, emoji codes or highlighting."""
    return Console(
        file=file,
        markup=False,
        emoji=False,
        highlight=False,
        force_terminal=force_terminal,
        color_system=color_system,
    )


def plain(text: str, style: str = "") -> Text:
    """A Text cell from an escaped string (never markup)."""
    return Text(text, style=style, no_wrap=False, overflow="fold")


# ---------------------------------------------------------------- listing


def print_events(rows: Iterable[Row], console: Console) -> None:
    table = Table(title="gatekeeper audit", show_lines=False, expand=False)
    for header in (
        "time (UTC)",
        "key / client",
        "decision",
        "canonical",
        "command",
        "rule",
        "exit",
    ):
        table.add_column(header, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*row_cells(row))
        count += 1
    table.caption = f"{count} decision(s), newest last"
    console.print(table)


def row_cells(row: Row) -> tuple[Text, ...]:
    return (
        plain(row.time, "dim"),
        plain(f"{short_key(row.key)} {row.client}", "cyan"),
        decision_cell(row.decision),
        plain(row.canonical),
        plain(row.command, "bold"),
        plain(row.why, "dim"),
        plain(row.outcome),
    )


def short_key(key: str) -> str:
    """``SHA256:`` and 12 characters of the fingerprint; --json and plain text show it whole."""
    return key if len(key) <= KEY_SHOWN + 1 else key[:KEY_SHOWN] + "…"


def decision_cell(decision: str) -> Text:
    return plain(decision.upper(), DECISION_STYLE.get(decision, "yellow"))


def print_row_line(row: Row, console: Console) -> None:
    """One event as one line, for --follow."""
    line = Text(" ").join((*row_cells(row)[:-1], plain(row.outcome, "dim")))
    console.print(line, soft_wrap=True)


# ---------------------------------------------------------------- summary


def print_summary(summary: Summary, console: Console) -> None:
    console.print(summary_header(summary))
    tables = [ranking_table(field, ranking) for field, ranking in summary.by_field.items()]
    tables.append(ranking_table("exit status", summary.exit_statuses))
    console.print(Columns(tables, padding=(0, 3)))
    console.print(ranking_table("top refused commands", summary.top_refused))
    console.print(hour_chart(summary.hour_of_day))
    console.print(day_table(summary.per_day))
    if summary.approximate:
        console.print(Text("too many distinct values: rare ones dropped, counts are lower bounds"))


def summary_header(summary: Summary) -> Group:
    first = "-" if summary.first_seen is None else f"{summary.first_seen:%Y-%m-%d %H:%M:%S}Z"
    last = "-" if summary.last_seen is None else f"{summary.last_seen:%Y-%m-%d %H:%M:%S}Z"
    lines = [
        Text(f"{summary.decisions} decisions", style="bold"),
        Text(f"first seen {first}   last seen {last}"),
    ]
    if summary.busiest_hour is not None:
        moment, count = summary.busiest_hour
        lines.append(Text(f"busiest hour {moment:%Y-%m-%d %H}:00Z with {count}"))
    return Group(*lines)


def ranking_table(title: str, ranking: Ranking) -> Table:
    """Count and value, most frequent first; the header says how many distinct values."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("count", justify="right")
    table.add_column(f"{title} ({ranking.distinct})", overflow="fold")
    for label, count in ranking.top:
        table.add_row(Text(str(count)), plain(visible(label) or "-"))
    if ranking.rest:
        table.add_row(Text(str(ranking.rest)), plain("(others)", "dim"))
    return table


def day_table(days: Sequence[tuple[str, int]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title="decisions per day (UTC)")
    table.add_column("day")
    table.add_column("count", justify="right")
    for day, count in days:
        table.add_row(Text(day), Text(str(count)))
    return table


def hour_chart(counts: Sequence[int]) -> Group:
    """Attempts by hour of day as one line of bars, hours labelled below."""
    peak = max(counts, default=0) or 1
    bars = "".join(BARS[round(count / peak * (len(BARS) - 1))] for count in counts)
    labels = "".join(str(hour % 10) for hour in range(len(counts)))
    return Group(
        Text("attempts by hour of day (UTC), peak " + str(max(counts, default=0))),
        Text(bars, style="magenta"),
        Text(labels, style="dim"),
    )


# ---------------------------------------------------------------- replay


def print_replay(report: ReplayReport, console: Console) -> None:
    console.print(Text(report.headline(), style="bold"))
    if report.changes:
        console.print(changes_table(report.changes))


def changes_table(changes: Iterable[Change]) -> Table:
    table = Table(title="decisions that would change", title_justify="left")
    for header in ("change", "count", "command", "canonical", "new rule", "last seen"):
        table.add_column(header, overflow="fold")
    for change in changes:
        table.add_row(*change_cells(change))
    return table


def change_cells(change: Change) -> tuple[Text, ...]:
    style = "bold red" if change.now_denied else "bold green"
    return (
        plain(change.label, style),
        Text(str(change.count)),
        plain(change.shown_command, "bold"),
        plain(change.shown_canonical),
        plain(change.shown_why, "dim"),
        plain(change.last_seen_label, "dim"),
    )
