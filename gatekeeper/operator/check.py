"""`gatekeeper check`: the ForceCommand decision, dry (nothing runs, nothing is audited)."""

from __future__ import annotations

import argparse
import json
import sys

from gatekeeper.decision import Decision, RealWorld, decide
from gatekeeper.errors import EX_NOPERM
from gatekeeper.messages import denial_line
from gatekeeper.policy import Policy, load_policy

EX_DATAERR = 65


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    policy = load_policy(options.policy, options.name)
    if options.from_file:
        return check_many(options.from_file, policy)
    if options.command is None:
        sys.stderr.write("gatekeeper check: give a COMMAND or --from FILE\n")
        return EX_DATAERR
    decision = decide(options.command, policy, RealWorld())
    print_decision(decision, policy, as_json=options.json)
    return 0 if decision.allowed else EX_NOPERM


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatekeeper check", description=__doc__)
    parser.add_argument("--policy", help="policy file (default: the embedded default)")
    parser.add_argument("--name", help="the profile, as --name on the ForceCommand (default: default)")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--from", dest="from_file", metavar="FILE",
                        help="JSON Lines with a 'cmd' field ('-' for stdin); one result line each")
    parser.add_argument("command", nargs="?", help="the SSH command string, e.g. 'docker ps'")
    return parser.parse_args(argv)


def print_decision(decision: Decision, policy: Policy, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(decision.as_dict()))
    elif decision.allowed:
        print(f"allow: {decision.reason}; argv: {json.dumps(decision.argv)}")
    else:
        print(denial_line(decision.rule, decision.reason, policy, decision.canonical))


def check_many(path: str, policy: Policy) -> int:
    """One JSON result per input line, in order; audit decision lines qualify as input."""
    worst = 0
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, 1):
            result, status = check_line(line, number, policy)
            if result is not None:
                print(json.dumps(result))
            worst = max(worst, status)
    return worst


def check_line(line: str, number: int, policy: Policy) -> tuple[dict[str, object] | None, int]:
    if not line.strip():
        return None, 0
    try:
        command = json.loads(line)["cmd"]
        if not isinstance(command, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return {"line": number, "error": "not a JSON object with a string 'cmd'"}, EX_DATAERR
    decision = decide(command, policy, RealWorld())
    return {"line": number, "cmd": command, **decision.as_dict()}, (0 if decision.allowed else EX_NOPERM)
