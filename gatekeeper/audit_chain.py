"""`gatekeeper audit verify [--log F] [--head SEQ:SHA256]`: check the hash chain of an audit
log (gatekeeper.audit writes `seq` and `prev` on every record where it can read the log).

Reported, each with its line number: a record whose `prev` is not the SHA-256 of the line
before it (a record removed, edited or moved between them), a `seq` that does not follow
(removed or reordered), a line that is not a record, an unchained record after chained
ones (written by a writer that could not read the log, or forged without the chain).
`--head SEQ:SHA256` (a head taken from syslog, or written down earlier) must still be in
the file: a truncated or replaced file fails there even if what is left chains.
"""

from __future__ import annotations

import argparse
import json
import sys

from gatekeeper.audit import line_hash

DEFAULT_LOG = "/var/log/gatekeeper/audit.jsonl"


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
    if not seen_head:
        problems.append(f"head seq {head[0]} sha256 {head[1]} is not in the file: truncated or replaced")  # type: ignore[index]
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gatekeeper audit verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", default=DEFAULT_LOG, help=f"default: {DEFAULT_LOG}")
    parser.add_argument("--head", help="SEQ:SHA256 of a record that must still be in the file")
    options = parser.parse_args(argv)
    head = None
    if options.head:
        seq, _, digest = options.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            parser.error("--head takes SEQ:SHA256")
        head = (int(seq), digest)
    try:
        with open(options.log, "rb") as log:
            lines = log.read().splitlines()
    except OSError as error:
        sys.stderr.write(f"gatekeeper audit verify: cannot read {options.log}: {error.strerror}\n")
        return 66
    problems = verify(lines, head)
    for problem in problems:
        print(f"{options.log}: {problem}")
    if problems:
        return 1
    last = lines[-1] if lines else b""
    print(f"ok: {options.log}: {len(lines)} records chain; head seq "
          f"{json.loads(last).get('seq') if last else '-'} sha256 {line_hash(last) if last else '-'}")
    return 0
