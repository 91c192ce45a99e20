"""`gatekeeper policy suggest --log FILE [--profile P] [--policy F]`: learning mode.

From the denials in an audit log, propose the smallest policy change that would have
allowed the everyday work that was denied, one change per line with its reason:

    not-allowed-subcommand   add the command path to [commands] allowed (never a blocked one)
    image-source             add the exact repository to [images] allowed
    flag-publish             add the host port to [ports] host_ports (never an address:
                             listening beyond loopback is the operator's decision, not a habit)

Nothing else is proposed: host paths outside the roots, privileged containers, host
namespaces, capabilities, the raw API and the other must-deny classes are never work
to learn. Every proposal is checked: the policy with it must still deny the whole
must-deny suite (a proposal that lets one through is dropped, and said so), and the
proposal is replayed over the same log, as `gatekeeper replay` would, to show what
it changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass

from gatekeeper.policy import Policy, load_policy, strings


@dataclass(frozen=True)
class Proposal:
    section: str
    key: str
    value: str
    reason: str
    example: str

    def line(self) -> str:
        return f"[{self.section}] {self.key} += {json.dumps(self.value)}   # {self.reason}"


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    from gatekeeper.operator.policy_cmd import default_policy

    path = options.policy or default_policy()
    policy = load_policy(path, options.profile)
    records = decision_records(options.log, options.profile)
    proposals = propose(policy, records)
    kept, dropped = screened(policy, proposals)
    for proposal, why in dropped:
        print(f"# not proposed: {proposal.line()}\n#   {why}")
    if not kept:
        print(f"# nothing to propose from {sum(1 for r in records if r.get('decision') == 'deny')} denials")
        return 0
    print(f"# proposed changes to {policy.source}, smallest first")
    for proposal in kept:
        print(proposal.line())
    print("\n# as TOML (merge into the policy file):")
    print(as_toml(policy, kept))
    print(f"# replay over {options.log}: {replayed(with_proposals(policy, kept), records)}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatekeeper policy suggest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", required=True, help="an audit log (JSON Lines)")
    parser.add_argument("--profile", help="only this profile's records (the --name of its key)")
    parser.add_argument("--policy", help="the policy to extend (default: the deployed one if present)")
    return parser.parse_args(argv)


def decision_records(path: str, profile: str | None) -> list[dict[str, object]]:
    found = []
    with open(path, encoding="utf-8", errors="surrogateescape") as log:
        for line in log:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("event") != "decision":
                continue
            if profile is not None and record.get("profile") != profile:
                continue
            if isinstance(record.get("cmd"), str):
                found.append(record)
    return found


def propose(policy: Policy, records: list[dict[str, object]]) -> list[Proposal]:
    """One proposal per distinct fix, with how many denials it answers."""
    from gatekeeper.decision import decide
    from gatekeeper.worlds import OfflineEngineWorld

    world = OfflineEngineWorld()
    wanted: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for record in records:
        if record.get("decision") != "deny":
            continue
        decision = decide(str(record["cmd"]), policy, world)  # again: the log may be older than the policy
        fix = fix_for(decision, str(record["cmd"]), policy)
        if fix is not None:
            wanted[fix] += 1
            examples.setdefault(fix, str(record["cmd"]))
    return [Proposal(section, key, value, f"{count} denial(s), e.g. {examples[(section, key, value)]!r}",
                     examples[(section, key, value)])
            for (section, key, value), count in sorted(wanted.items(), key=lambda item: -item[1])]


def fix_for(decision: object, command: str, policy: Policy) -> tuple[str, str, str] | None:
    rule, canonical = getattr(decision, "rule", ""), getattr(decision, "canonical", None)
    if getattr(decision, "allowed", True):
        return None
    if rule == "not-allowed-subcommand" and canonical and canonical not in policy.blocked:
        return ("commands", "allowed", canonical)
    if rule == "image-source":
        return image_fix(command)
    if rule == "flag-publish":
        return port_fix(command)
    return None


def image_fix(command: str) -> tuple[str, str, str] | None:
    from gatekeeper.image_refs import repository
    from gatekeeper.words import split_command

    words = [w for w in split_command(command)[1:] if not w.startswith("-")]
    for word in words[1:]:
        try:
            return ("images", "allowed", repository(word))
        except ValueError:
            continue
    return None


def port_fix(command: str) -> tuple[str, str, str] | None:
    """A loopback -p whose host port is outside the ranges: that port."""
    from gatekeeper.vetting.ports import normal_address, port_range, split_spec
    from gatekeeper.words import split_command

    words = split_command(command)
    from itertools import pairwise

    for flag, value in pairwise(words):
        if flag not in ("-p", "--publish"):
            continue
        try:
            address, host_ports = split_spec(value)
            if address and normal_address(address) in ("127.0.0.1", "::1") and host_ports:
                port_range(host_ports)
                return ("ports", "host_ports", host_ports)
        except ValueError:
            continue
    return None


def with_proposals(policy: Policy, proposals: list[Proposal]) -> Policy:
    settings = {section: dict(values) for section, values in policy.settings.items()}
    for proposal in proposals:
        current = list(strings(settings[proposal.section][proposal.key]))
        if proposal.value not in current:
            current.append(proposal.value)
        settings[proposal.section][proposal.key] = current
    out = Policy(settings, policy.source, policy.sha256)
    out.profile = policy.profile
    return out


def screened(policy: Policy, proposals: list[Proposal]) -> tuple[list[Proposal], list[tuple[Proposal, str]]]:
    """Keep the proposals that allow their example and under which the must-deny suite is
    still all denied."""
    from gatekeeper.decision import decide
    from gatekeeper.worlds import OfflineEngineWorld

    kept: list[Proposal] = []
    dropped: list[tuple[Proposal, str]] = []
    for proposal in proposals:
        candidate = with_proposals(policy, [*kept, proposal])
        example = decide(proposal.example, candidate, OfflineEngineWorld())
        if not example.allowed:
            dropped.append((proposal, f"it would not allow {proposal.example!r} either "
                                      f"(rule {example.rule}: {example.reason})"))
            continue
        escapes = must_deny_escapes(candidate)
        if escapes:
            dropped.append((proposal, f"it would let a must-deny case through: {escapes[0]}"))
        else:
            kept.append(proposal)
    return kept, dropped


def must_deny_escapes(policy: Policy) -> list[str]:
    from gatekeeper.operator.policy_test import Runner, must_deny_cases

    runner = Runner(None)
    runner.policies[None] = policy
    return [outcome.case.command for outcome in runner.run(must_deny_cases()) if not outcome.passed]


def replayed(policy: Policy, records: list[dict[str, object]]) -> str:
    from gatekeeper.decision import decide
    from gatekeeper.operator.views.replay import cached, replay
    from gatekeeper.worlds import OfflineEngineWorld

    world = OfflineEngineWorld()
    return replay(records, cached(lambda command: decide(command, policy, world))).headline()


def as_toml(policy: Policy, proposals: list[Proposal]) -> str:
    lines = []
    for section in dict.fromkeys(p.section for p in proposals):
        lines.append(f"[{section}]")
        for key in dict.fromkeys(p.key for p in proposals if p.section == section):
            values = list(strings(policy.settings[section][key]))
            values += [p.value for p in proposals
                       if (p.section, p.key) == (section, key) and p.value not in values]
            lines.append(f"{key} = {json.dumps(values)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
