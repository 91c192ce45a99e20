"""`gatekeeper policy show [--policy F]`, `gatekeeper policy check [FILE]` (a linter:
see gatekeeper.operator.lint, then the must-deny suite), `gatekeeper policy test CASES
[--policy F]` (expected decisions: gatekeeper.operator.policy_test) and
`gatekeeper policy compile FILE` (writes FILE.compiled for fast loading). Without a
file, show, check and test use the deployed policy (/etc/gatekeeper/policy.toml) when
it exists, and say which one they used."""

from __future__ import annotations

import argparse
import json
import os
import sys

from gatekeeper.errors import EX_CONFIG, PolicyError
from gatekeeper.policy import COMPILED_SUFFIX, compile_policy, compiled_overrides, load_policy

DEPLOYED_POLICY = "/etc/gatekeeper/policy.toml"
EXAMPLES = """\
examples:
  gatekeeper policy check                       lint the deployed policy
  gatekeeper policy check /tmp/candidate.toml   every error with file, line and fix
  gatekeeper policy show                        effective values; "# from FILE" marks the file's
  gatekeeper policy test cases.toml --policy /tmp/candidate.toml   expected decisions, for CI
  gatekeeper policy compile /etc/gatekeeper/policy.toml
"""


def default_policy() -> str | None:
    """The deployed policy if there is one, else None (the embedded default)."""
    return DEPLOYED_POLICY if os.path.exists(DEPLOYED_POLICY) else None


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    if options.action == "check":
        return check(options.file or default_policy())
    if options.action == "compile":
        return compile_file(options.file)
    if options.action == "suggest":
        from gatekeeper.operator.suggest import main as suggest

        return suggest(argv[1:])
    if options.action == "test":
        return run_cases(options.cases, options.policy or default_policy())
    path = options.policy or default_policy()
    policy = load_policy(path)
    sys.stdout.write(f"# effective policy from {policy.source}\n")
    sys.stdout.write(to_toml(policy.settings, file_keys(path)))
    return 0


def file_keys(path: str | None) -> set[tuple[str, str]]:
    """(section, key) pairs the policy file sets itself."""
    if path is None:
        return set()
    import tomllib

    try:
        with open(path, "rb") as handle:
            parsed = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    return {(s, k) for s, values in parsed.items() if isinstance(values, dict) for k in values}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gatekeeper policy", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    actions = parser.add_subparsers(dest="action", required=True)
    show = actions.add_parser("show", help="print the effective policy as TOML", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("--policy", help=f"policy file (default: {DEPLOYED_POLICY} if present, else embedded)")
    check_parser = actions.add_parser(
        "check", help="lint a policy file: errors weaken confinement, warnings never apply",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_parser.add_argument("file", nargs="?", help=f"default: {DEPLOYED_POLICY}")
    test_parser = actions.add_parser(
        "test", help="decide every case in CASES (TOML or JSON Lines) and diff against the expected verdict",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test_parser.add_argument("cases", help="*.toml ([[case]] tables) or JSON Lines (one case per line)")
    test_parser.add_argument("--policy", help=f"default: {DEPLOYED_POLICY} if present, else embedded")
    suggest_parser = actions.add_parser(
        "suggest", help="propose the smallest policy change that allows the denied everyday work in a log")
    suggest_parser.add_argument("--log", required=True, help="an audit log (JSON Lines)")
    suggest_parser.add_argument("--profile", help="only this profile's records")
    suggest_parser.add_argument("--policy", help=f"default: {DEPLOYED_POLICY} if present, else embedded")
    compile_parser = actions.add_parser(
        "compile", help="validate a policy file and write FILE.compiled, which loads without a TOML parser"
    )
    compile_parser.add_argument("file")
    return parser.parse_args(argv)


def check(path: str | None) -> int:
    if path is None:
        sys.stderr.write(f"gatekeeper policy check: no {DEPLOYED_POLICY}; give a FILE\n")
        return EX_CONFIG
    from gatekeeper.operator.lint import ERROR, lint

    findings = lint(path)
    for finding in findings:
        sys.stderr.write(f"{finding}\n")
    errors = sum(finding.level == ERROR for finding in findings)
    try:
        policy = load_policy(path)
    except PolicyError as error:
        if not errors:  # the loader refuses something the linter does not know: still an error
            sys.stderr.write(f"{path}: error: {error.message}\n")
            errors = 1
    else:
        errors += must_deny(path)
    if errors:
        sys.stderr.write(f"gatekeeper policy check: {path}: {errors} error(s), "
                         f"{sum(finding.level != ERROR for finding in findings)} warning(s)\n")
        return EX_CONFIG
    print(f"ok: {path} (sha256 {policy.sha256}); {len(policy.allowed)} allowed commands")
    print(f"compiled: {compiled_state(path, policy.sha256)}")
    return 0


def run_cases(cases_path: str, policy_path: str | None) -> int:
    """Exit 0 when every case got its expected decision, 1 otherwise (65: bad cases file)."""
    from gatekeeper.operator.policy_test import CasesError, Runner, load_cases, report

    try:
        cases = load_cases(cases_path)
    except CasesError as error:
        sys.stderr.write(f"gatekeeper policy test: {error.message}\n")
        return error.exit_code
    runner = Runner(policy_path)
    failed = report(runner.run(cases), sys.stdout.write)
    source = runner.policy(None).source
    print(f"{'FAIL' if failed else 'ok'}: {len(cases) - failed} of {len(cases)} cases as expected "
          f"under {source}")
    return 1 if failed else 0


def must_deny(path: str) -> int:
    """Run the shipped must-deny suite; each escape the policy lets through is an error."""
    from gatekeeper.operator.policy_test import Runner, compose_control, must_deny_cases, report

    runner = Runner(path)
    cases = must_deny_cases()
    inconclusive = compose_control(runner)
    if inconclusive is not None:
        sys.stderr.write(f"{path}: warning: compose cases of the must-deny suite are inconclusive: "
                         f"{inconclusive}\n")
    outcomes = runner.run(cases)
    failed = report([outcome for outcome in outcomes if not outcome.passed],
                    lambda text: sys.stderr.write(f"{path}: error: must-deny case allowed: {text}"))
    if not failed:
        print(f"must-deny: all {len(cases)} escapes denied")
    return failed


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


def to_toml(settings: dict[str, dict[str, object]], from_file: set[tuple[str, str]] | None = None) -> str:
    """Our schema only has strings, booleans and lists of strings; values the file sets are marked."""
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            mark = "  # from the policy file" if (section, key) in (from_file or set()) else ""
            lines.append(f"{key} = {toml_value(value)}{mark}")
        lines.append("")
    return "\n".join(lines)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return json.dumps(value)  # a JSON string is a valid TOML basic string
