"""A day of agent work through the real ssh, sshd, gatekeeper and engine.

The commands and what each must print are data (tests/e2e/day_of_work.txt, its
header explains the format); the project they work on is
tests/e2e/day_of_work/ (compose file, .env, Dockerfile), placed under the
agent's home as work/shop, owned by the agent. Each command is one test, run
in the file's order; every one must succeed. This is the false-denial test:
a confinement that refuses everyday work gets loosened by hand. It runs in layout (a),
the deployment, and in (b), the proxy alone (tests/e2e/conftest.py EVERYDAY): neither
layer may refuse everyday work.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, AGENT_HOME, PROXY_ALONE, Stack

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
DATA = HERE / "day_of_work.txt"
PROJECT = HERE / "day_of_work"
SHOP = AGENT_HOME / "work" / "shop"
CONTAINERS = ("ai-scratch-1", "ai-job-1", "ai-oneoff", "ai-stopped-1", "ai-cache-1")
VOLUMES = ("ai-shop_shopdata", "ai-shopcache")
IMAGES = ("ai-shop-web:1", "ai-shop-web:1.1", "ai-shop-web:latest", "ai-shop-web:2", "ai-shop-web:3",
          "ai-shop-web:dev")


class Step:
    __slots__ = ("line", "command", "out", "err", "absent", "cli_out", "cli_absent", "exit", "retries")

    def __init__(self, line: int, command: str) -> None:
        self.line = line
        self.command = command
        self.out: list[str] = []
        self.err: list[str] = []
        self.absent: list[str] = []
        self.cli_out: list[str] = []  # what the CLI layer's own rendering prints: not in layout (b)
        self.cli_absent: list[str] = []
        self.exit = 0
        self.retries = 1

    def add(self, key: str, value: str) -> None:
        if key == "out":
            self.out.append(value)
        elif key == "cli-out":
            self.cli_out.append(value)
        elif key == "cli-not":
            self.cli_absent.append(value)
        elif key == "err":
            self.err.append(value)
        elif key == "not":
            self.absent.append(value)
        elif key == "exit":
            self.exit = int(value)
        elif key == "retry":
            self.retries = int(value)
        else:
            raise ValueError(f"{DATA.name}:{self.line}: unknown expectation {key!r}")

    def failures(self, code: int, out: str, err: str, cli_layer: bool = True) -> list[str]:
        found = [f"exit {code}, expected {self.exit}"] if code != self.exit else []
        found += [f"stdout lacks {text!r}" for text in self.out + self.cli_out * cli_layer if text not in out]
        found += [f"stderr lacks {text!r}" for text in self.err if text not in err]
        absent = self.absent + self.cli_absent * cli_layer
        found += [f"output has {text!r}" for text in absent if text in out + err]
        return found


def read_steps(path: Path) -> list[Step]:
    steps: list[Step] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw.startswith("docker "):
            steps.append(Step(number, raw))
        elif raw.startswith("    ") and steps:
            key, _, value = raw.strip().partition(": ")
            steps[-1].add(key, value)
        else:
            raise ValueError(f"{path.name}:{number}: neither a command nor an indented expectation")
    return steps


STEPS = read_steps(DATA)


def cleanup(stack: Stack) -> None:
    """Root removes whatever a failed earlier run may have left (by name, never more)."""
    project = stack.docker("ps", "-aq", "--filter", "label=com.docker.compose.project=ai-shop", check=False)
    stack.docker("rm", "-f", *CONTAINERS, *project.stdout.split(), check=False)
    stack.docker("volume", "rm", *VOLUMES, check=False)
    stack.docker("network", "rm", "ai-shop_backend", check=False)
    stack.docker("rmi", *IMAGES, check=False)


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Iterator[Path]:
    cleanup(stack)
    if SHOP.exists():
        shutil.rmtree(SHOP)
    shutil.copytree(PROJECT, SHOP)
    for path in [SHOP, *SHOP.rglob("*")]:
        shutil.chown(path, AGENT, AGENT)
    yield SHOP  # the stack's policy, the embedded default: every name the day gives starts with "ai-"
    cleanup(stack)
    shutil.rmtree(SHOP, ignore_errors=True)


def test_the_day_is_long_enough() -> None:
    assert len(STEPS) >= 100
    assert all(step.command.startswith("docker ") for step in STEPS)


@pytest.mark.parametrize("step", STEPS, ids=[f"{s.line:03d} {s.command[7:60]}" for s in STEPS])
def test_step(stack: Stack, shop: Path, step: Step) -> None:
    for attempt in range(step.retries):
        result = stack.ssh(step.command, timeout=300)
        out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
        failures = step.failures(result.returncode, out, err, cli_layer=stack.mode != PROXY_ALONE)
        if not failures:
            return
        if attempt + 1 < step.retries:
            time.sleep(1)
    pytest.fail(f"{DATA.name}:{step.line}: {step.command}\n" + "\n".join(failures)
                + f"\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-2000:]}")
