"""Starts refused at the proxy leave nothing behind and no client waiting (issue 12, layout b).

In layout (b) `docker run` reaches the proxy as a create, then a start; the proxy re-checks some
things only at the start: each bind source where it resolves now (the agent's shell may have
swapped it for a symlink since the create) and [limits] max_running. The engine removes an
AutoRemove (`--rm`) container whose start fails, and `docker run --rm` waits for that removal;
a start the proxy refused is no failure the engine saw, so the container stayed created and
`docker run --rm` hung. Every start-time refusal now goes through one path
(gatekeeper.proxy.vet.start_refused): a never-started --rm container is removed, and the
refusal says so.

Controls in the same test: the same steps with the refusal's cause taken out run (so the test
tells a refusal from a broken start), and the proxy restarted with the removal switched off
(vet.removed answers False) shows what happened before: the container stays, `docker run --rm`
does not return. Layouts (a) and (c): the CLI layer refuses the swapped source's start itself,
before the engine or the proxy sees it (`docker start` waits for nothing); see the note there.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    CLI_ALONE,
    IMAGE,
    PROXY_ALONE,
    PROXY_SOCKET,
    Stack,
    audit_offset,
    policy_extended,
    policy_rewritten,
    proxy_patched,
)
from .test_api_attacks import as_agent
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

BASE = AGENT_HOME / "work" / "ai-sr"
TARGET = Path("/var/tmp/gk-e2e-start-refusals")  # outside the allowed root
NAME = "ai-sr"
NO_REMOVAL = "import gatekeeper.proxy.vet as vet\nvet.removed = lambda engine, ident: False"
# The defence off for a start refused after its decision: the refusal forgets the container.
NO_SETTLING = ("import gatekeeper.proxy.server as server\n"
               "server.refused_after = lambda decided, refusal: refusal")
PROMPT = 30.0  # a refused command returns well within this; a hung one never does
# The swapped source resolves to TARGET: outside the allowed roots, on a mount without nosuid,nodev
SWAP_RULES = ("host-path", "host-path-mount")


def ours(stack: Stack) -> list[str]:
    return stack.docker("ps", "-aq", "--filter", f"name={NAME}").stdout.split()


def remove_ours(stack: Stack) -> None:
    stack.remove_named(NAME)


@pytest.fixture
def source(stack: Stack) -> Iterator[Path]:
    """An agent's directory to bind, and TARGET outside the root; afterwards gone, with our containers."""
    remove_ours(stack)
    src = BASE / "src"
    src.mkdir(parents=True, exist_ok=True)
    for path in (BASE, src):
        shutil.chown(path, AGENT, AGENT)
    TARGET.mkdir(exist_ok=True)
    yield src
    remove_ours(stack)
    shutil.rmtree(BASE, ignore_errors=True)
    shutil.rmtree(TARGET, ignore_errors=True)


def swap(src: Path) -> None:
    """What the agent's shell does between the create and the start: mv src src.old; ln -s TARGET src."""
    src.rename(src.with_name("src.old"))
    src.symlink_to(TARGET)


def unswap(src: Path) -> None:
    src.unlink()
    src.with_name("src.old").rename(src)


def created(stack: Stack, name: str, src: Path) -> None:
    result = stack.ssh(f"docker create --rm --name {name} -v {src}:/x {IMAGE} true", timeout=PROMPT)
    assert result.returncode == 0, result.stderr
    assert ours(stack), "the create made no container"


def test_a_refused_start_of_an_rm_container_removes_it(stack: Stack, source: Path) -> None:
    """docker create --rm -v src:/x; the source swapped for a symlink to TARGET; docker start."""
    created(stack, f"{NAME}-ok", source)  # control: nothing swapped, the start runs, --rm removes it
    result = stack.ssh(f"docker start {NAME}-ok", timeout=PROMPT)
    assert result.returncode == 0, result.stderr
    assert wait_gone(stack), ours(stack)

    created(stack, f"{NAME}-swap", source)
    swap(source)
    since = audit_offset()
    result = stack.ssh(f"docker start {NAME}-swap", timeout=PROMPT)
    assert_refused(stack, result, since)
    said = result.stderr.decode(errors="replace")
    assert any(f"(rule {rule})" in said for rule in SWAP_RULES), said
    if stack.mode == PROXY_ALONE:
        assert "(--rm, never started) was removed" in said, said
        assert not ours(stack), "the refused --rm container was left behind"
        unswap(source)
        created(stack, f"{NAME}-kept", source)
        swap(source)
        with proxy_patched(stack, NO_REMOVAL):  # control: the removal off, as before
            result = stack.ssh(f"docker start {NAME}-kept", timeout=PROMPT)
            assert result.returncode != 0
            said = result.stderr.decode(errors="replace")
            assert "stays created" in said, said
            assert ours(stack), "without the removal the container stays created"
    else:
        # The CLI layer refuses the start before the engine sees it: no start failed, nothing
        # waits for a removal; the container stays created as `docker create` left it.
        assert ours(stack)


def wait_gone(stack: Stack, timeout: float = PROMPT) -> bool:
    deadline = time.monotonic() + timeout
    while ours(stack):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_docker_run_rm_refused_at_start_returns_promptly(stack: Stack, source: Path) -> None:
    """`docker run --rm` refused at its start for the cap (the start-time refusal `run` reaches in
    layout b): the client returns with the refusal and leaves nothing. Control: the removal off,
    the client hangs past PROMPT with its container created. The running one is run before the
    cap is set (no gatekeeper.start label): the CLI layer (a, c) counted only labelled containers
    before and let this run through to the proxy in (a), to the engine in (c)."""
    running = stack.ssh(f"docker run -d --name {NAME}-one {IMAGE} sleep 600", timeout=PROMPT)
    assert running.returncode == 0, running.stderr
    command = f"docker run --rm --name {NAME}-rm {IMAGE} true"
    with policy_extended("\n[limits]\nmax_running = 1\n"):
        since = audit_offset()
        began = time.monotonic()
        result = stack.ssh(command, timeout=PROMPT)
        assert_refused(stack, result, since, rule="limit-running")
        assert time.monotonic() - began < PROMPT
        assert not stack.docker("ps", "-aq", "--filter", f"name={NAME}-rm").stdout.split()
        if stack.mode != PROXY_ALONE:
            return  # the CLI layer counts first: no create reached the engine
        assert "(--rm, never started) was removed" in result.stderr.decode(errors="replace")
        with proxy_patched(stack, NO_REMOVAL):
            with pytest.raises(subprocess.TimeoutExpired):
                stack.ssh(command, timeout=PROMPT)  # control: hangs, waiting for a removal
            assert stack.docker("ps", "-aq", "--filter", f"name={NAME}-rm").stdout.split()
            remove_ours(stack)  # the hung client's wait ends with the removal


def test_compose_run_rm_refused_at_start_returns_promptly(stack: Stack, source: Path) -> None:
    """`compose run --rm` at the cap: compose's own --rm (an AutoRemove container, as docker
    run's) takes the same path: it returns with the refusal and leaves no container. Control:
    without the cap the one-off runs and is gone."""
    compose = BASE / "compose.yaml"
    compose.write_text(f"name: {NAME}-proj\nservices:\n  app:\n    image: {IMAGE}\n    command: [\"true\"]\n")
    shutil.chown(compose, AGENT, AGENT)
    command = f"docker compose -f {compose} run --rm app true"
    control = stack.ssh(command, timeout=PROMPT * 2)
    assert control.returncode == 0, control.stderr
    running = stack.ssh(f"docker run -d --name {NAME}-one {IMAGE} sleep 600", timeout=PROMPT)
    assert running.returncode == 0, running.stderr
    with policy_extended("\n[limits]\nmax_running = 1\n"):
        since = audit_offset()
        began = time.monotonic()
        result = stack.ssh(command, timeout=PROMPT * 2)
        assert_refused(stack, result, since, rule="limit-running")
        assert time.monotonic() - began < PROMPT * 2
        label = f"label=com.docker.compose.project={NAME}-proj"
        assert not stack.docker("ps", "-aq", "--filter", label).stdout.split()


def agent_start(name: str) -> subprocess.CompletedProcess[str]:
    """`docker start NAME` from a shell as the agent on the proxy's socket (layouts a and b give
    the agent that socket). DOCKER_API_VERSION: no version ping first, which a full log refuses
    too; the CLI goes on past a failed first ping, so the start itself reaches the proxy."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(AGENT_HOME), "DOCKER_HOST": f"unix://{PROXY_SOCKET}",
           "DOCKER_API_VERSION": "1.41"}
    return as_agent(["/usr/bin/docker", "start", name], env)


def full_log(text: str) -> str:
    """[audit] max_bytes a few bytes past the log's size now: the next record does not fit."""
    return text.replace("[audit]\n", f"[audit]\nmax_bytes = {audit_offset() + 10}\n", 1)


def test_a_start_refused_by_a_full_log_settles_its_rm_container(stack: Stack, source: Path) -> None:
    """Nothing runs unrecorded: with the log at [audit] max_bytes the proxy refuses the start its
    decision allowed (audit-full). That refusal settles the never-started --rm container as
    start_refused does (it skipped that before: the container stayed, `docker run --rm` waited).
    Controls: with room in the log the start runs; with the settling off the container stays."""
    if stack.mode == CLI_ALONE:
        pytest.skip("no proxy: without [audit] via_proxy the agent's account appends to the log, no ceiling")
    created(stack, f"{NAME}-room", source)
    result = agent_start(f"{NAME}-room")  # control: room in the log, the start runs, --rm removes it
    assert result.returncode == 0, result.stderr
    assert wait_gone(stack), ours(stack)

    created(stack, f"{NAME}-full", source)
    with policy_rewritten(full_log):
        result = agent_start(f"{NAME}-full")
    assert result.returncode != 0 and "(rule audit-full)" in result.stderr, result.stderr
    assert "(--rm, never started) was removed" in result.stderr, result.stderr
    assert not ours(stack), "the --rm container of a start refused by the full log was left behind"

    created(stack, f"{NAME}-kept", source)
    with proxy_patched(stack, NO_SETTLING), policy_rewritten(full_log):  # control: the settling off
        result = agent_start(f"{NAME}-kept")
        assert result.returncode != 0 and "(rule audit-full)" in result.stderr, result.stderr
        assert "was removed" not in result.stderr
        assert ours(stack), "without the settling the refused --rm container stays created"
