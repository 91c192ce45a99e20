"""`gatekeeper rules [RULE ...] [--json]`: every rule id gatekeeper.rules lists, with its why."""

from __future__ import annotations

import json
import sys
from typing import Final

from gatekeeper.rules import FAMILIES, RULES, is_known, suggestion, why

USAGE: Final = """\
usage: gatekeeper rules [RULE ...] [--json]

List every rule id a decision can carry, with why it refuses; with RULE,
only those (and what the agent is told to do instead).

examples:
  gatekeeper rules
  gatekeeper rules host-path-nested flag-privileged
  gatekeeper rules --json | jq -r 'keys[]'
"""


def main(argv: list[str]) -> int:
    if any(word in ("-h", "--help") for word in argv):
        sys.stdout.write(USAGE)
        return 0
    as_json = "--json" in argv
    wanted = [word for word in argv if word != "--json"]
    unknown = [word for word in wanted if word.startswith("-") or not is_known(word)]
    if unknown:
        for word in unknown:
            close = suggestion(word)
            hint = f" (did you mean '{close}'?)" if close else ""
            sys.stderr.write(f"gatekeeper rules: unknown rule {word!r}{hint}\n")
        return 64
    everything = {**RULES, **{f"{prefix}*": text for prefix, text in FAMILIES.items()}}
    table = {rule: str(why(rule)) for rule in wanted} if wanted else everything
    if as_json:
        sys.stdout.write(json.dumps(table, indent=2) + "\n")
        return 0
    from gatekeeper.messages import HINTS

    width = max(map(len, table))
    for rule, text in table.items():
        sys.stdout.write(f"{rule:<{width}}  {text}\n")
        if wanted and rule in HINTS:
            sys.stdout.write(f"{'':<{width}}  agent is told: {HINTS[rule]}\n")
    return 0
