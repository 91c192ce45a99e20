"""House style: the tree is ruff-clean, gatekeeper/ mypy --strict clean (rules in pyproject.toml),
and every `# type: ignore` there names its error code and says why."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is in the test extra: pip install -e '.[test]'"
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    """mypy --strict over gatekeeper/ (its settings in pyproject.toml); never skipped."""
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "gatekeeper"],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert "No module named mypy" not in result.stderr, "mypy is in the test extra: pip install -e '.[test]'"
    assert result.returncode == 0, result.stdout + result.stderr


# `# type: ignore[code]  # why`: the error code mypy reports, then a reason on the same line.
EXPLAINED_IGNORE = re.compile(r"#\s*type:\s*ignore\[[a-z-]+(?:,\s*[a-z-]+)*\]  # \S")
ANY_IGNORE = re.compile(r"#\s*type:\s*ignore")


def unexplained_ignores(text: str) -> list[int]:
    """Line numbers of type: ignore comments without an error code or without a why."""
    comments = [(token.start[0], token.string) for token in
                tokenize.generate_tokens(io.StringIO(text).readline) if token.type == tokenize.COMMENT]
    return [line for line, comment in comments
            if ANY_IGNORE.search(comment) and not EXPLAINED_IGNORE.search(comment)]


def test_every_type_ignore_has_a_code_and_a_why() -> None:
    found = {str(path.relative_to(REPO)): unexplained_ignores(path.read_text(encoding="utf-8"))
             for path in sorted((REPO / "gatekeeper").rglob("*.py"))}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_unexplained_ignores_are_found() -> None:
    """Control: the scan tells a bare, a code-only and a reason-only ignore from an explained one,
    and reads comments, not strings."""
    source = (
        "a = f()  # type: ignore\n"
        "b = f()  # type: ignore[arg-type]\n"
        "c = f()  # type: ignore  # no code\n"
        "d = f()  # type: ignore[arg-type]  # the schema checked it\n"
        "e = f()  # type: ignore[attr-defined, no-any-return]  # bashlex has no stubs\n"
        "s = '# type: ignore'\n"
    )
    assert unexplained_ignores(source) == [1, 2, 3]
