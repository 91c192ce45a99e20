"""`gatekeeper policy show [--policy F]`, `gatekeeper policy check FILE` and
`gatekeeper policy compile FILE` (writes FILE.compiled for fast loading)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from gatekeeper.errors import EX_CONFIG, PolicyError
from gatekeeper.policy import COMPILED_SUFFIX, compile_policy, compiled_overrides, load_policy


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    if options.action == "check":
        return check(options.file)
    if options.action == "compile":
        return compile_file(options.file)
    policy = load_policy(options.policy)
    sys.stdout.write(f"# effective policy from {policy.source}\n")
    sys.stdout.write(to_toml(policy.settings))
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gatekeeper policy")
    actions = parser.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="print the effective policy as TOML")
    show.add_argument("--policy", help="policy file (default: the embedded default)")
    check_parser = actions.add_parser("check", help="validate a policy file")
    check_parser.add_argument("file")
    compile_parser = actions.add_parser(
        "compile", help="validate a policy file and write FILE.compiled, which loads without a TOML parser"
    )
    compile_parser.add_argument("file")
    return parser.parse_args(argv)


def check(path: str) -> int:
    try:
        policy = load_policy(path)
    except PolicyError as error:
        sys.stderr.write(f"gatekeeper policy check: {error.message}\n")
        return EX_CONFIG
    print(f"ok: {path} (sha256 {policy.sha256}); {len(policy.allowed)} allowed commands")
    print(f"compiled: {compiled_state(path, policy.sha256)}")
    return 0


def compiled_state(path: str, sha256: str) -> str:
    if compiled_overrides(path, sha256) is not None:
        return f"{path}{COMPILED_SUFFIX} is current and trusted (fast loading)"
    if os.path.lexists(path + COMPILED_SUFFIX):
        return (f"{path}{COMPILED_SUFFIX} is stale or untrusted and will be ignored; "
                f"run 'gatekeeper policy compile {path}'")
    return f"none; 'gatekeeper policy compile {path}' makes every SSH command faster"


def compile_file(path: str) -> int:
    try:
        target = compile_policy(path)
    except PolicyError as error:
        sys.stderr.write(f"gatekeeper policy compile: {error.message}\n")
        return EX_CONFIG
    except OSError as error:
        sys.stderr.write(f"gatekeeper policy compile: cannot write {path}.compiled: {error.strerror}\n")
        return EX_CONFIG
    print(f"ok: wrote {target}; recompile after every change to {path} (a stale one is ignored)")
    return 0


def to_toml(settings: dict[str, dict[str, object]]) -> str:
    """Our schema only has strings, booleans and lists of strings."""
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string
