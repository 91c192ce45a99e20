"""House style: the tree is ruff-clean, gatekeeper/ mypy --strict clean (rules in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
