"""The README's install steps and what the end-to-end stack runs do not drift apart.

The README's install block runs `sh sshd_snippets/install.sh STEP...`; the
stack runs the same script's steps (INSTALL_STEPS in tests/e2e/stack.py) or
says why it does one another way. Both lists, and the script's own, must be
the same steps in the same order.
"""

from __future__ import annotations

import re
import shlex

from tests.e2e.stack import INSTALL_SCRIPT, INSTALL_STEPS, REPO_ROOT


def readme_install_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Install and deploy", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def readme_steps() -> list[str]:
    steps = []
    for line in readme_install_block().splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["sh", "sshd_snippets/install.sh"]:
            steps += words[2:]
    return steps


def script_steps() -> list[str]:
    """The steps the script's dispatcher accepts, in the order of its usage comment."""
    text = INSTALL_SCRIPT.read_text()
    case = re.search(r"\n    (packages \|[^)]*)\)", text)
    assert case is not None
    return [step.strip() for step in case.group(1).replace("\\", "").split("|")]


def test_readme_and_stack_run_the_same_steps_in_the_same_order() -> None:
    assert readme_steps() == [step for step, _ in INSTALL_STEPS]


def test_the_script_knows_exactly_these_steps() -> None:
    assert script_steps() == readme_steps()


def test_the_stack_runs_every_step_it_can() -> None:
    skipped = {step: why for step, why in INSTALL_STEPS if not why.startswith("run")}
    assert set(skipped) == {"packages", "account", "gatekeeper", "policy", "reload"}, skipped


def test_readme_never_suggests_the_agents_own_key_file() -> None:
    block = readme_install_block()
    assert ">> /etc/ssh/authorized_keys/ai-worker" in block
    assert ".ssh/authorized_keys" not in block.replace("never ~ai-worker/.ssh", "")
