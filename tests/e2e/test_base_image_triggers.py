"""A base image's ONBUILD triggers: red team, session 5.

`ADD <url>` is refused in the agent's Dockerfiles (rule build-add-url): the engine fetches
the URL itself, on the host's network, so a loopback-only service (a metadata endpoint, a
local admin API) would end up in the agent's image. An image can carry the same step as an
ONBUILD trigger, which the builder runs in every build `FROM` it: an image pulled from any
registry brings its triggers along, and the agent's Dockerfile (`FROM that-image`) shows
none of them. Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone);
the control in the same test is the same build on the bare engine (the defence off).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import IMAGE, PROXY_ALONE, Stack, serving_on_loopback

pytestmark = pytest.mark.e2e

PREFIX = "gk-rt5-"
BASE = f"{PREFIX}triggers:1"  # stands for an image pulled from a registry: the operator did not build it
CHILD = "ai-rt5-child:1"  # the agent's tag, within the [names] prefix: only the trigger refuses it
SECRET = "gk-rt5-loopback-secret"


@pytest.fixture
def base_with_trigger(stack: Stack) -> Iterator[str]:
    """An image whose ONBUILD trigger ADDs a URL only the host's loopback reaches."""
    context = Path(tempfile.mkdtemp(prefix="gk-rt5-"))
    with serving_on_loopback(f"{SECRET}\n") as url:
        (context / "Dockerfile").write_text(f"FROM {IMAGE}\nONBUILD ADD {url} /secret\n")
        stack.docker("build", "-q", "-t", BASE, str(context))
        try:
            yield BASE
        finally:
            for tag in (CHILD, BASE):
                stack.docker("rmi", "-f", tag, check=False)
            shutil.rmtree(context, ignore_errors=True)


def test_a_base_images_onbuild_add_url_is_refused(stack: Stack, base_with_trigger: str) -> None:
    """The agent's `FROM <image with ONBUILD ADD <url>>` makes the engine fetch the URL on the
    host's network: refused like the same ADD in its own Dockerfile."""
    dockerfile = f"FROM {base_with_trigger}\n"
    context = Path(tempfile.mkdtemp(prefix="gk-rt5-"))
    try:  # Control: the same build on the bare engine runs the trigger and fetches the secret.
        (context / "Dockerfile").write_text(dockerfile)
        stack.docker("build", "-q", "-t", CHILD, str(context))
        assert SECRET in stack.docker("run", "--rm", CHILD, "cat", "/secret").stdout
        stack.docker("rmi", "-f", CHILD)
    finally:
        shutil.rmtree(context, ignore_errors=True)

    built = stack.ssh(f"docker build -q -t {CHILD} -", stdin=dockerfile.encode(), timeout=120)
    assert stack.refused(built), built
    if stack.mode != PROXY_ALONE:  # (b): the docker CLI shows the proxy's refusal its own way
        assert b"(rule build-add-url)" in built.stderr, built.stderr
    assert SECRET.encode() not in built.stdout + built.stderr
    assert not stack.docker("images", "-q", CHILD).stdout.strip()
