"""The README and docs/ stay short, linked and in step with the code.

The rule-id table in docs/operating.md is generated from gatekeeper/rules.py
(`python -m tests.test_docs` rewrites it); a test fails when the two differ, so
the list an operator reads cannot drift from the ids a denial carries.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from gatekeeper import errors
from gatekeeper.rules import FAMILIES, RULES

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
OPERATING = DOCS / "operating.md"
BEGIN, END = "<!-- rules:begin -->\n", "<!-- rules:end -->\n"
README_LIMIT = 11_000  # "about 10 KB": the rest belongs in docs/ by task
LINK = re.compile(r"\]\(([^)\s]+)\)")


def rule_table() -> str:
    rows = [f"| `{rule}` | {why} |" for rule, why in RULES.items()]
    rows += [f"| `{prefix}*` | {why} |" for prefix, why in FAMILIES.items()]
    return "\n".join(["| rule | why |", "| --- | --- |", *rows]) + "\n"


def with_rule_table(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}{rule_table()}{END}{tail}"


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to '-'."""
    slugs = set()
    in_fence = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def test_the_rule_table_is_the_one_rules_py_generates() -> None:
    text = OPERATING.read_text()
    assert text == with_rule_table(text), "run: .venv/bin/python -m tests.test_docs"


def test_the_rule_table_is_not_empty() -> None:  # control: the comparison has something to compare
    section = OPERATING.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    assert "`host-path`" in section and "`flag-*`" in section


def test_every_forcecommand_exit_status_is_documented() -> None:
    section = OPERATING.read_text().split("### Exit statuses", 1)[1].split("\n### ", 1)[0]
    codes = {errors.EX_SOFTWARE, errors.EX_TEMPFAIL, errors.EX_NOPERM, errors.EX_CONFIG, 64, 65, 66, 69}
    missing = [code for code in sorted(codes) if f"\n| {code} |" not in section]
    assert not missing


def test_readme_stays_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes: move details to docs/ (see its last table)"


def test_readme_keeps_the_commands_that_work_on_a_fresh_machine() -> None:
    text = README.read_text()
    for command in ("`./run demo`", "`./run up`", "`./run test`"):
        assert command in text
    # CI runs the README's test command itself, first after .ci/fresh-state.sh (then its resident pass)
    lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    fresh = lines.index("bash .ci/fresh-state.sh")
    assert lines[fresh + 1] == "GK_E2E_REQUIRE_NEIGHBOUR=1 ./run test"


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(path.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        checks_anchor = anchor and linked.suffix == ".md"
        if not linked.exists() or (checks_anchor and anchor not in anchors(linked)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    assert not broken_links(path)


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:  # control for the test above
    page = tmp_path / "page.md"
    page.write_text("# Title\n[a](page.md#title) [b](page.md#nothing) [c](missing.md#x) [d](#title)\n")
    assert broken_links(page) == ["page.md#nothing", "missing.md#x"]


if __name__ == "__main__":
    OPERATING.write_text(with_rule_table(OPERATING.read_text()))
    sys.exit(0)
