"""A verdict given again on the same answer (gatekeeper.proxy.verdicts.AnsweredVerdicts) never
judges another object: through the installed proxy, the real engine and the docker CLI (as root,
mapped to the profile "default"), under [scope] inspect = "owned".

The caller inspects its container until the proxy keeps the verdict; root then removes it
and runs its own container under the same name. The caller's next `docker inspect NAME` is
refused (scope-owned): the engine's answer to the decision's question is another object's
bytes, so it is decided afresh. Control, in the same run: a proxy whose memory gives the kept
verdict for the same request whatever the engine answers (a copy of the package with the
bytes left out of AnsweredVerdicts.given) hands the caller root's container.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .proxy_daemon import ProxyDaemon, running_proxy
from .stack import IMAGE, REPO_ROOT, Stack

pytestmark = pytest.mark.e2e

NAME = "ai-e2e-answered"  # the caller's names start with the [names] prefix
SCOPE_OWNED = '\n[scope]\ninspect = "owned"\n'
BYTES_CHECKED = "if asked != question or status != answer.status or body != answer.body:"
REQUEST_ONLY = "if asked != question:"


def memory_keyed_by_request(directory: Path) -> Path:
    """A copy of this tree's gatekeeper package whose AnsweredVerdicts ignore the answer."""
    shutil.copytree(REPO_ROOT / "gatekeeper", directory / "gatekeeper",
                    ignore=shutil.ignore_patterns("__pycache__"))
    verdicts = directory / "gatekeeper" / "proxy" / "verdicts.py"
    text = verdicts.read_text()
    assert text.count(BYTES_CHECKED) == 1
    verdicts.write_text(text.replace(BYTES_CHECKED, REQUEST_ONLY))
    directory.chmod(0o755)
    return directory


@pytest.fixture(scope="module")
def proxies(stack: Stack) -> Iterator[tuple[ProxyDaemon, ProxyDaemon]]:
    code = Path(tempfile.mkdtemp(prefix="gk-answered-"))
    try:
        with running_proxy(extra=SCOPE_OWNED) as shipped, \
                running_proxy(memory_keyed_by_request(code), extra=SCOPE_OWNED) as control:
            yield shipped, control
    finally:
        stack.docker("rm", "-f", NAME, check=False)
        shutil.rmtree(code, ignore_errors=True)


def replaced_then_inspected(stack: Stack, proxy: ProxyDaemon) -> tuple[int, str]:
    stack.docker("rm", "-f", NAME, check=False)
    made = proxy.docker("run", "-d", "--name", NAME, IMAGE, "sleep", "600")
    assert made.returncode == 0, made.stderr
    mine = made.stdout.strip()
    for _ in range(3):  # its first question learned, its image's labels remembered, its verdict kept
        inspected = proxy.docker("inspect", "--format", "{{.Id}}", NAME)
        assert (inspected.returncode, inspected.stdout.strip()) == (0, mine), inspected.stderr
    stack.docker("rm", "-f", NAME)
    roots = stack.docker("run", "-d", "--name", NAME, IMAGE, "sleep", "600").stdout.strip()
    assert roots and roots != mine
    after = proxy.docker("inspect", "--format", "{{.Id}}", NAME)
    return after.returncode, after.stdout.strip() + after.stderr


def test_a_container_replaced_under_its_name_is_decided_afresh(
        stack: Stack, proxies: tuple[ProxyDaemon, ProxyDaemon]) -> None:
    shipped, control = proxies
    status, said = replaced_then_inspected(stack, control)
    roots = stack.docker("inspect", "--format", "{{.Id}}", NAME).stdout.strip()
    assert (status, said) == (0, roots)  # the attack, defence off: root's container handed over
    status, said = replaced_then_inspected(stack, shipped)
    assert status != 0 and "(rule scope-owned)" in said, said
