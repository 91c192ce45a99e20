"""The operator's own images: red team, session 5.

Inspect answers about an image the agent does not own are redacted (`Config.Env` values,
values under `[redact]` keys), so the operator's image built with `ENV DB_PASSWORD=...`
shows `DB_PASSWORD=***`. Each runs in every layout (a: CLI layer + proxy, b: proxy alone,
c: CLI layer alone).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import IMAGE, MODES, Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("stack", MODES, indirect=True, scope="module"),
]

PREFIX = "gk-rt5-"
OPERATOR_IMAGE = f"{PREFIX}operator-app:1"
SECRET = "gk-rt5-image-secret"


@pytest.fixture
def operator_image(stack: Stack) -> Iterator[str]:
    """The operator's local build (no registry, no owner label) with a secret in its environment."""
    name = f"{PREFIX}builder"
    stack.docker("rm", "-f", name, check=False)
    stack.docker("create", "--name", name, IMAGE, "true")
    stack.docker("commit", "--change", f"ENV DB_PASSWORD={SECRET}", name, OPERATOR_IMAGE)
    stack.docker("rm", "-f", name)
    yield OPERATOR_IMAGE
    stack.docker("rmi", "-f", OPERATOR_IMAGE, check=False)


@pytest.mark.xfail(strict=True, reason="OPEN (redteam s5, design): the agent may run any image on the "
                   "engine, the operator's local builds too; inspect's redaction of their environment "
                   "is then moot (`docker run IMAGE env`)")
def test_the_operators_image_environment_stays_hidden(stack: Stack, operator_image: str) -> None:
    """Contrast (the rule that holds): inspect redacts the operator's image's environment. The
    attack: a container of that image prints it. (Control: root's same run prints the secret.)"""
    inspected = stack.ssh(f"docker image inspect --format '{{{{json .Config.Env}}}}' {operator_image}")
    assert inspected.returncode == 0, inspected.stderr
    assert SECRET.encode() not in inspected.stdout and b"DB_PASSWORD=***" in inspected.stdout
    control = stack.docker("run", "--rm", operator_image, "env").stdout
    assert SECRET in control

    seen = stack.ssh(f"docker run --rm {operator_image} env")
    assert SECRET.encode() not in seen.stdout, "the operator's image environment reached the agent"
