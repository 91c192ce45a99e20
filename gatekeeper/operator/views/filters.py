"""Which decision records an operator asked to see.

``Criteria`` holds the parsed command-line filters; ``matcher`` turns them
into one predicate over a decision record; ``raw_prefilter`` gives a cheap test
on the raw line that is only ever False for lines that cannot match, so a
year of logs can be searched without parsing every line.
"""

from __future__ import annotations

import ipaddress
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Final, TypeVar

from gatekeeper.operator.views.records import Record, Triggers, is_decision, is_exit, text_field

Check = Callable[[Record], bool]
T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_RELATIVE: Final = re.compile(r"-?(\d+)\s*([smhdw])")
_NAMED_DAYS: Final = MappingProxyType({"today": 0, "yesterday": 1})
_UNIT_SECONDS: Final = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800})
# Characters JSON can only spell verbatim or as \uXXXX: printable ASCII except
# the quote, the backslash and the slash (which has the short escape "\/").
_PLAIN_JSON_TEXT: Final = re.compile(r"[ !#-.0-\[\]-~]+")


@dataclass(frozen=True)
class Criteria:
    """Filters from the command line; None means "any"."""

    decision: str | None = None  # "allow" or "deny"
    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None
    key: str | None = None
    client: str | None = None  # an address or a CIDR network
    rule: str | None = None
    grep: str | None = None
    profile: str | None = None
    session: str | None = None
    canonical: str | None = None  # a canonical command or its leading words ("container")
    not_rules: tuple[str, ...] = ()


# ---------------------------------------------------------------- time bounds


def parse_time_bound(text: str, now: datetime) -> datetime:
    """``2h``/``-2h``, ``30m``, ``7d``, ``2w`` before ``now``; ``now``, ``today``,
    ``yesterday`` (midnight UTC); or an ISO date/datetime (UTC if naive)."""
    word = text.strip().lower()
    if word == "now":
        return now
    if word in _NAMED_DAYS:
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=_NAMED_DAYS[word])
    relative = _RELATIVE.fullmatch(word)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(seconds=int(amount) * _UNIT_SECONDS[unit])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        message = f"not a time: {text!r} (use e.g. -1h, 7d, today, yesterday, 2026-11-01, 2026-11-01T12:00Z)"
        raise ValueError(message) from None
    return as_utc(moment)


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def record_time(record: Record) -> datetime | None:
    """The record's ``ts`` as an aware datetime, or None if missing or malformed."""
    stamp = record.get("ts")
    if type(stamp) is not str:
        return None
    try:
        return as_utc(datetime.fromisoformat(stamp))
    except ValueError:
        return None


# ---------------------------------------------------------------- predicates


def matcher(criteria: Criteria) -> Check:
    """One predicate that is True for decision records meeting every criterion."""
    checks = tuple(build_checks(criteria))
    if not checks:
        return accept_all
    if len(checks) == 1:
        return checks[0]
    return lambda record: all(check(record) for check in checks)


def matcher_or_none(criteria: Criteria) -> Check | None:
    """Like ``matcher``, but None when every decision matches (saves a call per record)."""
    return None if criteria == Criteria() else matcher(criteria)


def accept_all(record: Record) -> bool:
    return True


def build_checks(criteria: Criteria) -> Iterator[Check]:
    for field in ("decision", "user", "rule", "profile", "session"):
        wanted = getattr(criteria, field)
        if wanted is not None:
            yield field_equals(field, wanted)
    if criteria.not_rules:
        excluded = frozenset(criteria.not_rules)
        yield lambda record: record.get("rule") not in excluded
    if criteria.canonical is not None:
        yield canonical_is(criteria.canonical)
    if criteria.key is not None:
        yield key_is(criteria.key)
    if criteria.client is not None:
        yield client_in(criteria.client)
    if criteria.grep is not None:
        yield text_contains(criteria.grep)
    if criteria.since is not None or criteria.until is not None:
        yield time_within(criteria.since, criteria.until)


def field_equals(field: str, wanted: str) -> Check:
    return lambda record: record.get(field) == wanted


def key_is(fingerprint: str) -> Check:
    """Match ``SHA256:abcdef`` given as ``SHA256:abc``, ``abc`` or the whole fingerprint."""
    prefix = fingerprint.removeprefix("SHA256:")

    def check(record: Record) -> bool:
        key = record.get("key")
        return type(key) is str and key.removeprefix("SHA256:").startswith(prefix)

    return check


def canonical_is(wanted: str) -> Check:
    """The canonical command, or every command below it (``container`` matches ``container run``)."""
    words = " ".join(wanted.split())

    def check(record: Record) -> bool:
        canonical = record.get("canonical")
        return type(canonical) is str and (canonical == words or canonical.startswith(words + " "))

    return check


def client_in(address: str) -> Check:
    """Match the client address (first word of SSH_CONNECTION) against an address or CIDR."""
    try:
        network: Network | None = ipaddress.ip_network(address, strict=False)
    except ValueError:
        network = None
    inside = lru_cache(maxsize=4096)(lambda client: client_matches(client, address, network))
    return lambda record: inside(text_field(record, "client"))


def client_matches(client: str, address: str, network: Network | None) -> bool:
    first = client.split(" ", 1)[0]
    if network is None:
        return first == address
    try:
        return ipaddress.ip_address(first) in network
    except ValueError:
        return False


def text_contains(needle: str) -> Check:
    """Substring of the verbatim command or of its canonical path."""
    return lambda record: needle in text_field(record, "cmd") or needle in text_field(record, "canonical")


def time_within(since: datetime | None, until: datetime | None) -> Check:
    def check(record: Record) -> bool:
        moment = record_time(record)
        if moment is None:
            return False
        return (since is None or moment >= since) and (until is None or moment < until)

    return check


# ---------------------------------------------------------------- streams


def select(records: Iterable[Record], check: Check, *, keep_exits: bool) -> Iterator[Record]:
    """Decisions that pass ``check``; exit lines too when pairing needs them."""
    for record in records:
        if is_decision(record):
            if check(record):
                yield record
        elif keep_exits and is_exit(record):
            yield record


def last(items: Iterable[T], limit: int | None) -> Iterable[T]:
    """The last ``limit`` items (all when None), in their order."""
    return items if limit is None else deque(items, maxlen=limit)


# ---------------------------------------------------------------- raw pre-filter


def raw_prefilter(criteria: Criteria, *, keep_exits: bool) -> Triggers:
    """Strings such that a line containing none of them cannot match (() = no pre-filter).

    An exact-text criterion made only of characters that JSON can write just
    verbatim or as ``\\uXXXX`` appears verbatim in any line that matches,
    unless the line holds a ``\\u`` escape. Journald's string MESSAGE nests our
    JSON verbatim (its escaping only adds backslashes before quotes and
    backslashes, and turns ``\\u`` into ``\\\\u``, which still contains ``\\u``);
    a byte-array MESSAGE is caught by "MESSAGE". Exit lines are kept when
    pairing needs them.
    """
    needle = rarest_needle(criteria)
    if needle is None:
        return ()
    return (needle.encode("ascii"), b"\\u", b"MESSAGE", *((b"exit",) if keep_exits else ()))


def rarest_needle(criteria: Criteria) -> str | None:
    """The exact-text criterion likely to be in fewest lines, if any can be a needle."""
    c = criteria
    for value in (c.session, c.grep, c.rule, c.profile, c.decision, c.user):
        if value and _PLAIN_JSON_TEXT.fullmatch(value):
            return value
    return None
