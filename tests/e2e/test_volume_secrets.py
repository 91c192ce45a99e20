"""The operator's volume driver options: red team, session 5.

A cifs or nfs volume of docker's local driver keeps its mount options in one option,
`o=username=ops,password=...`, under a key that names no secret; inspect showed it to the
agent. Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone); the control
in the same test is the same inspect on the bare engine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

VOLUME = "gk-rt5-share"
SECRET = "gk-rt5-cifs-secret"


@pytest.fixture
def operator_share(stack: Stack) -> Iterator[str]:
    """Created, never mounted: the engine keeps the options as given."""
    stack.docker("volume", "rm", "-f", VOLUME, check=False)
    stack.docker("volume", "create", "--driver", "local", "--opt", "type=cifs", "--opt",
                 "device=//127.0.0.1/share", "--opt", f"o=username=ops,password={SECRET},vers=3.0", VOLUME)
    yield VOLUME
    stack.docker("volume", "rm", "-f", VOLUME, check=False)


def test_driver_option_pairs_naming_a_secret_are_redacted(stack: Stack, operator_share: str) -> None:
    control = stack.docker("volume", "inspect", operator_share).stdout
    assert SECRET in control

    seen = stack.ssh(f"docker volume inspect {operator_share}")
    assert seen.returncode == 0, seen.stderr
    assert SECRET.encode() not in seen.stdout
    assert b"username=ops,password=***,vers=3.0" in seen.stdout, seen.stdout
    template = stack.ssh(f"docker volume inspect --format '{{{{.Options.o}}}}' {operator_share}")
    assert template.returncode == 0 and SECRET.encode() not in template.stdout, template
