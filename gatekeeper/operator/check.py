"""`gatekeeper check`: the ForceCommand decision, dry (nothing runs, nothing is audited).

Scoped commands (stop, rm, logs, ...) are decided by asking the engine who owns
each named object, as the ForceCommand does. So `check` either asks the real
engine (the policy's docker.host; behind gatekeeper proxy, for a caller not in
[proxy.users] such as root, its [proxy] upstream), and says once, up front, when it cannot
reach it (exit 69, nothing decided), or, with `--offline`, assumes every named
object exists and is the agent's, and says so in every result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from gatekeeper.decision import Decision, decide
from gatekeeper.errors import EX_NOPERM, Denied
from gatekeeper.messages import denial_line
from gatekeeper.operator.engine_host import operator_engine_host
from gatekeeper.policy import Policy, load_policy
from gatekeeper.worlds import OfflineEngineWorld, RealWorld

EX_DATAERR = 65
CHECK_EXAMPLES = """\
examples:
  gatekeeper check 'docker run -v /etc:/x busybox'
  gatekeeper check --name ci --json 'docker ps'
  gatekeeper check --offline --from /var/log/gatekeeper/audit.jsonl   (exit lines are skipped)
"""
EX_UNAVAILABLE = 69  # sysexits: the engine the answers depend on cannot be reached
PROBE_TIMEOUT = 15.0
OFFLINE_NOTE = "offline: every named object assumed to exist and be the agent's"


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    from gatekeeper.operator.policy_cmd import default_policy

    policy = load_policy(options.policy or default_policy(), options.name)
    if options.policy is None:  # say which one the default was
        sys.stderr.write(f"gatekeeper check: policy {policy.source}\n")
    if options.command is None and not options.from_file:
        sys.stderr.write("gatekeeper check: give a COMMAND or --from FILE\n")
        return EX_DATAERR
    if options.offline:
        world: RealWorld = OfflineEngineWorld()
    else:
        # Root is none of the proxy's [proxy.users]: behind the proxy, ask its upstream.
        policy.host = operator_engine_host(policy.settings)
        world = RealWorld()
        problem = engine_problem(policy, world)
        if problem is not None:
            sys.stderr.write(unreachable_line(policy, problem))
            return EX_UNAVAILABLE
    if options.from_file:
        return check_many(options.from_file, policy, world, offline=options.offline)
    decision = decide(options.command, policy, world)
    print_decision(decision, policy, as_json=options.json, offline=options.offline)
    return 0 if decision.allowed else EX_NOPERM


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatekeeper check", description=__doc__, epilog=CHECK_EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", help="policy file (default: /etc/gatekeeper/policy.toml if present, "
                                         "else the embedded default)")
    parser.add_argument("--name", help="the profile, as --name on the ForceCommand (default: default)")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--offline", action="store_true",
                        help="do not ask the engine: assume every named object exists and is the agent's")
    parser.add_argument("--from", dest="from_file", metavar="FILE",
                        help="JSON Lines with a 'cmd' field ('-' for stdin); one result line each")
    parser.add_argument("command", nargs="?", help="the SSH command string, e.g. 'docker ps'")
    return parser.parse_args(argv)


def engine_problem(policy: Policy, world: RealWorld) -> str | None:
    """None if the engine answers `docker version` as the ForceCommand would reach it; else why not."""
    try:
        status, _, err = world.run_docker(policy, ["version", "--format", "{{.Server.Version}}"],
                                          timeout=PROBE_TIMEOUT)
    except (subprocess.TimeoutExpired, Denied):  # Denied: past gatekeeper.bounded's limits
        return f"no answer within {PROBE_TIMEOUT:.0f} s"
    except OSError as error:
        return f"{error.strerror or error}: {error.filename or policy.binary}"
    if status == 0:
        return None
    lines = [line.strip() for line in err.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"docker version exited {status}"


def unreachable_line(policy: Policy, problem: str) -> str:
    return (f"gatekeeper check: cannot reach the docker engine at {policy.host} ({problem}); "
            "nothing was decided: scoped commands need the engine to say who owns each object. "
            "Run check where the engine answers, or add --offline to assume every named object "
            "exists and is the agent's\n")


def print_decision(decision: Decision, policy: Policy, *, as_json: bool, offline: bool) -> None:
    if as_json:
        print(json.dumps(result_dict(decision, offline=offline)))
    elif decision.allowed:
        note = f" ({OFFLINE_NOTE})" if offline else ""
        print(f"allow: {decision.reason}; argv: {json.dumps(decision.argv)}{note}")
    else:
        note = f" ({OFFLINE_NOTE})" if offline else ""
        print(denial_line(decision.rule, decision.reason, policy, decision.canonical) + note)


def result_dict(decision: Decision, *, offline: bool) -> dict[str, object]:
    result = decision.as_dict()
    if offline:
        result["offline"] = OFFLINE_NOTE
    return result


def check_many(path: str, policy: Policy, world: RealWorld, *, offline: bool) -> int:
    """One JSON result per input line, in order; audit decision lines qualify as input."""
    worst = 0
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, 1):
            result, status = check_line(line, number, policy, world, offline=offline)
            if result is not None:
                print(json.dumps(result))
            worst = max(worst, status)
    return worst


def check_line(line: str, number: int, policy: Policy, world: RealWorld,
               *, offline: bool) -> tuple[dict[str, object] | None, int]:
    if not line.strip():
        return None, 0
    try:
        record = json.loads(line)
        if isinstance(record, dict) and record.get("event") not in (None, "decision"):
            return None, 0  # an audit log's exit lines: nothing to decide
        command = record["cmd"]
        if not isinstance(command, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return {"line": number, "error": "not a JSON object with a string 'cmd'"}, EX_DATAERR
    decision = decide(command, policy, world)
    result = {"line": number, "cmd": command, **result_dict(decision, offline=offline)}
    return result, (0 if decision.allowed else EX_NOPERM)
