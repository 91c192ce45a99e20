"""``gatekeeper audit``: list, filter, summarise or follow the audit log.

Listings stream: each row is written as soon as it is read (constant memory
whatever the size of the log), through one of four writers: ``-o short`` (the
default on a terminal: one line per command fitted to its width, in a pager),
``-o tsv`` (the default in a pipe: every field, tab-separated), ``-o verbose``
and ``-o json``. Only ``--summary`` on a terminal uses rich.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Final, TextIO

from gatekeeper.operator.views import plain, short
from gatekeeper.operator.views.errors import NoInput, UsageError, ViewError
from gatekeeper.operator.views.filters import (
    Criteria,
    last,
    matcher,
    parse_time_bound,
    raw_prefilter,
    select,
)
from gatekeeper.operator.views.follow import follow_events
from gatekeeper.operator.views.pager import paged
from gatekeeper.operator.views.parallel import available_cpus, tally_sources
from gatekeeper.operator.views.records import (
    DEFAULT_LOG,
    Event,
    ReadStats,
    Record,
    Source,
    expand_sources,
    iter_records,
    pair_exits,
)

FOLLOW_BACKLOG: Final = 10


EXAMPLES: Final = """\
examples:
  gatekeeper audit                         newest last, in a pager on a terminal
  gatekeeper audit -n 20 --denied          the last 20 refusals
  gatekeeper audit --since yesterday --until today --profile ci
  gatekeeper audit --since -1h --key SHA256:Ab12 --not-rule allowed
  gatekeeper audit --canonical container --rule host-path -o verbose
  gatekeeper audit --follow -o json | jq .  one record per command
  gatekeeper audit --summary --since 7d     counts by profile, rule, key and day
  gatekeeper rules                          every rule id with its why
"""

OUTPUTS: Final = ("short", "tsv", "verbose", "json")


def audit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper audit",
        description="Read the gatekeeper audit log.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        "-S",
        "--since",
        metavar="WHEN",
        help="-1h, 30m, 7d, 2w, today, yesterday, now or an ISO date/time (UTC if no zone)",
    )
    parser.add_argument("-U", "--until", metavar="WHEN", help="same forms as --since; exclusive")
    parser.add_argument("--user", help="exact user name")
    parser.add_argument("--profile", metavar="NAME", help="policy profile (sshd --name), exact")
    parser.add_argument("--session", metavar="ID", help="one SSH session, exact")
    parser.add_argument("--key", metavar="FP", help="key fingerprint or a prefix of it, SHA256: optional")
    parser.add_argument("--client", metavar="ADDR", help="client address or CIDR network")
    parser.add_argument("--rule", help="exact rule id (see gatekeeper rules)")
    parser.add_argument(
        "--not-rule", action="append", default=[], metavar="RULE", help="leave out this rule, repeatable"
    )
    parser.add_argument("--canonical", metavar="CMD", help="canonical command or its first words: container")
    parser.add_argument("--grep", metavar="TEXT", help="substring of the command or canonical path")
    parser.add_argument(
        "-n", "--lines", "--limit", dest="limit", type=positive, metavar="N", help="only the last N matches"
    )
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, help="short (terminal default), tsv (pipe default), verbose, json"
    )
    parser.add_argument("--no-pager", action="store_true", help="do not pipe a terminal listing into $PAGER")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--summary", action="store_true", help="counts, top refused commands, hours")
    mode.add_argument("--follow", action="store_true", help="keep showing new records (survives rotation)")
    parser.add_argument("--json", action="store_true", help="-o json (a JSON summary with --summary)")
    return parser


TIME_OPTIONS: Final = ("-S", "--since", "-U", "--until")


def joined_negative_times(argv: list[str]) -> list[str]:
    """``--since -1h`` as ``--since=-1h``: argparse would take -1h for an option."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in TIME_OPTIONS and index + 1 < len(argv) and argv[index + 1].startswith("-"):
            out.append(f"{word}={argv[index + 1]}")
            index += 2
            continue
        out.append(word)
        index += 1
    return out


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
    if since is not None and until is not None and since >= until:
        raise UsageError(f"empty time range: --since {args.since} is not before --until {args.until}")
    if since is not None and since > now:
        raise UsageError(f"--since {args.since} is in the future (did you mean -{args.since.lstrip('+')}?)")
    for rule in (args.rule, *args.not_rule):
        check_rule_id(rule)
    return Criteria(
        decision=args.decision,
        since=since,
        until=until,
        user=args.user,
        key=args.key,
        client=args.client,
        rule=args.rule,
        grep=args.grep,
        profile=args.profile,
        session=args.session,
        canonical=args.canonical,
        not_rules=tuple(args.not_rule),
    )


def check_rule_id(rule: str | None) -> None:
    from gatekeeper import rules

    if rule is None or rules.is_known(rule):
        return
    close = rules.suggestion(rule)
    hint = f" (did you mean '{close}'?)" if close else ""
    raise UsageError(f"unknown rule id {rule!r}{hint}; 'gatekeeper rules' lists them")


# ---------------------------------------------------------------- entry point


def audit_main(argv: list[str]) -> int:
    """Entry point of ``gatekeeper audit``; returns the exit status."""
    if argv[:1] == ["verify"]:  # the hash chain (gatekeeper.audit_chain), not a listing
        from gatekeeper.operator.views.verify import main as verify

        return verify(argv[1:])
    args = audit_parser().parse_args(joined_negative_times(argv))
    if args.json:
        args.output = "json"
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
        write_events(last(listing, args.limit), args.output, use_pager=not args.no_pager)
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


def write_events(listing: Iterable[Event], output: str | None, *, use_pager: bool) -> None:
    """Stream the listing: every row is written as soon as it is read."""
    terminal = sys.stdout.isatty()
    output = output or ("short" if terminal else "tsv")
    with paged(use_pager and output != "json") as out:
        write_listing(listing, output, out, terminal=terminal, header=terminal)
        out.flush()


def write_listing(
    listing: Iterable[Event], output: str, out: TextIO, *, terminal: bool, header: bool = False
) -> None:
    if output == "json":
        plain.write_json_lines(listing, out)
    elif output == "tsv":
        plain.write_plain(listing, out)
    elif output == "verbose":
        short.write_verbose(listing, out)
    else:
        short.write_short(listing, out, layout_for(out, terminal=terminal), header=header)


def layout_for(out: TextIO, *, terminal: bool) -> short.Layout:
    """Fitted to the terminal (even through a pager); uncut in a pipe."""
    if not terminal:
        return short.Layout(None)
    colour = "NO_COLOR" not in os.environ
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        columns = 0
    if columns <= 0:  # a terminal that does not know its size
        text = os.environ.get("COLUMNS", "")
        columns = int(text) if text.isdigit() and int(text) > 0 else 80
    return short.Layout(columns, colour)


# ---------------------------------------------------------------- summary


def summarise(sources: list[Source], criteria: Criteria, stats: ReadStats, *, as_json: bool) -> None:
    summary = tally_sources(sources, criteria, stats, workers=available_cpus()).result()
    if as_json:
        print(plain.summary_json(summary))
    elif sys.stdout.isatty():
        from gatekeeper.operator.views import render

        render.print_summary(summary, render.make_console())
    else:
        print("\n".join(plain.summary_lines(summary)))


# ---------------------------------------------------------------- follow


def follow(logs: list[str], criteria: Criteria, stats: ReadStats, args: argparse.Namespace) -> None:
    if len(logs) != 1 or logs[0] == "-":
        raise UsageError("--follow takes exactly one --log FILE")
    backlog = args.limit or FOLLOW_BACKLOG
    live = follow_events(logs[0], criteria, stats, backlog=backlog)
    terminal = sys.stdout.isatty()
    output = args.output or ("short" if terminal else "tsv")
    header = terminal and output == "short"
    for event in live:  # no pager: --follow never ends
        write_listing([event], output, sys.stdout, terminal=terminal, header=header)
        header = False
        sys.stdout.flush()
