"""``gatekeeper audit``: list, filter, summarise or follow the audit log.

Output goes through exactly one of three writers: JSON Lines (``--json``),
plain tab-separated text (stdout is not a terminal) or rich (a terminal).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Final

from gatekeeper.views import plain
from gatekeeper.views.errors import NoInput, UsageError, ViewError
from gatekeeper.views.filters import (
    Criteria,
    last,
    matcher,
    parse_time_bound,
    raw_prefilter,
    select,
)
from gatekeeper.views.follow import follow_events
from gatekeeper.views.parallel import available_cpus, tally_sources
from gatekeeper.views.records import (
    DEFAULT_LOG,
    Event,
    ReadStats,
    Record,
    Source,
    expand_sources,
    iter_records,
    pair_exits,
)
from gatekeeper.views.rows import row_of

FOLLOW_BACKLOG: Final = 10


def audit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatekeeper audit", description="Read the gatekeeper audit log.")
    parser.add_argument(
        "--log",
        action="append",
        metavar="FILE",
        help=f"log file, repeatable; - for stdin (default {DEFAULT_LOG})",
    )
    parser.add_argument(
        "--no-rotated", action="store_true", help="skip rotated siblings (FILE.1, FILE.2.gz, ...)"
    )
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--denied", dest="decision", action="store_const", const="deny")
    decision.add_argument("--allowed", dest="decision", action="store_const", const="allow")
    parser.add_argument(
        "--since", metavar="WHEN", help="2h, 30m, 7d, 2w or an ISO date/time (UTC if no zone)"
    )
    parser.add_argument("--until", metavar="WHEN", help="same forms as --since; exclusive")
    parser.add_argument("--user", help="exact user name")
    parser.add_argument("--key", metavar="FP", help="key fingerprint, with or without SHA256:")
    parser.add_argument("--client", metavar="ADDR", help="client address or CIDR network")
    parser.add_argument("--rule", help="exact rule id")
    parser.add_argument("--grep", metavar="TEXT", help="substring of the command or canonical path")
    parser.add_argument("--limit", type=positive, metavar="N", help="only the last N matches")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--summary", action="store_true", help="counts, top refused commands, hours")
    mode.add_argument("--follow", action="store_true", help="keep showing new records (survives rotation)")
    parser.add_argument("--json", action="store_true", help="JSON Lines (a JSON summary with --summary)")
    return parser


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def criteria_from(args: argparse.Namespace, now: datetime) -> Criteria:
    try:
        since = None if args.since is None else parse_time_bound(args.since, now)
        until = None if args.until is None else parse_time_bound(args.until, now)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return Criteria(
        decision=args.decision,
        since=since,
        until=until,
        user=args.user,
        key=args.key,
        client=args.client,
        rule=args.rule,
        grep=args.grep,
    )


# ---------------------------------------------------------------- entry point


def audit_main(argv: list[str]) -> int:
    """Entry point of ``gatekeeper audit``; returns the exit status."""
    args = audit_parser().parse_args(argv)
    try:
        return run_audit(args)
    except ViewError as error:
        return complain(str(error), error.exit_code)
    except BrokenPipeError:
        return quiet_broken_pipe()
    except OSError as error:
        return complain(str(NoInput.from_os_error(error)), NoInput.exit_code)
    except KeyboardInterrupt:
        return 130


def complain(message: str, code: int) -> int:
    print(f"gatekeeper audit: {message}", file=sys.stderr)
    return code


def quiet_broken_pipe() -> int:
    """The reader went away (``| head``): stop quietly, as cat does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def run_audit(args: argparse.Namespace) -> int:
    criteria = criteria_from(args, datetime.now(UTC))
    logs = args.log or [DEFAULT_LOG]
    stats = ReadStats()
    if args.follow:
        follow(logs, criteria, stats, args)
    elif args.summary:
        summarise(expand_sources(logs, rotated=not args.no_rotated), criteria, stats, as_json=args.json)
    else:
        listing = events(expand_sources(logs, rotated=not args.no_rotated), criteria, stats)
        write_events(last(listing, args.limit), as_json=args.json)
    warn_about(stats)
    return 0


def warn_about(stats: ReadStats) -> None:
    warning = plain.stats_warning(stats)
    if warning is not None:
        sys.stdout.flush()
        print(f"gatekeeper audit: {warning}", file=sys.stderr)


# ---------------------------------------------------------------- listing


def events(sources: Iterable[Source], criteria: Criteria, stats: ReadStats) -> Iterator[Event]:
    """Matching decisions in log order, paired with their exit lines when useful.

    Refusals have no exit line, so ``--denied`` skips pairing and lets the raw
    pre-filter skip every line without "deny" unparsed.
    """
    keep_exits = criteria.decision != "deny"
    triggers = raw_prefilter(criteria, keep_exits=keep_exits)
    records = iter_records(sources, stats, triggers=triggers)
    selected = select(records, matcher(criteria), keep_exits=keep_exits)
    return pair_exits(selected) if keep_exits else unpaired(selected)


def unpaired(records: Iterable[Record]) -> Iterator[Event]:
    return (Event(record, None) for record in records)


def write_events(listing: Iterable[Event], *, as_json: bool) -> None:
    if as_json:
        plain.write_json_lines(listing, sys.stdout)
    elif sys.stdout.isatty():
        from gatekeeper.views import render

        render.print_events((row_of(event) for event in listing), render.make_console())
    else:
        plain.write_plain(listing, sys.stdout)


# ---------------------------------------------------------------- summary


def summarise(sources: list[Source], criteria: Criteria, stats: ReadStats, *, as_json: bool) -> None:
    summary = tally_sources(sources, criteria, stats, workers=available_cpus()).result()
    if as_json:
        print(plain.summary_json(summary))
    elif sys.stdout.isatty():
        from gatekeeper.views import render

        render.print_summary(summary, render.make_console())
    else:
        print("\n".join(plain.summary_lines(summary)))


# ---------------------------------------------------------------- follow


def follow(logs: list[str], criteria: Criteria, stats: ReadStats, args: argparse.Namespace) -> None:
    if len(logs) != 1 or logs[0] == "-":
        raise UsageError("--follow takes exactly one --log FILE")
    backlog = args.limit or FOLLOW_BACKLOG
    live = follow_events(logs[0], criteria, stats, backlog=backlog)
    if args.json:
        for event in live:
            plain.write_json_lines([event], sys.stdout)
            sys.stdout.flush()
    else:
        follow_rows(live)


def follow_rows(live: Iterable[Event]) -> None:
    if not sys.stdout.isatty():
        for event in live:
            plain.write_plain([event], sys.stdout)
            sys.stdout.flush()
        return
    from gatekeeper.views import render

    console = render.make_console()
    for event in live:
        render.print_row_line(row_of(event), console)
