"""Safety rails against the real engine, through real ssh: resource caps land on the
container docker actually creates, and the agent cannot read the secrets of a
container it did not create.

* caps: `docker run` without limits gets the policy's defaults injected, and
  the engine (asked by root, bypassing gatekeeper) shows them in HostConfig;
  an over-cap or "unlimited" request is refused with the cap in the message;
  a compose service gets the same defaults;
* max_running: a third running container of the agent's is refused;
* redaction: root starts a container with `-e SECRET=...`; the agent's
  `docker inspect` shows `SECRET=***`, never the value, and so does a
  `--format` template that would print it (root's own template prints the
  value: the control); the agent's own container shows its values.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses (its 403 as
docker prints it and its "api" record) with the same message, or injects the same defaults;
`--memory 0` and `--cpus 0` are the API's "no limit given" (a zero field), so there the
container is created with the defaults: the engine never gets an unlimited one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from .stack import APP_DIR, IMAGE, PROXY_ALONE, Stack, audit_offset, policy_extended
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

LIMITS = """
[limits]
memory = "256m"
cpus = 1.0
pids_limit = 128
default_memory = "64m"
default_cpus = 0.5
default_pids_limit = 32
max_running = 2
"""
SECRET_VALUE = "hunter2-e2e-rails"
FOREIGN = "gk-e2e-rails-foreign"
CAPPED = "ai-e2e-rails-capped"  # the agent's: named within the [names] prefix (the default "ai-")


@pytest.fixture(scope="module")
def capped_policy(stack: Stack) -> Iterator[None]:
    """The stack's policy with [limits] added for this module, then put back."""
    with policy_extended(LIMITS):
        yield


@pytest.fixture
def foreign_container(stack: Stack) -> Iterator[str]:
    """Root's container (no gatekeeper.owner label) with a secret in its environment."""
    stack.docker("rm", "-f", FOREIGN, check=False)
    stack.docker("run", "-d", "--name", FOREIGN, "-e", f"SECRET={SECRET_VALUE}",
                 "-e", f"DB_PASSWORD={SECRET_VALUE}", "--label", f"com.example.api-token={SECRET_VALUE}",
                 IMAGE, "sleep", "300")
    yield FOREIGN
    stack.docker("rm", "-f", FOREIGN, check=False)


def host_config(stack: Stack, name: str) -> dict:
    """The container as the engine sees it (root, not through gatekeeper)."""
    return json.loads(stack.docker("inspect", name).stdout)[0]["HostConfig"]


def test_run_without_limits_gets_the_defaults(stack: Stack, capped_policy: None) -> None:
    stack.docker("rm", "-f", CAPPED, check=False)
    try:
        result = stack.ssh(f"docker run -d --name {CAPPED} {IMAGE} sleep 60")
        assert result.returncode == 0, result.stderr
        config = host_config(stack, CAPPED)
        assert config["Memory"] == 64 << 20
        assert config["NanoCpus"] == 500_000_000
        assert config["PidsLimit"] == 32
    finally:
        stack.docker("rm", "-f", CAPPED, check=False)


def test_run_at_the_cap_keeps_the_agents_values(stack: Stack, capped_policy: None) -> None:
    stack.docker("rm", "-f", CAPPED, check=False)
    try:
        result = stack.ssh(f"docker create --name {CAPPED} -m 256m --cpus 1 --pids-limit 128 {IMAGE} true")
        assert result.returncode == 0, result.stderr
        config = host_config(stack, CAPPED)
        assert (config["Memory"], config["NanoCpus"], config["PidsLimit"]) == (256 << 20, 10**9, 128)
    finally:
        stack.docker("rm", "-f", CAPPED, check=False)


OVER_CAP = {
    "memory over the cap": ("docker run --name {name} -m 1g {image} true", "256m"),
    "memory unlimited": ("docker run --name {name} --memory 0 {image} true", "256m"),
    "swap unlimited": ("docker run --name {name} --memory-swap -1 {image} true", "512m"),
    "pids unlimited": ("docker run --name {name} --pids-limit -1 {image} true", "128"),
    "cpus unlimited": ("docker run --name {name} --cpus 0 {image} true", "1"),
}
ZERO_IS_ABSENT = {"memory unlimited", "cpus unlimited"}  # the same request body as no flag at all


@pytest.mark.parametrize("case", OVER_CAP)
def test_over_cap_is_refused_with_the_cap(stack: Stack, capped_policy: None, case: str) -> None:
    command, cap = OVER_CAP[case]
    stack.docker("rm", "-f", CAPPED, check=False)
    try:
        since = audit_offset()
        result = stack.ssh(command.format(name=CAPPED, image=IMAGE))
        if stack.mode == PROXY_ALONE and case in ZERO_IS_ABSENT:  # (b): the defaults, as without the flag
            assert result.returncode == 0, result.stderr
            config = host_config(stack, CAPPED)
            assert (config["Memory"], config["NanoCpus"], config["PidsLimit"]) == (64 << 20, 500_000_000, 32)
            return
        assert_refused(stack, result, since)
        line = result.stderr.decode()
        assert "policy [limits]" in line and cap in line, line
        assert stack.docker("container", "inspect", CAPPED, check=False).returncode != 0  # nothing created
    finally:
        stack.docker("rm", "-f", CAPPED, check=False)


def test_compose_service_gets_the_defaults(stack: Stack, capped_policy: None) -> None:
    compose = f"docker compose -f {APP_DIR}/compose.yaml -p ai-app"  # not `app`, its directory: the prefix
    up = stack.ssh(f"{compose} up -d", timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        config = host_config(stack, "ai-app-ticker-1")
        assert (config["Memory"], config["NanoCpus"], config["PidsLimit"]) == (64 << 20, 500_000_000, 32)
    finally:
        stack.ssh(f"{compose} down", timeout=120)


def test_inspect_of_a_foreign_container_hides_its_secrets(stack: Stack, foreign_container: str) -> None:
    result = stack.ssh(f"docker inspect {foreign_container}")
    assert result.returncode == 0, result.stderr
    assert SECRET_VALUE.encode() not in result.stdout
    shown = json.loads(result.stdout)[0]
    assert "SECRET=***" in shown["Config"]["Env"]
    assert "DB_PASSWORD=***" in shown["Config"]["Env"]
    assert shown["Config"]["Labels"]["com.example.api-token"] == "***"
    assert shown["Name"] == f"/{foreign_container}"  # the rest is docker's own output
    assert shown["State"]["Running"] is True


SPELLINGS = ["docker container inspect {name}", "docker inspect --type container {name}"]


@pytest.mark.parametrize("command", SPELLINGS)
def test_every_inspect_spelling_is_redacted(stack: Stack, foreign_container: str, command: str) -> None:
    result = stack.ssh(command.format(name=foreign_container))
    assert result.returncode == 0, result.stderr
    assert SECRET_VALUE.encode() not in result.stdout
    assert b"SECRET=***" in result.stdout


def test_inspect_template_on_a_foreign_container_is_redacted(stack: Stack, foreign_container: str) -> None:
    template = "{{range .Config.Env}}{{println .}}{{end}}{{index .Config.Labels \"com.example.api-token\"}}"
    control = stack.docker("inspect", "--format", template, foreign_container)
    assert SECRET_VALUE in control.stdout  # without gatekeeper the template prints the value
    result = stack.ssh(f"docker inspect --format '{template}' {foreign_container}")
    assert result.returncode == 0, result.stderr
    assert SECRET_VALUE.encode() not in result.stdout
    lines = result.stdout.decode().splitlines()
    assert "SECRET=***" in lines and "DB_PASSWORD=***" in lines and lines[-1] == "***"


def test_inspect_of_a_missing_container_keeps_dockers_status(stack: Stack) -> None:
    result = stack.ssh("docker inspect gk-e2e-rails-no-such-container")
    assert result.returncode == 1
    assert b"No such object" in result.stderr
    assert json.loads(result.stdout or b"[]") == []


def test_max_running_counts_the_agents_running_containers(stack: Stack, capped_policy: None) -> None:
    names = [f"{CAPPED}-{i}" for i in range(3)]
    for name in names:
        stack.docker("rm", "-f", name, check=False)
    try:
        for name in names[:2]:
            started = stack.ssh(f"docker run -d --name {name} {IMAGE} sleep 60")
            assert started.returncode == 0, started.stderr
        since = audit_offset()
        third = stack.ssh(f"docker run -d --name {names[2]} {IMAGE} sleep 60")
        assert_refused(stack, third, since, rule="limit-running")
        assert b"the cap is 2" in third.stderr, third.stderr
        # (b): docker run is a create (allowed: docker create is) and a start, which the proxy refuses
        every = ["-a"] if stack.mode != PROXY_ALONE else []
        listed = stack.docker("ps", *every, "--format", "{{.Names}}")
        assert names[2] not in listed.stdout.split()
    finally:
        for name in names:
            stack.docker("rm", "-f", name, check=False)


def test_inspect_of_the_agents_own_container_shows_its_values(stack: Stack) -> None:
    name = f"{CAPPED}-own"
    stack.docker("rm", "-f", name, check=False)
    try:
        created = stack.ssh(f"docker create --name {name} -e MINE=visible-value {IMAGE} true")
        assert created.returncode == 0, created.stderr
        result = stack.ssh(f"docker inspect {name}")
        assert result.returncode == 0, result.stderr
        assert "MINE=visible-value" in json.loads(result.stdout)[0]["Config"]["Env"]
    finally:
        stack.docker("rm", "-f", name, check=False)
