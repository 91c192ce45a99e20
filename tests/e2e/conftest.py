"""Session fixtures for the end-to-end suite: one real sshd + dockerd stack for every test.

The stack is set up the way the README deploys gatekeeper (see stack.py). If the
engine or sshd cannot start, the fixture raises and every e2e test errors: the
suite fails loudly instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from .stack import (
    AGENT_HOME,
    IMAGE,
    LAYERED,
    MODES,
    PROXY_ALONE,
    Stack,
    names_prefix,
    running_stack,
    switch_mode,
)

MARKER_DIR = Path("/tmp/gk-e2e-markers")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so the directory also runs on its own."""
    config.addinivalue_line(
        "markers", "e2e: end-to-end tests against a real sshd and docker engine (root only)"
    )


FIRST_MODULE = "test_beside_other_engine.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_beside_other_engine.py starts a neighbour engine and then stacks of its own: it
    must run before the session stack exists (two stacks cannot run at once), so first."""
    first = [item for item in items if item.path.name == FIRST_MODULE]
    if first:
        items[:] = first + [item for item in items if item.path.name != FIRST_MODULE]


# Issue 12 item 3: each layer alone confines the agent. The modules of THREE_WAY (the
# attack corpus) run in every layout of tests/e2e/stack.py (a: CLI layer + proxy, b: proxy
# alone behind a ForceCommand that vets nothing, c: CLI layer alone on the engine's socket);
# those of DEPLOYED in (a), the deployment; those of EVERYDAY (false denials: everyday work
# with the real docker CLI and compose) in DEFAULT_MODE and in (b), so the proxy alone
# refuses no everyday work either; every other module in DEFAULT_MODE: (a), the deployment,
# unless GK_E2E_MODE names another layout.
# In (b) the attack modules assert the proxy's denial (a deny record of layer "api") and the
# world untouched, not the CLI layer's exit 77 (test_attack_chains.assert_refused).
THREE_WAY: Final = frozenset({"test_layouts", "test_attack_chains", "test_denials", "test_hostile_networks",
                               "test_hostile_running", "test_hostile_caps", "test_image_sources",
                               "test_log_caps", "test_disk_budget", "test_pulls", "test_listing_labels",
                               "test_namespaces", "test_ownership", "test_rails", "test_published_ports",
                               "test_bind_swap", "test_restart_policy", "test_pull_pins",
                               "test_oom_priority", "test_base_image_triggers", "test_build_cache",
                               "test_compose_inherited", "test_context_archives", "test_dockerfile_pinning",
                               "test_dockerfile_reading", "test_id_confusion", "test_operator_images",
                               "test_operator_leaks", "test_refusal_leftovers", "test_shared_network_aliases",
                               "test_start_refusals", "test_volume_secrets", "test_host_registries",
                               "test_realtime_priority", "test_ipv6_networks",
                               "test_inherited_owner"})
DEPLOYED: Final = frozenset({"test_audit_writer", "test_operator_console"})
EVERYDAY: Final = frozenset({"test_day_of_work", "test_compose"})
DEFAULT_MODE: Final = os.environ.get("GK_E2E_MODE", LAYERED)

# The stack's policy has no [names] table: the agent gives names starting with the embedded
# default prefix, "ai-", as deployed, and each attack meets its own rule, never name-prefix
# first (where the operator's object is the target, its name starts with "ai-" too). The
# modules of NAMES_OFF would give names outside it and run with the rule off ([names]
# prefix = ""): none today.
NAMES_OFF: Final = frozenset[str]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "stack" not in metafunc.fixturenames:
        return
    if module in THREE_WAY:
        metafunc.parametrize("stack", MODES, indirect=True, scope="module")
    elif module in DEPLOYED:
        metafunc.parametrize("stack", [LAYERED], indirect=True, scope="module")
    elif module in EVERYDAY:
        modes = [mode for mode in MODES if mode in (DEFAULT_MODE, PROXY_ALONE)]
        metafunc.parametrize("stack", modes, indirect=True, scope="module")


@pytest.fixture(scope="session")
def deployed_stack() -> Iterator[Stack]:
    """The running stack; torn down (daemons killed, engine data removed) at session end."""
    with running_stack() as running:
        yield running


@pytest.fixture(scope="module")
def stack(deployed_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The stack in this module's layout (a parameter in THREE_WAY modules), with the name
    rule off for the modules of NAMES_OFF."""
    switch_mode(deployed_stack, getattr(request, "param", DEFAULT_MODE))
    module = request.module.__name__.rsplit(".", 1)[-1]
    with names_prefix("") if module in NAMES_OFF else contextlib.nullcontext():
        yield deployed_stack


@pytest.fixture
def sshd_runtime_dir() -> Iterator[None]:
    """/run/sshd for tests that run `sshd -t/-T` on a config without the stack.

    ssh.service makes it when sshd starts; /run is empty after a boot. It is removed
    again if this fixture made it, so the stack's own set-up (tests/e2e/stack.py,
    install.sh) still starts from an empty /run and a missing step fails CI."""
    runtime = Path("/run/sshd")
    made = not runtime.exists()
    runtime.mkdir(mode=0o755, exist_ok=True)
    yield
    if made:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def markers() -> Iterator[Path]:
    """An empty, world-writable directory where planted payloads would leave proof of running."""
    MARKER_DIR.mkdir(mode=0o1777, exist_ok=True)
    MARKER_DIR.chmod(0o1777)
    for old in MARKER_DIR.iterdir():
        old.unlink()
    yield MARKER_DIR
    for old in MARKER_DIR.iterdir():
        old.unlink()


@pytest.fixture
def restored_home(stack: Stack) -> Iterator[Path]:
    """The agent's home; files a test adds are removed and files it changes are restored."""
    before = {path: snapshot(path) for path in AGENT_HOME.rglob("*")}
    yield AGENT_HOME
    for path in sorted(set(AGENT_HOME.rglob("*")) - set(before), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path, (content, mode) in before.items():
        if content is not None and snapshot(path) != (content, mode):
            path.write_bytes(content)
            path.chmod(mode)


def snapshot(path: Path) -> tuple[bytes | None, int]:
    """Content and mode of a regular file; (None, 0) for anything else."""
    if path.is_symlink() or not path.is_file():
        return None, 0
    return path.read_bytes(), path.stat().st_mode & 0o7777


@pytest.fixture(scope="module")
def ticker(stack: Stack) -> Iterator[str]:
    """A container (started by root, bypassing gatekeeper) that prints a line every 0.2 s.

    It carries the agent's owner label, as if the agent had started it: logs are
    scoped to owned containers by default."""
    name = "gk-e2e-ticker"
    stack.docker("rm", "-f", name, check=False)
    script = "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"
    owner = ("--label", "gatekeeper.owner=default", "--label", "gatekeeper.created=default")
    stack.docker("run", "-d", "--name", name, *owner, IMAGE, "sh", "-c", script)
    yield name
    stack.docker("rm", "-f", name, check=False)
