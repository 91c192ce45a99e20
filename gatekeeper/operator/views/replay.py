"""``gatekeeper replay``: what would a candidate policy have decided?

Every past decision record's verbatim ``cmd`` is decided again under the new
policy; commands whose outcome flips (allowed→denied, denied→allowed) are
grouped by canonical command and new rule (``docker ps`` and ``docker
container ls -a`` are one row, with the first spelling as example and how many
spellings there were) and listed with how often and when the agent sent them, so an operator tightens
or loosens a policy with evidence. Exit status: 0 nothing changes, 1 some
decisions change (like diff), 66 a log is unreadable, 78 the policy is invalid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

from gatekeeper.operator.views.errors import BadPolicy, NoInput, ViewError
from gatekeeper.operator.views.escape import shown, visible
from gatekeeper.operator.views.plain import stats_warning
from gatekeeper.operator.views.records import (
    DEFAULT_LOG,
    ReadStats,
    Record,
    expand_sources,
    is_decision,
    iter_records,
    text_field,
)
from gatekeeper.operator.views.rows import json_line

SHOWN_LIMIT: Final = 200
DECISION_CACHE: Final = 65_536
OLD_DECISIONS: Final = MappingProxyType({"allow": True, "deny": False})
REPLAY_ERROR_RULE: Final = "replay-error"


@dataclass(frozen=True)
class Verdict:
    """The parts of a core ``Decision`` replay compares and shows."""

    allowed: bool
    canonical: str | None
    rule: str
    reason: str


Decider = Callable[[str], Verdict]


@dataclass(frozen=True)
class Change:
    """One command whose decision flips under the candidate policy."""

    cmd: str
    was_allowed: bool
    old_rule: str
    new: Verdict
    count: int
    first_seen: str
    last_seen: str
    canonical: str = ""
    spellings: int = 1

    @property
    def now_denied(self) -> bool:
        return self.was_allowed and not self.new.allowed

    @property
    def label(self) -> str:
        return "allow→deny" if self.now_denied else "deny→allow"

    @property
    def shown_command(self) -> str:
        more = f" (+{self.spellings - 1} other spellings)" if self.spellings > 1 else ""
        return shown(self.cmd, SHOWN_LIMIT) + more

    @property
    def shown_canonical(self) -> str:
        return visible(self.new.canonical or "-")

    @property
    def shown_why(self) -> str:
        return shown(f"{self.new.rule}: {self.new.reason} (was {self.old_rule})", SHOWN_LIMIT)

    @property
    def last_seen_label(self) -> str:
        return shown(self.last_seen, 40)

    def as_json(self) -> Record:
        return {
            "cmd": self.cmd,
            "canonical": self.canonical,
            "spellings": self.spellings,
            "from": "allow" if self.was_allowed else "deny",
            "to": "allow" if self.new.allowed else "deny",
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "old_rule": self.old_rule,
            "new": {
                "canonical": self.new.canonical,
                "rule": self.new.rule,
                "reason": self.new.reason,
            },
        }


@dataclass(frozen=True)
class ReplayReport:
    decisions: int
    still_allowed: int
    still_denied: int
    errors: int
    changes: tuple[Change, ...]

    @property
    def now_denied(self) -> int:
        return sum(change.count for change in self.changes if change.now_denied)

    @property
    def now_allowed(self) -> int:
        return sum(change.count for change in self.changes if not change.now_denied)

    def headline(self) -> str:
        text = (
            f"{self.decisions} decisions replayed: {self.now_denied} allow→deny, "
            f"{self.now_allowed} deny→allow, {self.still_allowed} still allowed, "
            f"{self.still_denied} still denied"
        )
        return text + (f", {self.errors} errors (counted as deny)" if self.errors else "")


# ---------------------------------------------------------------- replaying


SPELLINGS_KEPT: Final = 1000  # distinct spellings remembered per group (then counted as "at least")
FlipKey = tuple[str, bool, str]  # canonical command (or the command), old decision, new rule


class _Flip:
    __slots__ = ("cmd", "count", "first", "last", "new", "old_rule", "spellings")

    def __init__(self, cmd: str, new: Verdict, old_rule: str, seen: str) -> None:
        self.cmd, self.new, self.old_rule = cmd, new, old_rule
        self.count, self.first, self.last = 0, seen, seen
        self.spellings: set[str] = set()


def replay(records: Iterable[Record], decide: Decider) -> ReplayReport:
    """Decide each decision record's ``cmd`` again and collect what flips."""
    flips: dict[FlipKey, _Flip] = {}
    same = {True: 0, False: 0}
    errors = total = 0
    for record in records:
        old = old_decision(record)
        if old is None:
            continue
        total += 1
        verdict = decide(record["cmd"])
        errors += verdict.rule == REPLAY_ERROR_RULE
        if verdict.allowed == old:
            same[old] += 1
        else:
            note_flip(flips, record, old, verdict)
    return ReplayReport(total, same[True], same[False], errors, changes_of(flips))


def old_decision(record: Record) -> bool | None:
    """True/False for a replayable past decision (allow/deny with a command), else None."""
    verdict = record.get("decision")
    if not is_decision(record) or type(verdict) is not str or type(record.get("cmd")) is not str:
        return None
    return OLD_DECISIONS.get(verdict)


def note_flip(flips: dict[FlipKey, _Flip], record: Record, old: bool, new: Verdict) -> None:
    seen = text_field(record, "ts")
    command = record["cmd"]
    key = (new.canonical or text_field(record, "canonical") or command, old, new.rule)
    flip = flips.get(key)
    if flip is None:
        flip = flips[key] = _Flip(command, new, text_field(record, "rule"), seen)
    flip.count += 1
    if len(flip.spellings) < SPELLINGS_KEPT:
        flip.spellings.add(command)
    flip.first, flip.last = min(flip.first, seen), max(flip.last, seen)


def changes_of(flips: dict[FlipKey, _Flip]) -> tuple[Change, ...]:
    changes = (
        Change(flip.cmd, old, flip.old_rule, flip.new, flip.count, flip.first, flip.last,
               canonical=canonical, spellings=len(flip.spellings))
        for (canonical, old, _), flip in flips.items()
    )
    return tuple(sorted(changes, key=lambda change: (not change.now_denied, -change.count, change.cmd)))


# ---------------------------------------------------------------- the core's decision


def core_decider(policy_path: str) -> Decider:
    """Decide with the real core: ``load_policy`` + ``decide`` on the real filesystem."""
    from gatekeeper import decision, policy, worlds
    from gatekeeper.errors import PolicyError

    try:
        candidate = policy.load_policy(policy_path)
    except PolicyError as error:
        raise BadPolicy(error.message) from None
    world = worlds.OfflineEngineWorld()  # owners are runtime state, not the policy's question
    return cached(lambda command: decision.decide(command, candidate, world))


def cached(decide: Callable[[str], object]) -> Decider:
    """Wrap a core ``decide`` into a cached Decider; a crash is a denial."""

    @lru_cache(maxsize=DECISION_CACHE)
    def verdict(command: str) -> Verdict:
        try:
            outcome = decide(command)
        except Exception as error:  # noqa: BLE001 (fail closed: an error is a denial)
            return Verdict(allowed=False, canonical=None, rule=REPLAY_ERROR_RULE, reason=repr(error))
        return Verdict(
            allowed=bool(getattr(outcome, "allowed", False)),
            canonical=getattr(outcome, "canonical", None),
            rule=str(getattr(outcome, "rule", "")),
            reason=str(getattr(outcome, "reason", "")),
        )

    return verdict


# ---------------------------------------------------------------- command line


def replay_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper replay",
        description="Re-decide past commands under a candidate policy and show what changes.",
        epilog="examples:\n"
        "  gatekeeper replay --policy /tmp/candidate.toml           the live log and its rotations\n"
        "  gatekeeper replay --policy new.toml --json old.jsonl.gz  one JSON line per change\n\n"
        "Exit status: 0 nothing changes, 1 some decisions change, 66 unreadable log, 78 invalid policy.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy", required=True, metavar="NEW", help="candidate policy file")
    parser.add_argument(
        "logs", nargs="*", metavar="LOG", help=f"audit logs (default {DEFAULT_LOG}; - for stdin)"
    )
    parser.add_argument("--no-rotated", action="store_true", help="do not read rotated siblings")
    parser.add_argument("--json", action="store_true", help="one JSON line per changed command")
    return parser


def replay_main(argv: list[str], *, decider: Callable[[str], Decider] = core_decider) -> int:
    """Entry point of ``gatekeeper replay``; returns the exit status."""
    args = replay_parser().parse_args(argv)
    try:
        return run_replay(args, decider(args.policy))
    except ViewError as error:
        print(f"gatekeeper replay: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"gatekeeper replay: {NoInput.from_os_error(error)}", file=sys.stderr)
        return NoInput.exit_code


def run_replay(args: argparse.Namespace, decide: Decider) -> int:
    stats = ReadStats()
    sources = expand_sources(args.logs or [DEFAULT_LOG], rotated=not args.no_rotated)
    report = replay(iter_records(sources, stats), decide)
    warning = stats_warning(stats)
    if warning is not None:
        print(f"gatekeeper replay: {warning}", file=sys.stderr)
    if args.json:
        sys.stdout.writelines(json_line(change.as_json()) + "\n" for change in report.changes)
        print(report.headline(), file=sys.stderr)
    else:
        show_report(report)
    return 1 if report.changes else 0


def show_report(report: ReplayReport) -> None:
    if sys.stdout.isatty():
        from gatekeeper.operator.views import render

        render.print_replay(report, render.make_console())
        return
    print(report.headline())
    for change in report.changes:
        print("\t".join((change.label, str(change.count), change.shown_command, change.shown_why)))
