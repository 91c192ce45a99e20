"""Dockerfile lines as docker's parser reads them: red team, session 6.

Every check on a Dockerfile (ADD <url>: the engine fetches it on the host's network, rule
build-add-url; LABEL keys; FROM and the base image's ONBUILD steps; [images]) first splits it
into instructions. gatekeeper did so with Python's str.splitlines/strip/split, docker's parser
(both builders) otherwise: a leading BOM is dropped (`# escape=` after it counts), "\\r", "\\v"
and "\\f" separate words inside a line, and a continuation needs spaces or tabs alone after the
escape character. Each shape of tests/dockerfile_shapes.py hid `ADD <loopback URL>` from the
old reading. Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone); the
control in the same test builds the same Dockerfile on the bare engine, which fetches the secret.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.dockerfile_shapes import SHAPES

from .stack import IMAGE, Stack, audit_offset, docker_client, root_docker_env, serving_on_loopback
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

TAG = "ai-rt6-lines:1"
BASE = "ai-rt6-lines-base:1"  # stands for an image pulled from a registry with an ONBUILD step
SECRET = "gk-rt6-lines-secret"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving_on_loopback(f"{SECRET}\n") as served:
        yield served


def root_build(tag: str, dockerfile: bytes) -> None:
    built = subprocess.run([str(docker_client()), "build", "-q", "-t", tag, "-"], input=dockerfile,
                           env=root_docker_env(), capture_output=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr


def assert_agent_refused(stack: Stack, dockerfile: bytes) -> None:
    since = audit_offset()
    built = stack.ssh(f"docker build -q -t {TAG} -", stdin=dockerfile, timeout=120)
    assert_refused(stack, built, since, rule="build-add-url")
    assert SECRET.encode() not in built.stdout + built.stderr
    assert not stack.docker("images", "-q", TAG).stdout.strip()


@pytest.mark.parametrize("shape", SHAPES)
def test_an_add_hidden_from_pythons_reading_is_refused(stack: Stack, url: str, shape: str) -> None:
    dockerfile = SHAPES[shape].format(url=url, base=IMAGE).encode()
    try:  # Control: the bare engine's parser sees the ADD and fetches the secret.
        root_build(TAG, dockerfile)
        assert SECRET in stack.docker("run", "--rm", TAG, "cat", "/secret").stdout
    finally:
        stack.docker("rmi", "-f", TAG, check=False)
    assert_agent_refused(stack, dockerfile)


def test_a_bom_does_not_hide_the_base_images_onbuild_step(stack: Stack, url: str) -> None:
    """`\\ufeffFROM base`: the old reading found no FROM, so the base's ONBUILD ADD went unchecked."""
    dockerfile = f"\ufeffFROM {BASE}\n".encode()
    try:
        root_build(BASE, f"FROM {IMAGE}\nONBUILD ADD {url} /secret\n".encode())
        root_build(TAG, dockerfile)  # Control: the trigger runs and fetches the secret.
        assert SECRET in stack.docker("run", "--rm", TAG, "cat", "/secret").stdout
        stack.docker("rmi", "-f", TAG)
        assert_agent_refused(stack, dockerfile)
    finally:
        stack.docker("rmi", "-f", TAG, BASE, check=False)
