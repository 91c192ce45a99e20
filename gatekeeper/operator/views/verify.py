"""`gatekeeper audit verify [--log F] [--head SEQ:SHA256]`: check the hash chain of an audit log.

What is reported, and why, is gatekeeper.audit_chain's docstring.
"""

from __future__ import annotations

import argparse
import json
import sys

from gatekeeper.audit import line_hash
from gatekeeper.audit_chain import __doc__ as CHAIN_DOC
from gatekeeper.audit_chain import verify
from gatekeeper.operator.views.records import DEFAULT_LOG


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gatekeeper audit verify", description=CHAIN_DOC,
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
