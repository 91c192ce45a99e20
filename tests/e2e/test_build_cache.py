"""The classic builder's cache across owners: red team, session 7.

Every build the stack runs takes the classic builder (DOCKER_BUILDKIT=0 in every layout). It
reuses, for each step, ANY local image whose parent and instruction match, whoever built it.
`docker image history --no-trunc` of the operator's image (allowed before session 8; now
[scope] history = "owned" refuses it, but steps can be guessed) shows its steps; the operator's
base image is one the agent may use ([images] shared). So the agent builds FROM the same base
with the same RUN line and the engine hands it the operator's layer, with what that step
fetched or made (here a random token standing for a secret the operator's build fetched),
without ever running it. Named outright, `--cache-from IMAGE` and
compose's `cache_from:` do the same with any image.

Both layers give every build the agent's own images as its only cache sources (the classic
builder then reuses a layer only from their chains; compose's classic builder sends none, so
with the CLI layer alone compose builds run without cache); a named cache source must be an
image the agent may use (rule image-not-shared). Each layout (a: CLI layer + proxy, b: proxy alone, c:
CLI layer alone); the control is root's same build on the bare engine, which takes the
operator's layer; the agent's own rebuild still comes from its cache (the cost side).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    CLI_ALONE,
    IMAGE,
    PROXY_ALONE,
    Stack,
    audit_offset,
    docker_client,
    root_docker_env,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

OPERATOR_IMAGE = "rt7-operator-app:1"  # the operator's, outside [images] shared (gk-*, ai-*)
COPY = "ai-rt7-copy:1"
OWN = "ai-rt7-own:1"
PROJECT = "ai-rt7-cache"
STEP = "RUN head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /operator-token"
DOCKERFILE = f"FROM {IMAGE}\n{STEP}\n"
WORK = AGENT_HOME / "work" / "rt7-cache"


def root_build(tag: str, dockerfile: str, *extra: str) -> None:
    env = {**root_docker_env(), "DOCKER_BUILDKIT": "0"}
    argv = [str(docker_client()), "build", "-q", *extra, "-t", tag, "-"]
    built = subprocess.run(argv, input=dockerfile.encode(), env=env, capture_output=True, timeout=120,
                           check=False)
    assert built.returncode == 0, built.stderr


def token(stack: Stack, image: str) -> str:
    return stack.docker("run", "--rm", image, "cat", "/operator-token", check=True).stdout.strip()


@pytest.fixture
def operator_token(stack: Stack) -> Iterator[str]:
    """The operator's image: the shared base plus a step whose output is its own (a token)."""
    root_build(OPERATOR_IMAGE, DOCKERFILE)
    made = token(stack, OPERATOR_IMAGE)
    assert len(made) == 32
    yield made
    stack.docker("rmi", "-f", OPERATOR_IMAGE, COPY, OWN, check=False)


@pytest.fixture(autouse=True, scope="module")
def clean_work() -> Iterator[None]:
    yield
    shutil.rmtree(WORK, ignore_errors=True)


def agent_file(relative: str, text: str) -> str:
    path = WORK / relative
    write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    for directory in (path.parent, WORK, WORK.parent):
        shutil.chown(directory, AGENT, AGENT)
    return str(path)


def test_the_operators_steps_are_not_the_agents_to_read_and_root_takes_its_layer(
    stack: Stack, operator_token: str
) -> None:
    """The premise and the control: history shows the step (root's, on the bare engine); the
    agent's history of the operator's image is refused ([scope] history = "owned": only images it
    may use, session 8), of a lent image it works; the bare engine's same build reuses the
    operator's layer (same token), and with --no-cache makes its own."""
    env = root_docker_env()
    history = subprocess.run([str(docker_client()), "image", "history", "--no-trunc", "--format",
                              "{{.CreatedBy}}", OPERATOR_IMAGE], env=env, capture_output=True, check=True)
    assert b"/operator-token" in history.stdout, "control: the history shows the operator's step"
    since = audit_offset()
    agents = stack.ssh(f"docker image history --no-trunc --format '{{{{.CreatedBy}}}}' {OPERATOR_IMAGE}")
    assert b"/operator-token" not in agents.stdout
    assert_refused(stack, agents, since, rule="image-not-shared")
    lent = stack.ssh(f"docker history -q {IMAGE}")
    assert lent.returncode == 0, lent.stderr
    root_build(COPY, DOCKERFILE)
    assert token(stack, COPY) == operator_token, "control: the bare engine's cache crosses owners"
    root_build(COPY, DOCKERFILE, "--no-cache")
    assert token(stack, COPY) != operator_token


def test_the_agents_build_does_not_take_the_operators_layer(stack: Stack, operator_token: str) -> None:
    built = stack.ssh(f"docker build -q -t {COPY} -", stdin=DOCKERFILE.encode(), timeout=180)
    assert built.returncode == 0, built.stderr
    assert token(stack, COPY) != operator_token, "the operator's layer reached the agent's image"


def test_the_agents_own_rebuild_still_uses_its_cache(stack: Stack, operator_token: str) -> None:
    """The cost side: the agent's second build of its own Dockerfile reuses its first."""
    first = stack.ssh(f"docker build -q -t {OWN} -", stdin=DOCKERFILE.encode(), timeout=180)
    assert first.returncode == 0, first.stderr
    mine = token(stack, OWN)
    assert mine != operator_token
    again = stack.ssh(f"docker build -q -t {OWN} -", stdin=DOCKERFILE.encode(), timeout=180)
    assert again.returncode == 0, again.stderr
    assert token(stack, OWN) == mine, "the agent's rebuild did not reuse its own layer"


def test_a_compose_build_does_not_take_the_operators_layer(stack: Stack, operator_token: str) -> None:
    agent_file("app/Dockerfile", DOCKERFILE)
    compose = agent_file("compose.yaml", f"services:\n  app:\n    image: {COPY}\n    build: ./app\n")
    try:
        built = stack.ssh(f"docker compose -f {compose} -p {PROJECT} build", timeout=240)
        assert built.returncode == 0, built.stderr
        assert token(stack, COPY) != operator_token, "the operator's layer reached the agent's compose image"
    finally:
        stack.docker("compose", "-p", PROJECT, "down", check=False)


@pytest.mark.parametrize("route", ["build --cache-from", "compose cache_from"])
def test_naming_the_operators_image_as_cache_source_is_refused(
    stack: Stack, operator_token: str, route: str
) -> None:
    if route == "build --cache-from":
        command, stdin = f"docker build -q --cache-from {OPERATOR_IMAGE} -t {COPY} -", DOCKERFILE.encode()
    else:
        agent_file("app/Dockerfile", DOCKERFILE)
        service = f"    image: {COPY}\n    build:\n      context: ./app\n"
        service += f"      cache_from: [{OPERATOR_IMAGE}]\n"
        compose = agent_file("compose.yaml", f"services:\n  app:\n{service}")
        command, stdin = f"docker compose -f {compose} -p {PROJECT} build", b""
    try:
        since = audit_offset()
        built = stack.ssh(command, stdin=stdin, timeout=240)
        if built.returncode == 0 and stack.mode == PROXY_ALONE:
            pass  # judged by the image below
        else:
            assert_refused(stack, built, since, rule="image-not-shared")
        made = stack.docker("images", "-q", COPY).stdout.strip()
        assert not made or token(stack, COPY) != operator_token, "the operator's layer reached the agent"
    finally:
        stack.docker("compose", "-p", PROJECT, "down", check=False)


def test_a_compose_rebuild_reuses_the_agents_own_layer_not_the_newer_operators(
    stack: Stack, operator_token: str
) -> None:
    """The whole store gives the newest matching layer (the control: the operator's). compose's
    classic builder sends no cache sources (only no-cache): behind the proxy, which gives the
    build the agent's own images as sources, it takes the agent's own layer; with the CLI layer
    alone the build runs without cache (the cost: a fresh layer)."""
    first = stack.ssh(f"docker build -q -t {OWN} -", stdin=DOCKERFILE.encode(), timeout=180)
    assert first.returncode == 0, first.stderr
    mine = token(stack, OWN)
    root_build(OPERATOR_IMAGE, DOCKERFILE, "--no-cache")  # the operator's layer, now the newest
    newest = token(stack, OPERATOR_IMAGE)
    root_build(COPY, DOCKERFILE)
    assert token(stack, COPY) == newest, "control: the whole store gives the newest layer"
    stack.docker("rmi", "-f", COPY)
    agent_file("app/Dockerfile", DOCKERFILE)
    compose = agent_file("compose.yaml", f"services:\n  app:\n    image: {COPY}\n    build: ./app\n")
    try:
        built = stack.ssh(f"docker compose -f {compose} -p {PROJECT} build", timeout=240)
        assert built.returncode == 0, built.stderr
        made = token(stack, COPY)
        assert made != newest, "the operator's layer reached the agent's compose image"
        if stack.mode == CLI_ALONE:
            assert made != mine, "compose built with a cache on the engine's own socket"
        else:
            assert made == mine, "compose's build behind the proxy did not take the agent's own layer"
    finally:
        stack.docker("compose", "-p", PROJECT, "down", check=False)


# ---------------------------------------------------------------- the other direction: poisoning

FETCH = "RUN wget -qO /fetched http://updates.rt7/file"
POISON_DOCKERFILE = f"FROM {IMAGE}\n{FETCH}\n"
POISONED = "ai-rt7-poison:1"
OPERATOR_FETCHED = "rt7-operator-fetched:1"


def serving(stack: Stack, name: str, text: str, *network: str) -> str:
    """A root container (on the default bridge, or `network`'s options) answering every HTTP
    request (a plain server or a proxy alike) with `text`; its address."""
    stack.docker("rm", "-f", name, check=False)
    answer = f"HTTP/1.0 200 OK\\r\\nContent-Length: {len(text) + 1}\\r\\n\\r\\n{text}\\n"
    stack.docker("run", "-d", "--name", name, *network, IMAGE, "sh", "-c",
                 f"while true; do printf '{answer}' | nc -l -p 80 >/dev/null; done", check=True)
    return stack.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name, check=True).stdout.strip()


@pytest.fixture
def servers(stack: Stack) -> Iterator[tuple[str, str]]:
    """(the operator's update server, the agent's fake one)."""
    good, evil = serving(stack, "rt7-updates", "rt7-good"), serving(stack, "ai-rt7-fake", "rt7-evil")
    yield good, evil
    stack.docker("rm", "-f", "rt7-updates", "ai-rt7-fake", check=False)
    stack.docker("rmi", "-f", POISONED, OPERATOR_FETCHED, check=False)


def operator_fetch(stack: Stack, good: str) -> str:
    """The operator's build of the step (the classic builder, its own cache), what it fetched."""
    root_build(OPERATOR_FETCHED, POISON_DOCKERFILE, "--add-host", f"updates.rt7:{good}")
    return stack.docker("run", "--rm", OPERATOR_FETCHED, "cat", "/fetched", check=True).stdout.strip()


def poisoning(evil: str) -> dict[str, list[str]]:
    """The agent's ways of running the operator's step against its own server: inputs the
    classic builder leaves out of the step's cache key (as root's build flags)."""
    return {
        "--add-host": ["--add-host", f"updates.rt7:{evil}"],
    }


def agent_poisoning(stack: Stack, route: str, evil: str) -> tuple[str, bytes]:
    """The agent's command for `route`: docker build, or compose's build keys."""
    if route.startswith("compose"):
        agent_file("app/Dockerfile", POISON_DOCKERFILE)
        key = f"      extra_hosts: [\"updates.rt7:{evil}\"]\n"
        compose = agent_file("compose.yaml", f"services:\n  app:\n    image: {POISONED}\n    build:\n"
                                             f"      context: ./app\n{key}")
        return f"docker compose -f {compose} -p {PROJECT} build", b""
    extra = " ".join(poisoning(evil)["--add-host"])
    return f"docker build -q {extra} -t {POISONED} -", POISON_DOCKERFILE.encode()


@pytest.mark.parametrize("route", ["--add-host", "compose extra_hosts"])
def test_the_agents_build_cannot_poison_the_operators_next_build(
    stack: Stack, servers: tuple[str, str], route: str
) -> None:
    """The agent builds the operator's step (read from history) against a server of its own; the
    operator's next build of the same step takes the agent's layer. Control: root plays the
    agent on the bare engine (same inputs) and the operator's build fetches `rt7-evil`."""
    good, evil = servers
    extra = poisoning(evil)["--add-host"]
    root_build(POISONED, POISON_DOCKERFILE, *extra)
    poisoned = stack.docker("run", "--rm", POISONED, "cat", "/fetched", check=True).stdout.strip()
    assert poisoned == "rt7-evil", "control: the step fetched from the agent's server"
    assert operator_fetch(stack, good) == "rt7-evil", "control: the operator's build took the poisoned layer"
    stack.docker("rmi", "-f", POISONED, OPERATOR_FETCHED)

    command, stdin = agent_poisoning(stack, route, evil)
    try:
        since = audit_offset()
        built = stack.ssh(command, stdin=stdin, timeout=180)
        assert_refused(stack, built, since, rule="build-cache-key")
        assert operator_fetch(stack, good) == "rt7-good", "the agent's layer reached the operator's build"
    finally:
        stack.docker("compose", "-p", PROJECT, "down", check=False)


# ---------------------------------------------------------------- every input outside the key

AGENT_NET = "ai-rt7-net"


@pytest.fixture
def agent_network(stack: Stack, servers: tuple[str, str]) -> Iterator[str]:
    """A network of the agent's where its container answers as `updates.rt7` (an alias)."""
    stack.docker("rm", "-f", "ai-rt7-alias", check=False)
    stack.docker("network", "rm", AGENT_NET, check=False)
    stack.docker("network", "create", AGENT_NET, check=True)
    serving(stack, "ai-rt7-alias", "rt7-evil", "--network", AGENT_NET, "--network-alias", "updates.rt7")
    yield AGENT_NET
    stack.docker("rm", "-f", "ai-rt7-alias", check=False)
    stack.docker("network", "rm", AGENT_NET, check=False)


def conditions_step(nonce: str) -> str:
    """The operator's step (fresh per run: the nonce): what it fetched and what it saw of its
    conditions (open files, CPUs, /dev/shm, its memory cap as cgroup v1 or v2 says it),
    tolerating a failed fetch as such steps do. (The cap is read, not hit: a step filling
    memory under the cap was OOM-killed whole now and then, failing the control.)"""
    seen = "$(wget -qO- http://updates.rt7/file || echo offline) $(ulimit -n) $(nproc)"
    seen += " $(df -k /dev/shm | tail -1)"
    seen += " $(cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null)"
    return f"FROM {IMAGE}\nRUN echo {nonce} >/dev/null; echo \"{seen}\" > /fetched\n"


# case: (the agent's build flags, the compose build keys giving the same, the operator's extra flags)
KEYLESS_CASES: dict[str, tuple[list[str], str, list[str]]] = {
    "--network none": (["--network", "none"], "", []),
    "--network of the agent's": (["--network", AGENT_NET], "", []),
    "--ulimit": (["--ulimit", "nofile=64:64"], "", []),
    "--shm-size": (["--shm-size", "1m"], "", []),
    "--cpuset-cpus": (["--cpuset-cpus", "0"], "", []),
    "--memory under the default": (["--memory", "32m"], "", []),
    "--build-arg http_proxy": (["--build-arg", "http_proxy=http://EVIL:80"], "",
                               ["--build-arg", "http_proxy=http://GOOD:80"]),
    "compose build.network": (["--network", AGENT_NET], f"      network: {AGENT_NET}\n", []),
    "compose build.args http_proxy": (["--build-arg", "http_proxy=http://EVIL:80"],
                                      "      args:\n        http_proxy: http://EVIL:80\n",
                                      ["--build-arg", "http_proxy=http://GOOD:80"]),
}


def fetched(stack: Stack, image: str) -> str:
    return stack.docker("run", "--rm", image, "cat", "/fetched", check=True).stdout.strip()


@pytest.mark.parametrize("case", list(KEYLESS_CASES))
def test_no_build_input_outside_the_key_reaches_the_operators_next_build(
    stack: Stack, servers: tuple[str, str], agent_network: str, case: str
) -> None:
    """Control (root plays the agent on the bare engine): the step built under the agent's
    conditions is what the operator's next build of it takes (and differs from what the
    operator's own run makes). Defence: the agent's build is refused (build-cache-key) and the
    operator's next build makes its own."""
    good, evil = servers
    flags, compose_keys, operator_flags = KEYLESS_CASES[case]
    flags = [flag.replace("EVIL", evil) for flag in flags]
    operator = ["--add-host", f"updates.rt7:{good}", *[flag.replace("GOOD", good) for flag in operator_flags]]
    first, second = (conditions_step(secrets.token_hex(8)) for _ in range(2))
    try:
        root_build(POISONED, first, *flags)
        planted = fetched(stack, POISONED)
        root_build(OPERATOR_FETCHED, first, *operator)
        assert fetched(stack, OPERATOR_FETCHED) == planted, "control: the operator took the agent's layer"
        root_build(OPERATOR_FETCHED, first, "--no-cache", *operator)
        honest = fetched(stack, OPERATOR_FETCHED)
        assert honest != planted and "rt7-good" in honest, "control: the input changes what the step makes"
        stack.docker("rmi", "-f", POISONED, OPERATOR_FETCHED)

        since = audit_offset()
        if compose_keys:
            agent_file("app/Dockerfile", second)
            keys = compose_keys.replace("EVIL", evil)
            compose = agent_file("compose.yaml", f"services:\n  app:\n    image: {POISONED}\n    build:\n"
                                                 f"      context: ./app\n{keys}")
            built = stack.ssh(f"docker compose -f {compose} -p {PROJECT} build", timeout=180)
        else:
            built = stack.ssh(f"docker build -q {' '.join(flags)} -t {POISONED} -", stdin=second.encode(),
                              timeout=180)
        assert_refused(stack, built, since, rule="build-cache-key")
        root_build(OPERATOR_FETCHED, second, *operator)
        assert fetched(stack, OPERATOR_FETCHED) == honest, "the agent's layer reached the operator's build"
    finally:
        stack.docker("compose", "-p", PROJECT, "down", check=False)
        stack.docker("rmi", "-f", POISONED, OPERATOR_FETCHED, check=False)


# ---------------------------------------------------------------- BuildKit: not reachable

BUILDKIT_BUILD = "/v1.41/build?version=2&session=gk-cachekey&remote=client-session&buildid=gk-ck&t=ai-bk%3A1"


def test_a_buildkit_build_does_not_reach_the_engines_buildkit(stack: Stack) -> None:
    """BuildKit keys neither the secrets nor the SSH agent a step gets, so a layer made with the
    agent's would be the operator's next cache hit; and its frontends fetch past the checks. The
    docker CLI here has no buildx plugin (DOCKER_BUILDKIT=1 fails in the client), so the way in
    is the API's `version=2` build. Control: root's request straight to the engine is taken by
    the engine's BuildKit (no 403); the agent's, through the proxy (a shell as the agent in (a)
    and (b)), is refused and recorded. In (c) the agent has no shell; `docker buildx build` is
    refused by the CLI layer in (a) and (c) (build-buildkit) and unknown to the client in (b)."""
    from .stack import DOCKER_SOCKET, PROXY_SOCKET
    from .test_api_attacks import RAW_CLIENT, as_agent

    since = audit_offset()
    buildx = stack.ssh("docker buildx build -t ai-bk:1 -", stdin=POISON_DOCKERFILE.encode())
    if stack.mode == PROXY_ALONE:
        assert buildx.returncode != 0  # no buildx plugin on this machine: the client fails itself
    else:
        assert_refused(stack, buildx, since, rule="build-buildkit")
    if stack.mode == CLI_ALONE:
        return
    argv = ["/usr/bin/python3", "-I", "-c", RAW_CLIENT]
    root = subprocess.run([*argv, str(DOCKER_SOCKET), "POST", BUILDKIT_BUILD, ""], capture_output=True,
                          text=True, timeout=90, check=False)
    assert root.returncode == 0, root.stderr
    assert not root.stdout.startswith("403"), "control: the engine takes a version=2 build"
    agent = as_agent([*argv, str(PROXY_SOCKET), "POST", BUILDKIT_BUILD, ""], {"PATH": "/usr/bin:/bin"})
    assert agent.stdout.startswith("403"), agent.stdout + agent.stderr
    assert "build-add-url" in agent.stdout and "classic builder" in agent.stdout
