"""The hash chain of an audit log, checked (gatekeeper.audit writes `seq` and `prev` on every
record where it can read the log); `gatekeeper audit verify` (gatekeeper.operator.views.verify)
is the command.

Reported, each with its line number: a record whose `prev` is not the SHA-256 of the line
before it (a record removed, edited or moved between them), a `seq` that does not follow
(removed or reordered), a line that is not a record, an unchained record after chained
ones (written by a writer that could not read the log, or forged without the chain).
`--head SEQ:SHA256` (a head taken from syslog, or written down earlier) must still be in
the file: a truncated or replaced file fails there even if what is left chains.
"""

from __future__ import annotations

import json

from gatekeeper.audit import line_hash


def verify(lines: list[bytes], head: tuple[int, str] | None = None) -> list[str]:
    problems: list[str] = []
    previous: bytes | None = None
    chained = False
    seen_head = head is None
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(f"line {number}: not a JSON record")
            previous = line
            continue
        problems += check_link(number, record, previous, chained)
        chained = chained or "prev" in record
        if head is not None and record.get("seq") == head[0] and line_hash(line) == head[1]:
            seen_head = True
        previous = line
    if head is not None and not seen_head:
        problems.append(f"head seq {head[0]} sha256 {head[1]} is not in the file: truncated or replaced")
    return problems


def check_link(number: int, record: dict[str, object], previous: bytes | None, chained: bool) -> list[str]:
    if "prev" not in record:
        return [f"line {number}: unchained record after chained ones"] if chained else []
    expected = "" if previous is None else line_hash(previous)
    problems = []
    if record["prev"] != expected:
        problems.append(f"line {number}: prev does not match line {number - 1}: a record was removed, "
                        f"edited or moved between them")
    if previous is not None:
        try:
            before = json.loads(previous).get("seq")
        except ValueError:
            before = None
        if isinstance(before, int) and record.get("seq") != before + 1:
            problems.append(f"line {number}: seq {record.get('seq')} does not follow {before}")
    return problems
